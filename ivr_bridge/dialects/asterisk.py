"""Asterisk ``chan_websocket``, sans-I/O: binary media and text control frames in, events out.

Asterisk (the websocket client, configured in ``websocket_client.conf``) sends ``MEDIA_START``
first, then binary frames of raw media in the channel's format (ulaw, alaw, slin, slin16) and
text control events (``DTMF_END``, ``MEDIA_XOFF``/``MEDIA_XON``, ``MEDIA_MARK_PROCESSED``...).
Control messages come in two spellings: the original plain text (``NAME key:value ...``) and,
since 20.18/22.8/23.2 with ``f(json)``, JSON (``{"event": "NAME", ...}``). Both are accepted;
the bridge answers in the spelling Asterisk used for ``MEDIA_START`` unless configured.

The back-channel is binary media in the same format, in whole ``optimal_frame_size`` multiples
(Asterisk drops a remainder), plus commands (``MARK_MEDIA``, ``FLUSH_MEDIA``, ``HANGUP``,
``ANSWER``). While Asterisk says ``MEDIA_XOFF`` its queue is full and new media would be dropped,
so playback waits in a bounded local queue until ``MEDIA_XON``; what overflows is counted.

Close codes: 1007 malformed control message; 1002 protocol violation (order, state);
1003 unsupported data (media format). Close reasons are fixed phrases, never payload.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from ivr_bridge.audio.codecs import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    alaw_to_pcm16,
    pcm16_to_alaw,
    pcm16_to_ulaw,
    resample,
    ulaw_to_pcm16,
)
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

NAME: Final = "asterisk"
CHANNEL: Final = "caller"  # the WebSocket channel's media is what the far end says


@dataclass(frozen=True, slots=True)
class AsteriskFormat:
    """One chan_websocket media format: how to decode it and how big a 20 ms frame is."""

    name: str
    encoding: str  # MediaFormat.encoding
    sample_rate: int
    bytes_per_sample: int
    silence: int  # the byte value of silence, for padding the last played frame


FORMATS: Final = {
    "ulaw": AsteriskFormat("ulaw", "pcmu", 8000, 1, ULAW_SILENCE),
    "alaw": AsteriskFormat("alaw", "pcma", 8000, 1, ALAW_SILENCE),
    "slin": AsteriskFormat("slin", "l16", 8000, 2, 0),
    "slin16": AsteriskFormat("slin16", "l16", 16000, 2, 0),
}
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
CONTROL_FORMATS: Final = ("auto", "plain-text", "json")
MAX_MESSAGE_BYTES: Final = 65_500  # Asterisk closes the socket and hangs up above this
MAX_COMMAND_BYTES: Final = 128  # Asterisk's limit on one text command
FRAMES_PER_MESSAGE: Final = 25  # 500 ms of audio per binary message, well under the limit
_EVENT_NAME: Final = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_MARK_NAME: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


# ---- strict JSON (ivr_bridge.dialects.strictjson) and typed fields ----------------------------


def _string(value: Any, what: str) -> str:
    """A string field; numbers are accepted as their decimal text (plain-text mode has no types)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _invalid(f"{what} must be a string")
    return sj.utf8(str(value), what)


# ---- upgrade authentication (ivr_bridge.dialects.upgrade_auth) ------------------------------

AUTH_SCHEMES: Final = ("none", "token", "basic")


def check_upgrade(settings: DialectSettings, request: UpgradeRequest) -> str:
    """Refuse (401 nothing offered, 403 wrong) before any recognition session; return the scheme.

    "token": ``Authorization: Bearer`` or a ``token`` query parameter (Asterisk can only put
    it in the URI) equal to ``secrets["token"]``; "basic": HTTP Basic from
    websocket_client.conf, equal to ``secrets["username"]`` and ``secrets["password"]``.
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


# ---- control messages ----------------------------------------------------------------------


def parse_control(text: str) -> tuple[str, dict[str, Any], bool]:
    """Split one control message into (event name, fields, was JSON). Raises DialectError.

    Plain text is ``NAME key:value key:value ...``; a token without a colon is positional and
    kept under ``"_args"`` (``MEDIA_BUFFERING_COMPLETED <id>``). JSON is ``{"event": NAME, ...}``.
    """
    if text.lstrip().startswith("{"):
        message = _loads(text)
        if not isinstance(message, dict):
            raise _invalid("control message must be an object")
        name = message.get("event")
        if not isinstance(name, str) or not _EVENT_NAME.fullmatch(name):
            raise _invalid("event must be an upper-case name")
        message.pop("_args", None)  # reserved for plain-text positional arguments
        return name, message, True
    tokens = text.split()
    if not tokens or not _EVENT_NAME.fullmatch(tokens[0]):
        raise _invalid("malformed control message")
    fields: dict[str, Any] = {}
    args: list[str] = []
    for token in tokens[1:]:
        key, sep, value = token.partition(":")
        if sep and key:
            fields[sj.utf8(key, "control field")] = sj.utf8(value, "control field")
        else:
            args.append(sj.utf8(token, "control argument"))
    fields["_args"] = args
    return tokens[0], fields, False


@dataclass
class AsteriskCounters:
    """What one channel looked like on the wire; the anomalies here are tolerated."""

    messages: int = 0
    media_frames: int = 0
    media_bytes: int = 0
    empty_frames: int = 0
    dtmf: int = 0
    marks: int = 0
    xoff: int = 0  # MEDIA_XOFF received
    xon: int = 0
    driver_errors: int = 0  # Asterisk's own ERROR notifications (bad command etc.)
    unknown_events: int = 0
    after_close: int = 0  # frames that crossed our own close, ignored
    playback_frames_sent: int = 0
    playback_frames_queued: int = 0  # held back while XOFF
    playback_frames_dropped: int = 0  # the XOFF queue was full
    playback_frames_cleared: int = 0  # dropped from the XOFF queue by ClearAudio
    marks_cleared: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


_CAPABILITIES: Final = frozenset({"play", "mark", "clear", "disconnect"})


class AsteriskDialect(QueuedOutput):
    """One chan_websocket connection. Feed frames; send ``data_to_send()``; honour the close.

    ``control_format`` is "auto" (answer in the form MEDIA_START used), "plain-text" or "json".
    ``answer`` sends ``ANSWER`` after MEDIA_START (for channels dialled with the ``n`` option).
    ``max_pending_frames`` bounds the playback held back during MEDIA_XOFF.
    """

    name = NAME

    def __init__(
        self,
        *,
        control_format: str = "auto",
        answer: bool = False,
        max_pending_frames: int = 1000,
        custom_parameters: Mapping[str, str] | None = None,
    ) -> None:
        if control_format not in CONTROL_FORMATS:
            raise ValueError(f"control_format must be one of {CONTROL_FORMATS}")
        self.counters = AsteriskCounters()
        self._control_format = control_format
        self._answer = answer
        self._max_pending = max(1, max_pending_frames)
        self._custom = dict(custom_parameters or {})
        self._json = control_format == "json"
        self._format: AsteriskFormat | None = None
        self._frame_bytes = 0
        self._started = False
        self._ended = False
        self._xoff = False
        self._pending: deque[str | bytes] = deque()  # playback and marks held during XOFF
        self._pending_frames = 0
        self._outbox: list[str | bytes] = []
        self._close: tuple[int, str] | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], list[DialectEvent]]] = {
            "MEDIA_START": self._on_media_start,
            "DTMF_END": self._on_dtmf,
            "MEDIA_XOFF": self._on_xoff,
            "MEDIA_XON": self._on_xon,
            "MEDIA_MARK_PROCESSED": self._on_mark,
            "HANGUP": self._on_hangup,
            "ERROR": self._on_driver_error,
        }

    # ---- state ---------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started

    @property
    def xoff(self) -> bool:
        """True while Asterisk asked us to stop sending media."""
        return self._xoff

    @property
    def media_format(self) -> AsteriskFormat | None:
        return self._format

    @property
    def capabilities(self) -> frozenset[str]:
        return _CAPABILITIES

    # ---- inbound -------------------------------------------------------------------------

    def receive_text(self, text: str) -> list[DialectEvent]:
        """Feed one control message. Raises DialectError; never anything else."""
        self.counters.messages += 1
        if self._close is not None:
            self.counters.after_close += 1  # racing our own goodbye: not the PBX's fault
            return []
        if self._ended:
            raise _protocol("message after hangup")
        try:
            name, fields, is_json = parse_control(text)
        except RecursionError:
            raise _invalid("message nested too deeply") from None
        handler = self._handlers.get(name)
        if handler is None:
            # STATUS, QUEUE_DRAINED, MEDIA_BUFFERING_COMPLETED and future events: nothing to do.
            self.counters.unknown_events += 1
            return []
        if name == "MEDIA_START" and self._control_format == "auto":
            self._json = is_json
        return handler(fields)

    def receive_bytes(self, data: bytes) -> list[DialectEvent]:
        """Feed one binary media frame in the MEDIA_START format."""
        self.counters.messages += 1
        if self._close is not None:
            self.counters.after_close += 1  # racing our own goodbye: not the PBX's fault
            return []
        if self._ended:
            raise _protocol("media after hangup")
        fmt = self._format
        if fmt is None:
            raise _protocol("media before MEDIA_START")
        if not data:
            self.counters.empty_frames += 1
            return []
        if len(data) % fmt.bytes_per_sample:
            raise _invalid("media frame is not whole samples")
        self.counters.media_frames += 1
        self.counters.media_bytes += len(data)
        return [Audio(CHANNEL, _decode(fmt, data))]

    def receive_eof(self) -> list[DialectEvent]:
        """The socket closed: Asterisk hung up (its close code carries the hangup cause)."""
        if self._ended:
            return []
        self._ended = True
        return [CallEnded(reason="hangup")]

    # ---- handlers --------------------------------------------------------------------------

    def _on_media_start(self, fields: dict[str, Any]) -> list[DialectEvent]:
        if self._started:
            raise _protocol("duplicate MEDIA_START")
        fmt_name = _string(fields.get("format", ""), "format").lower()
        fmt = FORMATS.get(fmt_name)
        if fmt is None:
            raise _unsupported("unsupported media format")
        frame_bytes = fmt.sample_rate // 50 * fmt.bytes_per_sample  # 20 ms
        if "optimal_frame_size" in fields:
            frame_bytes = sj.count(fields["optimal_frame_size"], "optimal_frame_size")
            if not 0 < frame_bytes <= MAX_MESSAGE_BYTES or frame_bytes % fmt.bytes_per_sample:
                raise _invalid("optimal_frame_size out of range")
        metadata: dict[str, str] = {"format": fmt.name, "optimal_frame_size": str(frame_bytes)}
        for key in ("connection_id", "channel", "channel_id", "ptime"):
            if key in fields:
                metadata[key] = _string(fields[key], key)
        variables = sj.string_map(fields.get("channel_variables"), "channel_variables")
        for key, value in variables.items():
            metadata[f"variable.{key}"] = value

        self._started = True
        self._format = fmt
        self._frame_bytes = frame_bytes
        if self._answer:
            self._command("ANSWER")
        call_id = metadata.get("channel_id") or metadata.get("connection_id", "")
        return [
            CallStarted(
                dialect=self.name,
                platform_call_id=call_id,
                stream_id=metadata.get("connection_id", ""),
                channels=(ChannelInfo(CHANNEL, "in"),),
                media_format=MediaFormat(fmt.encoding, fmt.sample_rate, 1),
                sample_rate=fmt.sample_rate,
                metadata=metadata,
                custom_parameters=self._custom,
            )
        ]

    def _on_dtmf(self, fields: dict[str, Any]) -> list[DialectEvent]:
        self._require_started("DTMF_END before MEDIA_START")
        args = fields.get("_args") or [None]
        digit = _string(fields.get("digit", args[0]) or "", "digit").upper()
        if digit not in DTMF_DIGITS:
            raise _invalid("digit is not a DTMF digit")
        duration = (
            sj.count(fields["duration_ms"], "duration_ms") if "duration_ms" in fields else None
        )
        self.counters.dtmf += 1
        return [Dtmf(CHANNEL, digit, duration)]

    def _on_xoff(self, fields: dict[str, Any]) -> list[DialectEvent]:
        self.counters.xoff += 1
        self._xoff = True
        return []

    def _on_xon(self, fields: dict[str, Any]) -> list[DialectEvent]:
        self.counters.xon += 1
        self._xoff = False
        while self._pending:
            item = self._pending.popleft()
            if isinstance(item, bytes):
                self.counters.playback_frames_sent += len(item) // self._frame_bytes
            self._outbox.append(item)
        self._pending_frames = 0
        return []

    def _on_mark(self, fields: dict[str, Any]) -> list[DialectEvent]:
        self._require_started("MEDIA_MARK_PROCESSED before MEDIA_START")
        args = fields.get("_args") or [""]
        name = _string(fields.get("correlation_id", args[0]) or "", "correlation_id")
        if not name:
            self.counters.unknown_events += 1  # a mark we did not name is not ours
            return []
        self.counters.marks += 1
        return [Mark(name)]

    def _on_hangup(self, fields: dict[str, Any]) -> list[DialectEvent]:
        self._ended = True
        return [CallEnded(reason="hangup")]

    def _on_driver_error(self, fields: dict[str, Any]) -> list[DialectEvent]:
        self.counters.driver_errors += 1
        return []

    def _require_started(self, reason: str) -> None:
        if not self._started:
            raise _protocol(reason)

    # ---- outbound ------------------------------------------------------------------------

    def send(self, request: OutboundRequest) -> None:
        """Queue a request for Asterisk; then send ``data_to_send()``."""
        if isinstance(request, SendEvent):
            raise UnsupportedRequest("chan_websocket carries no event messages")
        if not self._started or self._ended or self._close is not None:
            return  # racing the hang-up is normal: nothing left to play to
        if isinstance(request, PlayAudio):
            self._play(request)
        elif isinstance(request, SendMark):
            if not _MARK_NAME.fullmatch(request.name):
                raise UnsupportedRequest("mark names must be 1-64 of [A-Za-z0-9_.:-]")
            self._command("MARK_MEDIA", correlation_id=request.name, ordered=True)
        elif isinstance(request, ClearAudio):
            self._clear_pending()
            self._command("FLUSH_MEDIA")
        elif isinstance(request, Disconnect):
            self._command("HANGUP")
            self._close = (1000, request.reason[:120] or "call ended")

    def close(self, reason: str) -> None:
        """Closing the socket hangs the channel up; nothing else to say first."""
        if self._close is None:
            self._close = (1000, reason[:120])

    def _play(self, request: PlayAudio) -> None:
        fmt = self._format
        assert fmt is not None  # started
        pcm = resample(request.pcm, request.sample_rate, fmt.sample_rate)
        media = _encode(fmt, pcm)
        if not media:
            return
        # Asterisk drops a partial frame: pad the tail with silence to a whole one.
        media += bytes([fmt.silence]) * (-len(media) % self._frame_bytes)
        step = self._frame_bytes * max(
            1, min(FRAMES_PER_MESSAGE, MAX_MESSAGE_BYTES // self._frame_bytes)
        )
        for i in range(0, len(media), step):
            chunk = media[i : i + step]
            frames = len(chunk) // self._frame_bytes
            if not self._xoff:
                self._outbox.append(chunk)
                self.counters.playback_frames_sent += frames
            elif self._pending_frames + frames <= self._max_pending:
                self._pending.append(chunk)
                self._pending_frames += frames
                self.counters.playback_frames_queued += frames
            else:
                self.counters.playback_frames_dropped += frames

    def _clear_pending(self) -> None:
        for item in self._pending:
            if isinstance(item, bytes):
                self.counters.playback_frames_cleared += len(item) // self._frame_bytes
            else:
                self.counters.marks_cleared += 1
        self._pending.clear()
        self._pending_frames = 0

    def _command(self, name: str, *, ordered: bool = False, **fields: str) -> None:
        if self._json:
            text = json.dumps({"command": name, **fields}, separators=(",", ":"))
        else:
            text = " ".join([name, *fields.values()])
        # A mark must follow the audio queued before it; other commands act at once.
        if ordered and self._xoff:
            self._pending.append(text)
        else:
            self._outbox.append(text)


def _decode(fmt: AsteriskFormat, data: bytes) -> bytes:
    if fmt.encoding == "pcmu":
        return ulaw_to_pcm16(data)
    if fmt.encoding == "pcma":
        return alaw_to_pcm16(data)
    return bytes(data)


def _encode(fmt: AsteriskFormat, pcm: bytes) -> bytes:
    if fmt.encoding == "pcmu":
        return pcm16_to_ulaw(pcm)
    if fmt.encoding == "pcma":
        return pcm16_to_alaw(pcm)
    return pcm


# ---- the factory -------------------------------------------------------------------------


class AsteriskFactory:
    """Authenticates the upgrade (Basic from websocket_client.conf, or a token) per connection.

    Options: ``control_format`` ("auto"), ``answer`` (false), ``max_pending_frames`` (1000).
    Query parameters other than ``token`` (Asterisk's ``v()`` URI parameters) become the call's
    custom parameters.
    """

    name = NAME

    def __init__(self, settings: DialectSettings) -> None:
        check_settings(settings, NAME)
        opts = settings.options
        self.settings = settings
        self.control_format = str(opts.get("control_format", "auto"))
        if self.control_format not in CONTROL_FORMATS:
            raise ConfigError(f"dialects.{NAME}.options.control_format", "plain-text|json|auto")
        self.answer = bool(opts.get("answer", False))
        self.max_pending_frames = int(opts.get("max_pending_frames", 1000))

    def open(self, request: UpgradeRequest) -> Dialect:
        check_upgrade(self.settings, request)
        params = {k: v[0] for k, v in request.query.items() if k != "token" and v}
        return AsteriskDialect(
            control_format=self.control_format,
            answer=self.answer,
            max_pending_frames=self.max_pending_frames,
            custom_parameters=params,
        )


SPEC: Final = DialectSpec(
    name=NAME,
    default_path="/asterisk",
    make_factory=AsteriskFactory,
    description="Asterisk chan_websocket (MEDIA_START, ulaw/alaw/slin/slin16, XOFF/XON)",
)
