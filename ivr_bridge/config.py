"""Typed settings from a TOML file plus environment overrides, validated once at startup.

Environment variables override the file: ``IVR_BRIDGE_<SECTION>_<KEY>`` (for example
``IVR_BRIDGE_SPEECHKIT_API_KEY``). Secrets belong there or in mounted files, not in the TOML.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from ivr_bridge.dialects.base import DialectSettings
from ivr_bridge.errors import ConfigError
from ivr_bridge.recognition.policy import CHECK_INTERVAL_S, SPEECHKIT_IDLE_LIMIT_MS

ENV_PREFIX = "IVR_BRIDGE_"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_message_bytes: int = 64 * 1024  # Twilio media JSON is < 1 KiB
    ping_interval_s: float = 10.0
    ping_timeout_s: float = 10.0
    open_timeout_s: float = 10.0
    media_inactivity_timeout_s: float = 0.0  # 0 = never end a call for lack of media
    max_calls: int = 500
    # Overload: refuse new calls (503) while the event loop runs this late or the process uses
    # this fraction of a core (0 = off for either), so calls in progress stay real time.
    max_loop_lag_ms: float = 250.0
    max_cpu: float = 0.0
    # "uvloop" (asyncio where it is not installed) or "asyncio"; README Benchmarks has why.
    event_loop: str = "uvloop"
    # Processes serving the one port (pre-forked on one listening socket); 0 = one per core.
    workers: int = 0
    drain_timeout_s: float = 30.0
    # The base URL platforms call (e.g. "wss://bridge.example.com"), for request signatures
    # behind TLS termination or a proxy; empty: rebuilt from the Host header.
    public_url: str = ""
    # A connection that has not sent its platform's start message by then is closed (1008).
    start_timeout_s: float = 5.0
    # Non-media messages (marks, DTMF, pings...) per connection: steady rate and burst; past
    # them the connection is closed with 1008. 0: no limit.
    message_rate_per_s: float = 20.0
    message_burst: int = 100
    # Wake for a call's socket when its next chunk's audio is there (SO_RCVLOWAT), not per
    # frame: one read per chunk instead of ten. Other PBX messages (DTMF, marks, stop) then
    # wait until that chunk is due (up to chunk_ms + 50 ms); audio goes upstream no later.
    read_batching: bool = True
    # Connections one remote address may hold at once (0: no cap). A PBX or SBC sends every
    # call from one address: set it above that host's call count.
    max_connections_per_ip: int = 0
    # /readyz fails once the recognizer has been unreachable this long; 0: never for that.
    ready_recognizer_grace_s: float = 30.0
    # TLS on the listener itself (PEM files), for deployments without a terminating proxy.
    tls_cert: str = ""
    tls_key: str = ""
    # Asterisk AudioSocket on a TCP port of its own (0 = off). The protocol has no auth and
    # no TLS: keep the host private and list the PBXs' addresses (or CIDR networks).
    audiosocket_port: int = 0
    audiosocket_host: str = "127.0.0.1"
    audiosocket_allow: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SpeechKitSettings:
    api: str = "v3"
    endpoint: str = ""  # empty: start the embedded recognizer
    tls: bool = True
    api_key: str = field(default="", repr=False)
    iam_token: str = field(default="", repr=False)
    service_account_key_file: str = ""
    token_url: str = "https://iam.api.cloud.yandex.net/iam/v1/tokens"  # noqa: S105
    folder_id: str = ""
    model: str = "general"
    languages: tuple[str, ...] = ("ru-RU",)
    text_normalization: bool = False
    profanity_filter: bool = False
    literature_text: bool = False
    eou_sensitivity: str = "DEFAULT"
    max_pause_between_words_hint_ms: int = 0
    chunk_ms: int = 200  # SpeechKit's own samples send 250 ms; each gRPC write costs CPU
    transport: str = "h2"  # "h2": the bridge's own HTTP/2 client; "grpc": grpc.aio
    # h2 only: audio written within this many ms goes out in one socket write per connection.
    write_coalesce_ms: int = 5

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key or self.iam_token or self.service_account_key_file)


@dataclass(frozen=True, slots=True)
class EmbeddedSettings:
    host: str = "127.0.0.1"
    port: int = 0
    engine: str = "pocketsphinx"
    # Engine worker processes (PocketSphinx decodes in them); 0: in the bridge's process.
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    api_key: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError("embedded.workers", "must be 0 (in-process) or more")


@dataclass(frozen=True, slots=True)
class SessionSettings:
    keepalive_after_ms: int = 1000  # PBX silent this long -> start sending silence_chunk
    keepalive_interval_ms: int = 1000  # and then one every interval: far inside the 5 s rule
    keepalive: bool = True
    buffer_s: float = 60.0
    drain_timeout_s: float = 5.0
    # SpeechKit: 5 min of audio or 10 MB per session. Rotate at a pause after the soft mark,
    # force it at the hard mark.
    rotate_soft_s: float = 270.0
    rotate_hard_s: float = 290.0
    rotate_soft_bytes: int = 9_000_000
    rotate_hard_bytes: int = 9_800_000
    stall_timeout_s: float = 10.0
    max_replay_s: float = 30.0
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 8.0


@dataclass(frozen=True, slots=True)
class EventSettings:
    jsonl: str = ""
    webhook: str = ""
    webhooks: tuple[str, ...] = ()  # more endpoints, each with its own queue and breaker
    webhook_secret: str = field(default="", repr=False)  # Standard Webhooks "whsec_..."
    webhook_timeout_s: float = 5.0
    webhook_max_in_flight: int = 64  # calls delivered at once per endpoint
    webhook_retry_total_s: float = 300.0  # then the event goes to the dead-letter file
    webhook_backoff_initial_s: float = 0.5
    webhook_backoff_max_s: float = 30.0
    webhook_breaker_threshold: int = 5  # consecutive failures that open the circuit
    webhook_breaker_cooldown_max_s: float = 30.0
    stdout: bool = False
    queue_size: int = 1000  # events queued per sink, all calls together
    per_call_queue_size: int = 200  # one call's share: a flood loses only its own events
    include_partials: bool = True
    dead_letter_file: str = ""  # JSON lines of events no sink could deliver
    drain_timeout_s: float = 5.0  # at shutdown: deliver queued events, then dead-letter
    nats_url: str = ""  # e.g. nats://127.0.0.1:4222 (needs the `nats` extra)
    nats_subject_prefix: str = "ivr.calls"  # events on <prefix>.<call_id>.<type>
    nats_stream: str = "IVR_CALLS"  # created if missing
    nats_retention: str = "limits"  # limits | interest | workqueue
    nats_max_age_s: float = 86400.0
    nats_max_in_flight: int = 64
    nats_retry_total_s: float = 60.0
    # GET /events (the live event stream and its commands); off while no token is set.
    api_token: str = field(default="", repr=False)  # subscribe and send commands
    api_read_token: str = field(default="", repr=False)  # subscribe only
    api_ring_size: int = 500  # events kept per call for resuming after a reconnect
    api_ring_keep_s: float = 300.0  # how long a call's ring outlives its hang-up
    api_subscriber_queue: int = 1000  # per connection; beyond, the oldest go (counted)


@dataclass(frozen=True, slots=True)
class DialogSettings:
    """The in-process dialog handler (``ivr_bridge.serve(handler, settings)``)."""

    barge_in: bool = False  # caller speech over a prompt clears playback (barge_in event)
    queue_size: int = 256  # events buffered per call for the handler; oldest dropped beyond
    finish_timeout_s: float = 5.0  # after call_ended, then a still-running handler is cancelled


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    level: str = "info"
    format: str = "console"  # "console" | "json"


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Object Storage (S3 API) for files that asynchronous recognition reads by URI."""

    endpoint: str = "https://storage.yandexcloud.net"
    region: str = "ru-central1"
    bucket: str = ""  # empty: no uploads (v3 sends files inline; v2 cannot run)
    prefix: str = "ivr-bridge/"
    access_key_id: str = field(default="", repr=False)
    secret_access_key: str = field(default="", repr=False)
    presign_ttl_s: int = 3600


@dataclass(frozen=True, slots=True)
class RecordingSettings:
    """Per-call WAV recordings and their post-call transcript (off by default)."""

    enabled: bool = False
    directory: str = "recordings"
    transcribe: bool = True  # run asynchronous recognition after hang-up
    api: str = "v3"  # "v3" | "v2" (v2 needs [storage])


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = ServerSettings()
    speechkit: SpeechKitSettings = SpeechKitSettings()
    embedded: EmbeddedSettings = EmbeddedSettings()
    session: SessionSettings = SessionSettings()
    events: EventSettings = EventSettings()
    logging: LoggingSettings = LoggingSettings()
    storage: StorageSettings = StorageSettings()
    recording: RecordingSettings = RecordingSettings()
    dialects: Mapping[str, DialectSettings] = field(default_factory=dict)
    dialog: DialogSettings = DialogSettings()

    def __post_init__(self) -> None:
        # Settings built in code (tests, the demo, embedders) get the same checks as a file.
        validate(self)


_T = TypeVar("_T")


def _coerce(key: str, raw: Any, default: Any) -> Any:
    """Convert a TOML or environment value to the type of the field's default."""
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in {
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        }:
            return raw.lower() in {"1", "true", "yes", "on"}
        raise ConfigError(key, "expected true or false")
    if isinstance(default, int):
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str):
            try:
                return int(raw)
            except ValueError:
                pass
        raise ConfigError(key, "expected an integer")
    if isinstance(default, float):
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, str):
            try:
                return float(raw)
            except ValueError:
                pass
        raise ConfigError(key, "expected a number")
    if isinstance(default, tuple):
        if isinstance(raw, str):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            return tuple(raw)
        raise ConfigError(key, "expected a list of strings")
    if isinstance(raw, str):
        return raw
    raise ConfigError(key, "expected a string")


def _section(name: str, cls: type[_T], table: Mapping[str, Any], env: Mapping[str, str]) -> _T:
    default = cls()
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    for key in table:
        if key not in known:
            raise ConfigError(f"{name}.{key}", "unknown key")
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        full = f"{name}.{f.name}"
        env_name = f"{ENV_PREFIX}{name.upper()}_{f.name.upper()}"
        if env_name in env:
            values[f.name] = _coerce(full, env[env_name], getattr(default, f.name))
        elif f.name in table:
            values[f.name] = _coerce(full, table[f.name], getattr(default, f.name))
    return replace(default, **values)  # type: ignore[type-var]


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "speechkit": SpeechKitSettings,
    "embedded": EmbeddedSettings,
    "session": SessionSettings,
    "events": EventSettings,
    "logging": LoggingSettings,
    "storage": StorageSettings,
    "recording": RecordingSettings,
    "dialog": DialogSettings,
}


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, coerce and validate. Raises ConfigError naming the offending key."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError("--config", f"file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"invalid TOML: {exc}") from exc
    for key in data:
        if key not in _SECTIONS and key != "dialects":
            raise ConfigError(key, "unknown section")
    parts: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(name, "expected a table")
        parts[name] = _section(name, cls, table, env)
    parts["dialects"] = _dialect_sections(data.get("dialects", {}), env)
    return Settings(**parts)  # validated on construction


# SpeechKit streaming limits: a session ends after 5 minutes or 10 MB of audio.
SPEECHKIT_MAX_SESSION_S = 300.0
SPEECHKIT_MAX_SESSION_BYTES = 10 * 1024 * 1024
MAX_MESSAGE_BYTES_LIMIT = 1 << 20  # the largest PBX frame we know of is a few KiB
MIN_ROTATE_S = 10.0  # every session costs a handshake; rotating faster is a misconfiguration
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def _check(ok: bool, key: str, problem: str) -> None:
    if not ok:
        raise ConfigError(key, problem)


def _positive(value: float, key: str, upper: float, unit: str = "s") -> None:
    _check(0 < value <= upper, key, f"must be > 0 and at most {upper:g} {unit}")


# ---- [dialects.NAME] ----------------------------------------------------------------------

_DIALECT_KEYS = ("enabled", "path", "auth", "secrets", "allowed_origins", "options")


def _dialect_sections(table: Any, env: Mapping[str, str]) -> dict[str, DialectSettings]:
    """``[dialects.NAME]`` tables plus ``IVR_BRIDGE_DIALECTS_NAME_KEY`` variables.

    An environment variable overrides ``enabled``, ``path``, ``auth`` or ``allowed_origins``
    when KEY names one of them; any other KEY is a secret (``..._TWILIO_AUTH_TOKEN`` sets
    ``secrets.auth_token``), so secrets need never be written in the file.
    """
    if not isinstance(table, dict):
        raise ConfigError("dialects", "expected a table of [dialects.NAME] tables")
    raw: dict[str, dict[str, Any]] = {}
    for name, section in table.items():
        if not isinstance(section, dict):
            raise ConfigError(f"dialects.{name}", "expected a table")
        for key in section:
            if key not in _DIALECT_KEYS:
                raise ConfigError(f"dialects.{name}.{key}", "unknown key")
        raw[name] = dict(section)
    prefix = f"{ENV_PREFIX}DIALECTS_"
    for env_name, value in env.items():
        if not env_name.startswith(prefix):
            continue
        name, _, key = env_name[len(prefix) :].partition("_")
        if not name or not key:
            continue
        section = raw.setdefault(name.lower(), {})
        key = key.lower()
        if key in ("enabled", "path", "auth", "allowed_origins"):
            section[key] = value
        else:
            section.setdefault("secrets", {})
            section["secrets"] = {**section["secrets"], key: value}
    return {name: _dialect_settings(name, section) for name, section in raw.items()}


def _dialect_settings(name: str, section: Mapping[str, Any]) -> DialectSettings:
    default = DialectSettings()
    where = f"dialects.{name}"
    values: dict[str, Any] = {}
    for key in ("enabled", "path", "auth", "allowed_origins"):
        if key in section:
            values[key] = _coerce(f"{where}.{key}", section[key], getattr(default, key))
    for key in ("secrets", "options"):
        item = section.get(key, {})
        if not isinstance(item, dict):
            raise ConfigError(f"{where}.{key}", "expected a table")
        if key == "secrets" and not all(isinstance(v, str) for v in item.values()):
            raise ConfigError(f"{where}.secrets", "expected strings")
        values[key] = dict(item)
    return replace(default, **values)


def _check_dialects(settings: Settings) -> None:
    """Build every enabled dialect's factory once: bad auth, secrets or options fail here."""
    from ivr_bridge.dialects.registry import build_routes

    if settings.server.public_url and not settings.server.public_url.startswith(
        ("ws://", "wss://", "http://", "https://")
    ):
        raise ConfigError("server.public_url", "must be a ws(s):// or http(s):// URL")
    build_routes(settings.dialects)


def validate(s: Settings) -> None:
    """Ranges and relations of every setting; raises ConfigError naming the first bad key."""
    _validate_server(s.server)
    _validate_speechkit(s.speechkit)
    _check(0 <= s.embedded.port <= 65535, "embedded.port", "must be 0..65535")
    _check(bool(s.embedded.engine.strip()), "embedded.engine", "must not be empty")
    _validate_session(s.session)
    _validate_quiet_gap(s)
    _validate_events(s.events)
    _validate_dialog(s.dialog)
    _check(
        s.logging.level.lower() in {"debug", "info", "warning", "error"},
        "logging.level",
        "expected debug, info, warning or error",
    )
    _check(s.logging.format in {"console", "json"}, "logging.format", "expected console or json")
    _validate_recording(s)
    _check_dialects(s)


def _validate_quiet_gap(s: Settings) -> None:
    """When the PBX goes quiet the longest wait between two messages to SpeechKit is the
    rest of a chunk, then keepalive_after_ms, then up to one check interval: it must stay
    clear of SpeechKit's 5 s limit (with a 250 ms margin for the network)."""
    if not s.session.keepalive:
        return
    limit = SPEECHKIT_IDLE_LIMIT_MS - 250 - round(CHECK_INTERVAL_S * 1000) - s.speechkit.chunk_ms
    _check(
        s.session.keepalive_after_ms <= limit,
        "session.keepalive_after_ms",
        f"must be at most {limit} with speechkit.chunk_ms = {s.speechkit.chunk_ms} "
        "(SpeechKit drops a session after 5 s without a message)",
    )


def _validate_recording(s: Settings) -> None:
    _check(s.recording.api in {"v2", "v3"}, "recording.api", "supported: v2, v3")
    _check(
        not (s.recording.api == "v2" and s.recording.transcribe and not s.storage.bucket),
        "recording.api",
        "v2 recognizes files in Object Storage: set storage.bucket",
    )
    _check(
        s.storage.endpoint.startswith(("https://", "http://")),
        "storage.endpoint",
        "must be an http(s):// URL",
    )
    # SigV4 presigned links live at most 7 days.
    _positive(s.storage.presign_ttl_s, "storage.presign_ttl_s", 7 * 86400)


def _validate_server(srv: ServerSettings) -> None:
    _check(
        bool(srv.host) and not any(c.isspace() for c in srv.host),
        "server.host",
        "must be a host name or address without spaces",
    )
    _check(0 <= srv.port <= 65535, "server.port", "must be 0..65535")
    _check(
        1024 <= srv.max_message_bytes <= MAX_MESSAGE_BYTES_LIMIT,
        "server.max_message_bytes",
        f"must be 1024..{MAX_MESSAGE_BYTES_LIMIT} (at least 1024)",
    )
    _positive(srv.ping_interval_s, "server.ping_interval_s", 600)
    # websockets treats a zero timeout as already expired: every connection would drop.
    _positive(srv.ping_timeout_s, "server.ping_timeout_s", 600)
    _positive(srv.open_timeout_s, "server.open_timeout_s", 600)
    _check(
        0 <= srv.media_inactivity_timeout_s <= 86_400,
        "server.media_inactivity_timeout_s",
        "must be 0 (off) .. 86400 s",
    )
    _check(1 <= srv.max_calls <= 100_000, "server.max_calls", "must be 1..100000")
    _check(0 <= srv.max_loop_lag_ms <= 60_000, "server.max_loop_lag_ms", "must be 0 (off)..60000")
    _check(0 <= srv.max_cpu <= 1.0, "server.max_cpu", "must be 0 (off)..1 (a fraction of a core)")
    _check(srv.event_loop in {"asyncio", "uvloop"}, "server.event_loop", "asyncio or uvloop")
    _check(0 <= srv.workers <= 256, "server.workers", "must be 0 (one per core)..256")
    _positive(srv.drain_timeout_s, "server.drain_timeout_s", 3600)
    _positive(srv.start_timeout_s, "server.start_timeout_s", 3600)
    _check(
        0 <= srv.message_rate_per_s <= 100_000,
        "server.message_rate_per_s",
        "must be 0 (no limit) .. 100000",
    )
    _check(1 <= srv.message_burst <= 1_000_000, "server.message_burst", "must be 1..1000000")
    _check(
        0 <= srv.max_connections_per_ip <= 100_000,
        "server.max_connections_per_ip",
        "must be 0 (no cap) .. 100000",
    )
    _check(
        0 <= srv.ready_recognizer_grace_s <= 86_400,
        "server.ready_recognizer_grace_s",
        "must be 0 (never fail readiness) .. 86400 s",
    )
    if bool(srv.tls_cert) != bool(srv.tls_key):
        missing = "server.tls_key" if srv.tls_cert else "server.tls_cert"
        raise ConfigError(missing, "set both tls_cert and tls_key, or neither")
    _validate_audiosocket(srv)


def _validate_audiosocket(srv: ServerSettings) -> None:
    from ivr_bridge.audiosocket_server import parse_allow_list

    _check(0 <= srv.audiosocket_port <= 65535, "server.audiosocket_port", "must be 0 (off)..65535")
    _check(
        bool(srv.audiosocket_host) and not any(c.isspace() for c in srv.audiosocket_host),
        "server.audiosocket_host",
        "must be a host name or address without spaces",
    )
    try:
        parse_allow_list(srv.audiosocket_allow)
    except ValueError:
        raise ConfigError(
            "server.audiosocket_allow", "must list addresses or CIDR networks"
        ) from None


def _validate_speechkit(sk: SpeechKitSettings) -> None:
    _check(sk.api in {"v2", "v3"}, "speechkit.api", "supported: v2, v3")
    _check(
        sk.api != "v2" or (len(sk.languages) == 1 and sk.languages[0] != "auto"),
        "speechkit.languages",
        "API v2 takes exactly one language, not auto",
    )
    secrets = [k for k in ("api_key", "iam_token", "service_account_key_file") if getattr(sk, k)]
    if len(secrets) > 1:
        raise ConfigError(f"speechkit.{secrets[1]}", f"set only one of {', '.join(secrets)}")
    _check(
        sk.eou_sensitivity in {"DEFAULT", "HIGH"},
        "speechkit.eou_sensitivity",
        "expected DEFAULT or HIGH",
    )
    _check(20 <= sk.chunk_ms <= 1000, "speechkit.chunk_ms", "must be 20..1000")
    _check(sk.transport in {"h2", "grpc"}, "speechkit.transport", "supported: h2, grpc")
    _check(0 <= sk.write_coalesce_ms <= 50, "speechkit.write_coalesce_ms", "must be 0..50")
    _check(bool(sk.languages), "speechkit.languages", "must not be empty")
    _check(
        0 <= sk.max_pause_between_words_hint_ms <= 5000,
        "speechkit.max_pause_between_words_hint_ms",
        "must be 0..5000",
    )
    url = sk.token_url
    _check(
        url.startswith("https://") or url.startswith(tuple(f"http://{h}" for h in _LOOPBACK)),
        "speechkit.token_url",
        "must be an https:// URL (http:// only for a loopback host)",
    )


def _validate_session(ss: SessionSettings) -> None:
    for key, value in (
        ("session.keepalive_interval_ms", ss.keepalive_interval_ms),
        ("session.keepalive_after_ms", ss.keepalive_after_ms),
    ):
        _check(100 <= value <= 4000, key, "must be 100..4000 (SpeechKit drops at 5 s)")
    if ss.keepalive and ss.keepalive_after_ms + ss.keepalive_interval_ms > 4500:
        raise ConfigError("session.keepalive_after_ms", "after + interval must stay under 4500 ms")
    _check(1.0 <= ss.buffer_s <= 600.0, "session.buffer_s", "must be 1..600 seconds")
    _positive(ss.drain_timeout_s, "session.drain_timeout_s", 300)
    _check(
        MIN_ROTATE_S <= ss.rotate_soft_s < ss.rotate_hard_s < SPEECHKIT_MAX_SESSION_S,
        "session.rotate_hard_s",
        f"need {MIN_ROTATE_S:g} <= rotate_soft_s < rotate_hard_s < "
        f"{SPEECHKIT_MAX_SESSION_S:g} (SpeechKit's session limit)",
    )
    _check(
        160_000 <= ss.rotate_soft_bytes < ss.rotate_hard_bytes < SPEECHKIT_MAX_SESSION_BYTES,
        "session.rotate_hard_bytes",
        "need 160000 <= rotate_soft_bytes < rotate_hard_bytes < 10 MB (SpeechKit's limit)",
    )
    _positive(ss.stall_timeout_s, "session.stall_timeout_s", 300)
    _positive(ss.max_replay_s, "session.max_replay_s", 600)
    _positive(ss.backoff_initial_s, "session.backoff_initial_s", 300)
    _check(
        ss.backoff_initial_s <= ss.backoff_max_s <= 300,
        "session.backoff_max_s",
        "need backoff_initial_s <= backoff_max_s <= 300 s",
    )


def _validate_dialog(dl: DialogSettings) -> None:
    _check(1 <= dl.queue_size <= 100_000, "dialog.queue_size", "must be 1..100000")
    _positive(dl.finish_timeout_s, "dialog.finish_timeout_s", 3600)


def _validate_events_api(ev: EventSettings) -> None:
    _check(1 <= ev.api_ring_size <= 100_000, "events.api_ring_size", "must be 1..100000")
    _check(0 <= ev.api_ring_keep_s <= 86_400, "events.api_ring_keep_s", "must be 0..86400 s")
    _check(
        10 <= ev.api_subscriber_queue <= 1_000_000,
        "events.api_subscriber_queue",
        "must be 10..1000000",
    )
    if ev.api_token and ev.api_token == ev.api_read_token:
        raise ConfigError("events.api_read_token", "must differ from events.api_token")


def _validate_events(ev: EventSettings) -> None:
    _validate_events_api(ev)
    _check(10 <= ev.queue_size <= 1_000_000, "events.queue_size", "must be 10..1000000")
    if ev.webhook and not ev.webhook.startswith(("http://", "https://")):
        raise ConfigError("events.webhook", "must be an http(s) URL")
    _positive(ev.webhook_timeout_s, "events.webhook_timeout_s", 300)
