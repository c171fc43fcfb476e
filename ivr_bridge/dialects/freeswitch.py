"""FreeSWITCH ``mod_audio_fork`` and jambonz ``listen``, sans-I/O: one text frame, then L16.

Both speak the same stream (jambonz's ``listen`` verb runs its fork of mod_audio_fork):

* one **text frame of JSON metadata** first. jambonz always sends it: the call attributes
  (``callSid``, ``callId``, ``from``, ``to``, ``direction``...), ``sampleRate``, ``mixType``
  and the verb's ``metadata`` keys. FreeSWITCH (``uuid_audio_fork`` / ``uuid_audio_stream ...
  start``) sends the start command's metadata text as is — JSON or not, or nothing at all —
  so its rate and mix come from JSON metadata when present, else from the URL query
  (``?sampleRate=16000&mixType=stereo``) or the dialect's options;
* then **binary frames of L16** (signed 16-bit little-endian) at 8 or 16 kHz (jambonz also
  24-64 kHz, resampled here to 16 kHz), of any length. ``mono`` is the caller, ``mixed`` both
  parties in one channel, ``stereo`` interleaved left = caller, right = the other party,
  which becomes two channels and two recognition sessions;
* later text frames: DTMF (``{"event": "dtmf", "dtmf": "5", "duration": ...}``, the duration
  in 8 kHz samples as FreeSWITCH reports it; events carry milliseconds), and on
  jambonz the playout notifications ``mark`` and ``playDone``.

Back to the platform go JSON text frames with a ``type`` — ``transcription`` (or another
event type) for SendEvent, ``playAudio`` (base64 raw L16) or, with jambonz bidirectional
streaming, binary L16 for PlayAudio, ``killAudio`` for ClearAudio, ``mark`` (jambonz streaming
only), ``disconnect``. mod_audio_fork raises each as a ``mod_audio_fork::<type>`` FreeSWITCH
event; jambonz acts on playback messages itself.

Both platforms request a websocket subprotocol (``audio.drachtio.org`` / ``audio.jambonz.org``,
see :data:`SUBPROTOCOLS`) that the server must select.

Close codes: 1007 malformed metadata or message; 1002 order; 1003 unsupported rate or mix.
"""

from __future__ import annotations

import base64
import json
from array import array
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Final

from ivr_bridge.audio.codecs import Resampler, resample
from ivr_bridge.dialects import strictjson as sj
from ivr_bridge.dialects.base import (
    ClearAudio,
    Dialect,
    DialectSettings,
    DialectSpec,
    Disconnect,
    OutboundRequest,
    PlayAudio,
    QueuedOutput,
    SendEvent,
    SendMark,
    UnsupportedRequest,
    UpgradeRefused,
    UpgradeRequest,
)
from ivr_bridge.dialects.strictjson import invalid as _invalid
from ivr_bridge.dialects.strictjson import loads as _loads
from ivr_bridge.dialects.strictjson import protocol as _protocol
from ivr_bridge.dialects.strictjson import unsupported as _unsupported
from ivr_bridge.dialects.upgrade_auth import check_shared_secret, require_secrets
from ivr_bridge.errors import ConfigError, DialectError
from ivr_bridge.model import (
    Audio,
    CallEnded,
    CallStarted,
    ChannelInfo,
    DialectEvent,
    Dtmf,
    Mark,
    MediaFormat,
)

SAMPLE_RATES: Final = (8000, 16000, 24000, 32000, 48000, 64000)
NATIVE_RATES: Final = (8000, 16000)  # kept as is; higher rates are resampled to 16 kHz
MIX_TYPES: Final = ("mono", "mixed", "stereo")
PLAYBACK_MODES: Final = ("json", "stream")
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
DTMF_DURATION_RATE: Final = 8000  # the unit of a DTMF event's duration: 8 kHz samples
SUBPROTOCOLS: Final = {"freeswitch": "audio.drachtio.org", "jambonz": "audio.jambonz.org"}
EVENT_TYPES: Final = frozenset({"transcription", "transfer", "error", "json"})
STREAM_CHUNK_MS: Final = 100  # streamed playback per binary frame
# jambonz call attributes kept as call metadata; every other first-frame key is the
# listen verb's own ``metadata`` (custom parameters).
CALL_ATTRIBUTES: Final = frozenset(
    {
        "callSid", "direction", "from", "to", "callId", "sbcCallid", "sipStatus", "sipReason",
        "callStatus", "callerId", "accountSid", "traceId", "applicationSid", "fsSipAddress",
        "parentCallSid", "originatingSipIp", "originatingSipTrunkName", "customerData",
        "headers", "apiBaseUrl", "fsPublicIp", "callerName", "uuid", "call_uuid", "callUuid",
    }
)  # fmt: skip
_CALL_ID_KEYS: Final = ("callSid", "uuid", "call_uuid", "callUuid", "callId")


# ---- strict JSON (ivr_bridge.dialects.strictjson) and typed fields ----------------------------


# ---- upgrade authentication (ivr_bridge.dialects.upgrade_auth) ------------------------------

AUTH_SCHEMES: Final = ("none", "token", "basic")


def check_upgrade(settings: DialectSettings, request: UpgradeRequest) -> str:
    """Refuse (401 nothing offered, 403 wrong) before any recognition session; return the scheme.

    "token": ``Authorization: Bearer`` or a ``token`` query parameter equal to
    ``secrets["token"]``; "basic": HTTP Basic (mod_audio_fork's ``MOD_AUDIO_BASIC_AUTH_*``,
    jambonz's ``wsAuth``), equal to ``secrets["username"]`` and ``secrets["password"]``.
    Constant-time compares; a browser ``Origin`` is refused unless listed in
    ``allowed_origins``. Reasons never quote what was sent.
    """
    origin = request.header("origin")
    if origin is not None and origin not in settings.allowed_origins:
        raise UpgradeRefused(403, "origin not allowed")
    check_shared_secret(request, settings, query=True)
    return settings.auth


def check_settings(settings: DialectSettings, name: str) -> None:
    """Start-up check: a scheme this dialect supports, with the secrets it needs."""
    require_secrets(name, settings, AUTH_SCHEMES)


# ---- the dialect ---------------------------------------------------------------------------


@dataclass
class AudioForkCounters:
    """What one fork looked like on the wire; tolerated anomalies are counted here."""

    messages: int = 0
    media_frames: int = 0
    media_bytes: int = 0
    empty_frames: int = 0  # jambonz flushes with a zero-length frame before closing
    partial_samples: int = 0  # frames that split a sample or a stereo pair (carried over)
    dtmf: int = 0
    marks: int = 0
    marks_cleared: int = 0
    play_done: int = 0
    unknown_messages: int = 0
    after_close: int = 0  # frames that crossed our own close, ignored
    playback_bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ForkDefaults:
    """What to assume when the metadata frame does not say (mod_audio_fork's start args)."""

    sample_rate: int = 8000
    mix_type: str = "mono"
    playback: str = "json"  # "json": playAudio messages; "stream": binary L16 (jambonz)
    playback_sample_rate: int = 0  # 0: the call's own rate
    event_type: str = "transcription"


class AudioForkDialect(QueuedOutput):
    """One mod_audio_fork / jambonz listen stream. Feed frames; send ``data_to_send()``.

    ``flavor`` is "freeswitch" or "jambonz". jambonz must send its metadata frame first and
    only JSON text after it; FreeSWITCH may start with audio, and free-form text frames sent by
    ``uuid_audio_fork send_text`` are counted and ignored unless they are DTMF.
    """

    def __init__(
        self,
        flavor: str = "freeswitch",
        *,
        defaults: ForkDefaults = ForkDefaults(),
        custom_parameters: Mapping[str, str] | None = None,
    ) -> None:
        if flavor not in SUBPROTOCOLS:
            raise ValueError("flavor must be 'freeswitch' or 'jambonz'")
        self.name = flavor
        self.counters = AudioForkCounters()
        self._jambonz = flavor == "jambonz"
        self._defaults = defaults
        self._custom = dict(custom_parameters or {})
        self._started = False
        self._ended = False
        self._wire_rate = 0
        self._rate = 0
        self._mix = ""
        self._channels: tuple[str, ...] = ()
        self._resamplers: dict[str, Resampler] = {}
        self._carry = b""  # bytes of a split sample / stereo pair, waiting for the rest
        self._outbox: list[str | bytes] = []
        self._close: tuple[int, str] | None = None

    # ---- state ---------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def mix_type(self) -> str:
        return self._mix

    @property
    def capabilities(self) -> frozenset[str]:
        caps = {"play", "clear", "event", "disconnect"}
        if self._jambonz and self._defaults.playback == "stream":
            caps.add("mark")
        return frozenset(caps)

    # ---- inbound -------------------------------------------------------------------------

    def receive_text(self, text: str) -> list[DialectEvent]:
        """Feed one text frame: the metadata first, then DTMF and playout notices."""
        self.counters.messages += 1
        if self._close is not None:
            self.counters.after_close += 1  # racing our own goodbye: not the PBX's fault
            return []
        if self._ended:
            raise _protocol("message after the stream ended")
        try:
            if not self._started:
                return self._on_metadata(text)
            return self._on_message(text)
        except RecursionError:
            raise _invalid("message nested too deeply") from None

    def receive_bytes(self, data: bytes) -> list[DialectEvent]:
        """Feed one binary frame of L16 (interleaved for stereo)."""
        self.counters.messages += 1
        if self._close is not None:
            self.counters.after_close += 1  # racing our own goodbye: not the PBX's fault
            return []
        if self._ended:
            raise _protocol("audio after the stream ended")
        events: list[DialectEvent] = []
        if not self._started:
            if self._jambonz:
                raise _protocol("audio before the metadata frame")
            events += self._start({}, self._defaults.sample_rate, self._defaults.mix_type)
        if not data:
            self.counters.empty_frames += 1
            return events
        data = self._carry + data
        align = 2 * len(self._channels)
        whole = len(data) - len(data) % align
        if whole != len(data):
            self.counters.partial_samples += 1
        self._carry = data[whole:]
        if not whole:
            return events
        self.counters.media_frames += 1
        self.counters.media_bytes += whole
        return [*events, *self._audio(data[:whole])]

    def receive_eof(self) -> list[DialectEvent]:
        if self._ended:
            return []
        self._ended = True
        return [CallEnded(reason="hangup")]

    # ---- parsing ---------------------------------------------------------------------------

    def _on_metadata(self, text: str) -> list[DialectEvent]:
        try:
            meta = _loads(text)
        except DialectError:
            if self._jambonz:
                raise
            meta = None
        if not isinstance(meta, dict):
            if self._jambonz:
                raise _invalid("metadata must be a JSON object")
            # mod_audio_fork / mod_audio_stream pass the start command's text through as is.
            opaque = {"metadata": sj.utf8(text, "metadata")}
            return self._start(opaque, self._defaults.sample_rate, self._defaults.mix_type)
        if "sampleRate" in meta:
            rate = sj.count(meta["sampleRate"], "sampleRate", whole_floats=True)
        else:
            rate = self._defaults.sample_rate
        mix = meta.get("mixType", self._defaults.mix_type)
        if not isinstance(mix, str):
            raise _invalid("mixType must be a string")
        return self._start(meta, rate, mix)

    def _start(self, meta: dict[str, Any], rate: int, mix: str) -> list[DialectEvent]:
        if rate not in SAMPLE_RATES:
            raise _unsupported("unsupported sample rate")
        if mix not in MIX_TYPES:
            raise _unsupported("unsupported mixType")
        metadata: dict[str, str] = {"sample_rate": str(rate), "mix_type": mix}
        custom = dict(self._custom)
        for key, value in meta.items():
            if key in ("sampleRate", "mixType"):
                continue
            text = sj.json_text(value, "metadata")
            sj.utf8(key, "metadata")
            if key in CALL_ATTRIBUTES:
                metadata[key] = text
            else:
                custom[key] = text
        call_id = next((metadata[k] for k in _CALL_ID_KEYS if k in metadata), "")
        out_rate = rate if rate in NATIVE_RATES else 16000
        channels: tuple[ChannelInfo, ...]
        if mix == "stereo":
            channels = (ChannelInfo("caller", "left"), ChannelInfo("agent", "right"))
        else:
            channels = (ChannelInfo("caller" if mix == "mono" else "mixed", mix),)

        self._started = True
        self._wire_rate, self._rate, self._mix = rate, out_rate, mix
        self._channels = tuple(c.name for c in channels)
        if out_rate != rate:
            self._resamplers = {name: Resampler(rate, out_rate) for name in self._channels}
        return [
            CallStarted(
                dialect=self.name,
                platform_call_id=call_id,
                stream_id=metadata.get("callId", call_id),
                channels=channels,
                media_format=MediaFormat("l16", rate, len(channels)),
                sample_rate=out_rate,
                metadata=metadata,
                custom_parameters=custom,
            )
        ]

    def _audio(self, pcm: bytes) -> list[DialectEvent]:
        if len(self._channels) == 1:
            planes = [pcm]
        else:
            samples = array("h")
            samples.frombytes(pcm)
            planes = [samples[0::2].tobytes(), samples[1::2].tobytes()]
        events: list[DialectEvent] = []
        for name, plane in zip(self._channels, planes, strict=True):
            resampler = self._resamplers.get(name)
            out = resampler.process(plane) if resampler is not None else plane
            if out:
                events.append(Audio(name, out))
        return events

    def _on_message(self, text: str) -> list[DialectEvent]:
        try:
            message = _loads(text)
        except DialectError:
            if self._jambonz:
                raise
            self.counters.unknown_messages += 1  # free-form send_text / stop text
            return []
        if not isinstance(message, dict):
            if self._jambonz:
                raise _invalid("message must be a JSON object") from None
            self.counters.unknown_messages += 1
            return []
        if message.get("event") == "dtmf":
            return self._on_dtmf(message)
        kind = message.get("type")
        data = message.get("data")
        if kind == "mark" and isinstance(data, dict):
            return self._on_mark(data)
        if kind == "playDone":
            self.counters.play_done += 1
            return []
        self.counters.unknown_messages += 1
        return []

    def _on_dtmf(self, message: dict[str, Any]) -> list[DialectEvent]:
        digit = message.get("dtmf", message.get("digit"))
        if not isinstance(digit, str) or digit.upper() not in DTMF_DIGITS:
            raise _invalid("dtmf must be a DTMF digit")
        duration = None
        if "duration" in message:
            # FreeSWITCH reports key-press length in 8 kHz samples; jambonz passes it through.
            duration = (
                sj.count(message["duration"], "duration", whole_floats=True)
                * 1000
                // DTMF_DURATION_RATE
            )
        self.counters.dtmf += 1
        channel = "caller" if "caller" in self._channels else self._channels[0]
        return [Dtmf(channel, digit.upper(), duration)]

    def _on_mark(self, data: dict[str, Any]) -> list[DialectEvent]:
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise _invalid("mark.name must be a non-empty string")
        sj.utf8(name, "mark.name")
        if data.get("event") == "cleared":
            self.counters.marks_cleared += 1
            return []
        self.counters.marks += 1
        return [Mark(name)]

    # ---- outbound ------------------------------------------------------------------------

    def send(self, request: OutboundRequest) -> None:
        """Queue a request for the platform; then send ``data_to_send()``."""
        if isinstance(request, SendMark) and "mark" not in self.capabilities:
            raise UnsupportedRequest("marks need jambonz bidirectional streaming")
        if not self._started or self._ended or self._close is not None:
            return
        if isinstance(request, PlayAudio):
            self._play(request)
        elif isinstance(request, SendMark):
            self._json({"type": "mark", "data": {"name": request.name}})
        elif isinstance(request, ClearAudio):
            self._json({"type": "killAudio"})
        elif isinstance(request, SendEvent):
            self._event(request.data)
        elif isinstance(request, Disconnect):
            self._json({"type": "disconnect"})
            self._close = (1000, request.reason[:120] or "call ended")

    def close(self, reason: str) -> None:
        """The platform ends the fork when the socket closes; no message is needed first."""
        if self._close is None:
            self._close = (1000, reason[:120])

    def _play(self, request: PlayAudio) -> None:
        rate = self._defaults.playback_sample_rate or self._wire_rate
        pcm = resample(request.pcm, request.sample_rate, rate)
        if not pcm:
            return
        self.counters.playback_bytes += len(pcm)
        if self._jambonz and self._defaults.playback == "stream":
            step = rate * STREAM_CHUNK_MS // 1000 * 2
            self._outbox.extend(pcm[i : i + step] for i in range(0, len(pcm), step))
            return
        content = base64.b64encode(pcm).decode("ascii")
        self._json(
            {
                "type": "playAudio",
                "data": {"audioContent": content, "audioContentType": "raw", "sampleRate": rate},
            }
        )

    def _event(self, data: Mapping[str, Any]) -> None:
        kind = data.get("type")
        if isinstance(kind, str) and kind in EVENT_TYPES and (kind != "json" or self._jambonz):
            body = data.get("data", {k: v for k, v in data.items() if k != "type"})
        else:
            kind, body = self._defaults.event_type, dict(data)
        self._json({"type": kind, "data": body})

    def _json(self, message: dict[str, Any]) -> None:
        self._outbox.append(json.dumps(message, separators=(",", ":"), ensure_ascii=False))


# ---- factories -----------------------------------------------------------------------------


class AudioForkFactory:
    """Authenticates the upgrade and reads defaults for one flavor.

    Options: ``sample_rate`` (8000), ``mix_type`` ("mono"), ``playback`` ("json" | "stream",
    jambonz only), ``playback_sample_rate`` (0 = the call's), ``event_type``
    ("transcription"). Query ``sampleRate``/``mixType`` override the first two (FreeSWITCH
    cannot otherwise say them without metadata); other query parameters except ``token``
    become custom parameters.
    """

    def __init__(self, flavor: str, settings: DialectSettings) -> None:
        check_settings(settings, flavor)
        self.name = flavor
        self.settings = settings
        opts = settings.options
        prefix = f"dialects.{flavor}.options"
        self.defaults = ForkDefaults(
            sample_rate=int(opts.get("sample_rate", 8000)),
            mix_type=str(opts.get("mix_type", "mono")),
            playback=str(opts.get("playback", "json")),
            playback_sample_rate=int(opts.get("playback_sample_rate", 0)),
            event_type=str(opts.get("event_type", "transcription")),
        )
        if self.defaults.sample_rate not in SAMPLE_RATES:
            raise ConfigError(f"{prefix}.sample_rate", f"one of {SAMPLE_RATES}")
        if self.defaults.mix_type not in MIX_TYPES:
            raise ConfigError(f"{prefix}.mix_type", f"one of {MIX_TYPES}")
        if self.defaults.playback not in PLAYBACK_MODES:
            raise ConfigError(f"{prefix}.playback", f"one of {PLAYBACK_MODES}")
        if self.defaults.event_type not in EVENT_TYPES:
            raise ConfigError(f"{prefix}.event_type", f"one of {sorted(EVENT_TYPES)}")

    def open(self, request: UpgradeRequest) -> Dialect:
        check_upgrade(self.settings, request)
        params = {k: v[0] for k, v in request.query.items() if v and k != "token"}
        defaults = self.defaults
        if "sampleRate" in params:
            rate = params.pop("sampleRate")
            if not (rate.isascii() and rate.isdigit() and len(rate) <= 6):
                raise UpgradeRefused(400, "sampleRate must be a number")
            defaults = replace(defaults, sample_rate=int(rate))
        if "mixType" in params:
            defaults = replace(defaults, mix_type=params.pop("mixType"))
        if defaults.sample_rate not in SAMPLE_RATES or defaults.mix_type not in MIX_TYPES:
            raise UpgradeRefused(400, "unsupported sampleRate or mixType")
        return AudioForkDialect(self.name, defaults=defaults, custom_parameters=params)


def _freeswitch_factory(settings: DialectSettings) -> AudioForkFactory:
    return AudioForkFactory("freeswitch", settings)


def _jambonz_factory(settings: DialectSettings) -> AudioForkFactory:
    return AudioForkFactory("jambonz", settings)


SPEC: Final = DialectSpec(
    name="freeswitch",
    default_path="/freeswitch",
    make_factory=_freeswitch_factory,
    description="FreeSWITCH mod_audio_fork / mod_audio_stream (metadata frame, then L16)",
    subprotocols=(SUBPROTOCOLS["freeswitch"],),
)
JAMBONZ_SPEC: Final = DialectSpec(
    name="jambonz",
    default_path="/jambonz",
    make_factory=_jambonz_factory,
    description="jambonz listen (metadata frame, then L16; playAudio, marks, killAudio)",
    subprotocols=(SUBPROTOCOLS["jambonz"],),
)
SPECS: Final = (SPEC, JAMBONZ_SPEC)
