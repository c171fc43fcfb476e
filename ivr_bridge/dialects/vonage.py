"""Vonage Voice API websockets, sans-I/O: a connected frame, then 20 ms L16 frames and events.

An NCCO ``connect`` action with a ``websocket`` endpoint makes Vonage open a socket that
behaves like a call participant:

* the first frame is text JSON: ``{"event": "websocket:connected", "content-type":
  "audio/l16;rate=16000", ...}`` with the NCCO's ``headers`` object flattened into it (this is
  where the caller's ids and numbers arrive, if the application put them there);
* then binary frames of 16-bit little-endian mono PCM, exactly 20 ms each (320 bytes at
  8 kHz, 640 at 16 kHz), interleaved with text events: ``websocket:dtmf`` (digit and
  duration), ``websocket:cleared`` and ``websocket:notify`` (the echoes of our ``clear`` and
  ``notify`` actions).

Audio is the mix of everything the participant hears: one channel. Back to Vonage go binary
frames in the same format, again exactly 20 ms each — Vonage plays them in order and buffers
about a minute (3072 frames), so one PlayAudio longer than ``max_play_frames`` is cut and
the rest counted — plus ``{"action": "clear"}`` (barge-in) and ``{"action": "notify",
"payload": ...}`` (a mark, echoed once the audio before it has played).

Auth: Vonage signs nothing on the socket; put a secret ``token`` in the endpoint URI's query.

Close codes: 1007 malformed JSON, content type, DTMF or audio; 1002 order; 1003 rate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
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
from ivr_bridge.errors import ConfigError
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

NAME: Final = "vonage"
CHANNEL: Final = "caller"
SAMPLE_RATES: Final = (8000, 16000, 24000)
NATIVE_RATES: Final = (8000, 16000)  # 24 kHz is resampled to 16 kHz for recognition
FRAME_MS: Final = 20
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
MAX_PLAY_FRAMES: Final = 3000  # Vonage buffers 3072 frames (about a minute)
MARK_KEY: Final = "mark"  # where our notify payload carries the mark's name
_CALL_ID_KEYS: Final = ("uuid", "call_uuid", "callUuid", "conversation_uuid", "call_id")


# ---- strict JSON (ivr_bridge.dialects.strictjson) and typed fields ----------------------------


# ---- upgrade authentication (ivr_bridge.dialects.upgrade_auth) ------------------------------

AUTH_SCHEMES: Final = ("none", "token")


def check_upgrade(settings: DialectSettings, request: UpgradeRequest) -> str:
    """Refuse (401 nothing offered, 403 wrong) before any recognition session; return the scheme.

    "token": a ``token`` query parameter in the NCCO's websocket URI (or an
    ``Authorization: Bearer`` header) equal to ``secrets["token"]``.
    Constant-time compares; a browser ``Origin`` is refused unless listed in
    ``allowed_origins``. Reasons never quote what was sent.
    """
    origin = request.header("origin")
    if origin is not None and origin not in settings.allowed_origins:
        raise UpgradeRefused(403, "origin not allowed")
    check_shared_secret(request, settings, query=True)
    return settings.auth


def check_settings(settings: DialectSettings) -> None:
    """Start-up check: a scheme this dialect supports, with the secrets it needs."""
    require_secrets(NAME, settings, AUTH_SCHEMES)


def parse_content_type(value: str) -> int:
    """The rate of ``audio/l16;rate=N``; raises DialectError for anything else."""
    kind, *params = (part.strip().lower() for part in value.split(";"))
    if kind != "audio/l16":
        raise _unsupported("unsupported content-type")
    rates = [p.partition("=")[2].strip() for p in params if p.partition("=")[0].strip() == "rate"]
    if len(rates) != 1 or not (rates[0].isascii() and rates[0].isdigit() and len(rates[0]) < 7):
        raise _invalid("content-type needs one rate")
    rate = int(rates[0])
    if rate not in SAMPLE_RATES:
        raise _unsupported("unsupported sample rate")
    return rate


# ---- the dialect ---------------------------------------------------------------------------


@dataclass
class VonageCounters:
    """What one socket looked like on the wire; tolerated anomalies are counted here."""

    messages: int = 0
    media_frames: int = 0
    media_bytes: int = 0
    off_size_frames: int = 0  # not exactly 20 ms (Vonage promises 20 ms)
    empty_frames: int = 0
    dtmf: int = 0
    marks: int = 0
    cleared: int = 0
    unknown_events: int = 0
    after_close: int = 0  # frames that crossed our own close, ignored
    playback_frames: int = 0
    playback_frames_dropped: int = 0  # beyond max_play_frames in one PlayAudio

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


_CAPABILITIES: Final = frozenset({"play", "mark", "clear", "disconnect"})


class VonageDialect(QueuedOutput):
    """One Vonage websocket. Feed frames; send ``data_to_send()``; honour ``close_to_send()``."""

    name = NAME

    def __init__(
        self,
        *,
        max_play_frames: int = MAX_PLAY_FRAMES,
        custom_parameters: Mapping[str, str] | None = None,
    ) -> None:
        self.counters = VonageCounters()
        self._max_play = max(1, max_play_frames)
        self._custom = dict(custom_parameters or {})
        self._started = False
        self._ended = False
        self._wire_rate = 0
        self._rate = 0
        self._frame_bytes = 0
        self._resampler: Resampler | None = None
        self._outbox: list[str | bytes] = []
        self._close: tuple[int, str] | None = None

    @property
    def started(self) -> bool:
        return self._started

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def frame_bytes(self) -> int:
        """Bytes in one 20 ms frame at the negotiated rate (0 before the connected frame)."""
        return self._frame_bytes

    @property
    def capabilities(self) -> frozenset[str]:
        return _CAPABILITIES

    # ---- inbound -------------------------------------------------------------------------

    def receive_text(self, text: str) -> list[DialectEvent]:
        """Feed one text frame: websocket:connected first, then events."""
        self.counters.messages += 1
        if self._close is not None:
            self.counters.after_close += 1  # racing our own goodbye: not the PBX's fault
            return []
        if self._ended:
            raise _protocol("message after the call ended")
        message = _loads(text)
        if not isinstance(message, dict):
            raise _invalid("message must be a JSON object")
        event = message.get("event")
        if not self._started:
            if event != "websocket:connected":
                raise _protocol("first message must be websocket:connected")
            return self._on_connected(message)
        if event == "websocket:connected":
            raise _protocol("duplicate websocket:connected")
        if event == "websocket:dtmf":
            return self._on_dtmf(message)
        if event == "websocket:notify":
            return self._on_notify(message)
        if event == "websocket:cleared":
            self.counters.cleared += 1
            return []
        self.counters.unknown_events += 1
        return []

    def receive_bytes(self, data: bytes) -> list[DialectEvent]:
        """Feed one binary frame of L16 at the negotiated rate."""
        self.counters.messages += 1
        if self._close is not None:
            self.counters.after_close += 1  # racing our own goodbye: not the PBX's fault
            return []
        if self._ended:
            raise _protocol("audio after the call ended")
        if not self._started:
            raise _protocol("audio before websocket:connected")
        if not data:
            self.counters.empty_frames += 1
            return []
        if len(data) % 2:
            raise _invalid("audio frame is not whole samples")
        if len(data) != self._frame_bytes:
            self.counters.off_size_frames += 1
        self.counters.media_frames += 1
        self.counters.media_bytes += len(data)
        pcm = data if self._resampler is None else self._resampler.process(data)
        return [Audio(CHANNEL, pcm)] if pcm else []

    def receive_eof(self) -> list[DialectEvent]:
        if self._ended:
            return []
        self._ended = True
        return [CallEnded(reason="hangup")]

    def _on_connected(self, message: dict[str, Any]) -> list[DialectEvent]:
        content_type = message.get("content-type")
        if not isinstance(content_type, str):
            raise _invalid("content-type must be a string")
        rate = parse_content_type(content_type)
        custom = dict(self._custom)
        for key, value in message.items():
            if key not in ("event", "content-type"):
                custom[sj.utf8(key, "headers")] = sj.json_text(value, "headers")
        call_id = next((custom[k] for k in _CALL_ID_KEYS if k in custom), "")
        out_rate = rate if rate in NATIVE_RATES else 16000

        self._started = True
        self._wire_rate, self._rate = rate, out_rate
        self._frame_bytes = rate * FRAME_MS // 1000 * 2
        if out_rate != rate:
            self._resampler = Resampler(rate, out_rate)
        return [
            CallStarted(
                dialect=self.name,
                platform_call_id=call_id,
                stream_id=call_id,
                channels=(ChannelInfo(CHANNEL, "mix"),),
                media_format=MediaFormat("l16", rate, 1),
                sample_rate=out_rate,
                metadata={"content_type": content_type, "sample_rate": str(rate)},
                custom_parameters=custom,
            )
        ]

    def _on_dtmf(self, message: dict[str, Any]) -> list[DialectEvent]:
        body = message.get("dtmf", message)  # older payloads nest the fields under "dtmf"
        if not isinstance(body, dict):
            raise _invalid("dtmf must be an object")
        digit = body.get("digit")
        if not isinstance(digit, str) or digit.upper() not in DTMF_DIGITS:
            raise _invalid("digit is not a DTMF digit")
        duration = (
            sj.count(body["duration"], "duration", whole_floats=True)
            if "duration" in body
            else None
        )
        self.counters.dtmf += 1
        return [Dtmf(CHANNEL, digit.upper(), duration)]

    def _on_notify(self, message: dict[str, Any]) -> list[DialectEvent]:
        payload = message.get("payload")
        name = payload.get(MARK_KEY) if isinstance(payload, dict) else None
        if not isinstance(name, str) or not name:
            self.counters.unknown_events += 1  # someone else's notify: not a mark of ours
            return []
        self.counters.marks += 1
        return [Mark(sj.utf8(name, "payload.mark"))]

    # ---- outbound ------------------------------------------------------------------------

    def send(self, request: OutboundRequest) -> None:
        """Queue a request for Vonage; then send ``data_to_send()``."""
        if isinstance(request, SendEvent):
            raise UnsupportedRequest("Vonage websockets carry no event messages")
        if not self._started or self._ended or self._close is not None:
            return
        if isinstance(request, PlayAudio):
            self._play(request)
        elif isinstance(request, SendMark):
            self._json({"action": "notify", "payload": {MARK_KEY: request.name}})
        elif isinstance(request, ClearAudio):
            self._json({"action": "clear"})
        elif isinstance(request, Disconnect):
            self._close = (1000, request.reason[:120] or "call ended")

    def close(self, reason: str) -> None:
        """Closing the socket ends Vonage's websocket leg; there is no goodbye message."""
        if self._close is None:
            self._close = (1000, reason[:120])

    def _play(self, request: PlayAudio) -> None:
        pcm = resample(request.pcm, request.sample_rate, self._wire_rate)
        if not pcm:
            return
        step = self._frame_bytes
        pcm += bytes(-len(pcm) % step)  # Vonage wants whole 20 ms frames: pad with silence
        frames = len(pcm) // step
        kept = min(frames, self._max_play)
        self._outbox.extend(pcm[i * step : (i + 1) * step] for i in range(kept))
        self.counters.playback_frames += kept
        self.counters.playback_frames_dropped += frames - kept

    def _json(self, message: dict[str, Any]) -> None:
        self._outbox.append(json.dumps(message, separators=(",", ":"), ensure_ascii=False))


class VonageFactory:
    """Authenticates the upgrade. Options: ``max_play_frames`` (3000). Query parameters other
    than ``token`` become custom parameters, beside the NCCO headers."""

    name = NAME

    def __init__(self, settings: DialectSettings) -> None:
        check_settings(settings)
        self.settings = settings
        self.max_play_frames = int(settings.options.get("max_play_frames", MAX_PLAY_FRAMES))
        if self.max_play_frames < 1:
            raise ConfigError(f"dialects.{NAME}.options.max_play_frames", "must be positive")

    def open(self, request: UpgradeRequest) -> Dialect:
        check_upgrade(self.settings, request)
        params = {k: v[0] for k, v in request.query.items() if v and k != "token"}
        return VonageDialect(max_play_frames=self.max_play_frames, custom_parameters=params)


SPEC: Final = DialectSpec(
    name=NAME,
    default_path="/vonage",
    make_factory=VonageFactory,
    description="Vonage Voice API websocket (websocket:connected, 20 ms L16 frames, DTMF)",
)
