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

from ivr_bridge.errors import ConfigError

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
    drain_timeout_s: float = 30.0


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
    chunk_ms: int = 100

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key or self.iam_token or self.service_account_key_file)


@dataclass(frozen=True, slots=True)
class EmbeddedSettings:
    host: str = "127.0.0.1"
    port: int = 0
    engine: str = "pocketsphinx"
    api_key: str = field(default="", repr=False)


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
    webhook_secret: str = field(default="", repr=False)
    webhook_timeout_s: float = 5.0
    stdout: bool = False
    queue_size: int = 1000
    include_partials: bool = True


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
        if key not in _SECTIONS:
            raise ConfigError(key, "unknown section")
    parts: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(name, "expected a table")
        parts[name] = _section(name, cls, table, env)
    settings = Settings(**parts)
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    if not 0 <= s.server.port <= 65535:
        raise ConfigError("server.port", "must be 0..65535")
    if s.server.max_message_bytes < 1024:
        raise ConfigError("server.max_message_bytes", "must be at least 1024")
    if s.speechkit.api not in {"v2", "v3"}:
        raise ConfigError("speechkit.api", "supported: v2, v3")
    if s.speechkit.api == "v2" and (
        len(s.speechkit.languages) != 1 or s.speechkit.languages[0] == "auto"
    ):
        raise ConfigError("speechkit.languages", "API v2 takes exactly one language, not auto")
    if s.recording.api not in {"v2", "v3"}:
        raise ConfigError("recording.api", "supported: v2, v3")
    if s.recording.api == "v2" and s.recording.transcribe and not s.storage.bucket:
        raise ConfigError(
            "recording.api", "v2 recognizes files in Object Storage: set storage.bucket"
        )
    secrets = [
        k for k in ("api_key", "iam_token", "service_account_key_file") if getattr(s.speechkit, k)
    ]
    if len(secrets) > 1:
        raise ConfigError(f"speechkit.{secrets[1]}", f"set only one of {', '.join(secrets)}")
    if s.speechkit.eou_sensitivity not in {"DEFAULT", "HIGH"}:
        raise ConfigError("speechkit.eou_sensitivity", "expected DEFAULT or HIGH")
    if not 20 <= s.speechkit.chunk_ms <= 1000:
        raise ConfigError("speechkit.chunk_ms", "must be 20..1000")
    if not s.speechkit.languages:
        raise ConfigError("speechkit.languages", "must not be empty")
    ka = s.session
    if not 100 <= ka.keepalive_interval_ms <= 4000:
        raise ConfigError(
            "session.keepalive_interval_ms", "must be 100..4000 (SpeechKit drops at 5 s)"
        )
    if not 100 <= ka.keepalive_after_ms <= 4000:
        raise ConfigError(
            "session.keepalive_after_ms", "must be 100..4000 (SpeechKit drops at 5 s)"
        )
    if ka.keepalive_after_ms + ka.keepalive_interval_ms > 4500 and ka.keepalive:
        raise ConfigError("session.keepalive_after_ms", "after + interval must stay under 4500 ms")
    if not 0 < ka.rotate_soft_s <= ka.rotate_hard_s < 300:
        raise ConfigError("session.rotate_hard_s", "need 0 < rotate_soft_s <= rotate_hard_s < 300")
    if not 0 < ka.rotate_soft_bytes <= ka.rotate_hard_bytes < 10 * 1024 * 1024:
        raise ConfigError("session.rotate_hard_bytes", "need soft <= hard < 10 MB")
    if ka.stall_timeout_s <= 0:
        raise ConfigError("session.stall_timeout_s", "must be positive")
    if not 1.0 <= ka.buffer_s <= 600.0:
        raise ConfigError("session.buffer_s", "must be 1..600 seconds")
    if s.events.queue_size < 10:
        raise ConfigError("events.queue_size", "must be at least 10")
    if s.events.webhook and not s.events.webhook.startswith(("http://", "https://")):
        raise ConfigError("events.webhook", "must be an http(s) URL")
    if s.logging.level.lower() not in {"debug", "info", "warning", "error"}:
        raise ConfigError("logging.level", "expected debug, info, warning or error")
    if s.logging.format not in {"console", "json"}:
        raise ConfigError("logging.format", "expected console or json")
