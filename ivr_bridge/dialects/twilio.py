"""Twilio Media Streams, sans-I/O: JSON text frames in, model events out.

:class:`TwilioDialect` is the bridge's side (Twilio is the websocket client);
:class:`TwilioStreamEncoder` is Twilio's side, producing the frames a real Twilio sends, for the
simulator and the tests.

Validation is strict about what the bridge relies on and loose about what it does not: a frame
that would make us guess (bad JSON, wrong types, missing fields, a foreign ``streamSid``, media
outside the negotiated tracks) ends the call with a precise close code, while unknown event
types, extra fields and sequence anomalies are counted and tolerated, because Twilio adds
events over time and networks reorder. Every close reason is a fixed phrase: the payload may
carry personal data and never reaches logs or the wire through us.

Close codes: 1007 malformed message (JSON, types, fields, base64); 1002 protocol violation
(order, state, identity, tracks); 1003 unsupported data (binary frames, media formats, tracks).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from ivr_bridge.audio.codecs import ULAW_SILENCE, pcm16_to_ulaw, resample, ulaw_to_pcm16
from ivr_bridge.dialects.base import (
    ClearAudio,
    Disconnect,
    OutboundRequest,
    PlayAudio,
    SendEvent,
    SendMark,
    UnsupportedRequest,
)
from ivr_bridge.errors import DialectError
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

SAMPLE_RATE: Final = 8000
FRAME_MS: Final = 20
FRAME_BYTES: Final = SAMPLE_RATE * FRAME_MS // 1000  # one mu-law byte per sample
MULAW_ENCODING: Final = "audio/x-mulaw"
TRACKS: Final = ("inbound", "outbound")  # canonical order of CallStarted.channels
CHANNEL_NAMES: Final = {"inbound": "caller", "outbound": "agent"}
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")

# Twilio spells tracks "inbound" in start/media and "inbound_track" in dtmf (and in TwiML).
_TRACK_ALIASES: Final = {
    "inbound": "inbound",
    "inbound_track": "inbound",
    "outbound": "outbound",
    "outbound_track": "outbound",
}
_MAX_DIGITS: Final = 18  # sequence numbers and timestamps: far beyond any real call
_SEQ_WINDOW: Final = 1024  # how far back a repeated sequenceNumber counts as a duplicate


# ---- errors ------------------------------------------------------------------------------


def _invalid(reason: str) -> DialectError:
    return DialectError(reason, DialectError.INVALID_PAYLOAD)


def _protocol(reason: str) -> DialectError:
    return DialectError(reason, DialectError.PROTOCOL_ERROR)


def _unsupported(reason: str) -> DialectError:
    return DialectError(reason, DialectError.UNSUPPORTED_DATA)


# ---- strict JSON ---------------------------------------------------------------------------


def _reject_constant(_name: str) -> Any:
    raise _invalid("non-finite number in JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _invalid("number out of range in JSON")
    return value


def _parse_int(text: str) -> int:
    if len(text) > _MAX_DIGITS + 1:
        raise _invalid("number out of range in JSON")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _invalid("duplicate key in JSON object")
    return obj


def _loads(text: str) -> Any:
    """Parse JSON rejecting what Python's json would let through: NaN, 1e400, duplicate keys."""
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise _invalid("JSON nested too deeply") from None
    except DialectError:
        raise
    except ValueError:
        raise _invalid("invalid JSON") from None


# ---- typed field access --------------------------------------------------------------------


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{what} must be an object")
    return value


def _required(obj: Mapping[str, Any], key: str, what: str) -> Any:
    if key not in obj:
        raise _invalid(f"missing {what}")
    return obj[key]


def _text(value: Any, what: str) -> str:
    """A non-empty string that can be re-encoded (no lone surrogates reach logs or sinks)."""
    if not isinstance(value, str) or not value:
        raise _invalid(f"{what} must be a non-empty string")
    _utf8(value, what)
    return value


def _utf8(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(f"{what} is not valid unicode") from None


def _decimal(value: Any, what: str) -> int:
    """Twilio quotes its counters ("42"); plain JSON integers are accepted too."""
    if isinstance(value, str):
        if not (0 < len(value) <= _MAX_DIGITS and value.isascii() and value.isdigit()):
            raise _invalid(f"{what} must be a decimal string")
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _invalid(f"{what} must be a decimal string")


def _optional_decimal(obj: Mapping[str, Any], key: str, what: str) -> int | None:
    return _decimal(obj[key], what) if key in obj else None


def _integer(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _invalid(f"{what} must be an integer")


def _strict_b64decode(payload: str) -> bytes:
    """RFC 4648 base64, canonical only: no whitespace, URL-safe letters or stray padding."""
    if not payload.isascii():
        raise _invalid("media.payload is not base64")
    encoded = payload.encode("ascii")
    try:
        raw = binascii.a2b_base64(encoded, strict_mode=True)
    except binascii.Error:
        raise _invalid("media.payload is not base64") from None
    if base64.b64encode(raw) != encoded:
        raise _invalid("media.payload is not canonical base64")
    return raw  # never empty: _text() refused the empty string


def _string_map(value: Any, what: str) -> dict[str, str]:
    """customParameters as strings; anything else is passed on as its JSON text."""
    if value is None:
        return {}
    out: dict[str, str] = {}
    for key, item in _object(value, what).items():
        _utf8(key, what)
        text = (
            item
            if isinstance(item, str)
            else json.dumps(item, ensure_ascii=False, separators=(",", ":"))
        )
        _utf8(text, what)
        out[key] = text
    return out


# ---- the bridge's side ---------------------------------------------------------------------


@dataclass
class TwilioCounters:
    """What one stream looked like on the wire; anomalies here are tolerated, not fatal."""

    messages: int = 0  # every frame fed in, valid or not
    connected: int = 0
    media_frames: int = 0
    media_bytes: int = 0  # mu-law bytes = samples
    dtmf: int = 0
    marks: int = 0
    unknown_events: int = 0
    sequence_gaps: int = 0  # sequenceNumber jumped forward by more than one
    sequence_missing: int = 0  # numbers skipped by those jumps
    sequence_duplicates: int = 0  # a number seen before (within the last 1024)
    sequence_reorders: int = 0  # a number below the highest seen, arriving late
    timestamp_gaps: int = 0  # a track's media.timestamp jumped by a frame or more
    timestamp_gap_ms: int = 0  # total milliseconds those jumps skipped
    timestamp_reorders: int = 0  # a track's media.timestamp did not move forward

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


_CAPABILITIES: Final = frozenset({"play", "mark", "clear", "disconnect"})


class TwilioDialect:
    """Parses what Twilio sends on a Media Streams socket; queues what we send back."""

    name = "twilio"

    def __init__(self) -> None:
        self.counters = TwilioCounters()
        self._outbox: list[str | bytes] = []
        self._close: tuple[int, str] | None = None
        self._started = False
        self._stopped = False
        self._stream_sid = ""
        self._call_sid = ""
        self._account_sid = ""
        self._tracks: tuple[str, ...] = ()
        self._last_seq: int | None = None
        self._seen_seq: set[int] = set()
        self._seen_order: deque[int] = deque()
        self._track_time: dict[str, tuple[int, float]] = {}  # track -> (last timestamp, frame ms)
        self._handlers: dict[str, Callable[[dict[str, Any]], list[DialectEvent]]] = {
            "connected": self._on_connected,
            "start": self._on_start,
            "media": self._on_media,
            "dtmf": self._on_dtmf,
            "mark": self._on_mark,
            "stop": self._on_stop,
        }

    # ---- state ---------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def stream_sid(self) -> str | None:
        return self._stream_sid or None

    @property
    def call_sid(self) -> str | None:
        return self._call_sid or None

    @property
    def tracks(self) -> tuple[str, ...]:
        return self._tracks

    # ---- Dialect protocol ----------------------------------------------------------------

    def receive_text(self, text: str) -> list[DialectEvent]:
        """Feed one text frame. Raises DialectError; never anything else."""
        self.counters.messages += 1
        try:
            return self._receive(text)
        except RecursionError:
            raise _invalid("message nested too deeply") from None

    def receive_bytes(self, data: bytes) -> list[DialectEvent]:
        """Twilio only sends text frames."""
        self.counters.messages += 1
        raise _unsupported("binary frames are not part of Twilio Media Streams")

    def data_to_send(self) -> list[str | bytes]:
        out, self._outbox = self._outbox, []
        return out

    @property
    def capabilities(self) -> frozenset[str]:
        return _CAPABILITIES

    def receive_eof(self) -> list[DialectEvent]:
        """The socket dropped without a ``stop``: the call is over."""
        if self._stopped:
            return []
        self._stopped = True
        return [CallEnded(reason="hangup")]

    def send(self, request: OutboundRequest) -> None:
        """Queue a back-channel request (bidirectional ``<Connect><Stream>`` only)."""
        if isinstance(request, PlayAudio):
            pcm = resample(request.pcm, request.sample_rate, 8000)
            if pcm:
                self.send_media(pcm16_to_ulaw(pcm))
        elif isinstance(request, SendMark):
            self.send_mark(request.name)
        elif isinstance(request, ClearAudio):
            self.send_clear()
        elif isinstance(request, Disconnect):
            self._close = (1000, request.reason[:120] or "call ended")
        elif isinstance(request, SendEvent):
            raise UnsupportedRequest("Twilio Media Streams carry no event messages")

    def close(self, reason: str) -> None:
        """Twilio has no goodbye message: the websocket close is the whole goodbye."""
        if self._close is None:
            self._close = (1000, reason[:120])

    def close_to_send(self) -> tuple[int, str] | None:
        return self._close

    # ---- back-channel (bidirectional <Connect><Stream> only) ------------------------------

    def send_media(self, mulaw: bytes) -> bool:
        """Queue mu-law/8000 audio for Twilio to play. False when there is no live stream."""
        if not mulaw:
            raise ValueError("no audio to send")
        payload = base64.b64encode(mulaw).decode("ascii")
        return self._queue({"event": "media", "media": {"payload": payload}})

    def send_mark(self, name: str) -> bool:
        """Queue a mark; Twilio echoes it once the audio queued before it has played."""
        if not name:
            raise ValueError("a mark needs a name")
        return self._queue({"event": "mark", "mark": {"name": name}})

    def send_clear(self) -> bool:
        """Drop Twilio's queued outbound audio (barge-in); pending marks come back at once."""
        return self._queue({"event": "clear"})

    def _queue(self, message: dict[str, Any]) -> bool:
        # Racing a hang-up is normal for a sink, so a closed stream is a no, not an error.
        if not self._started or self._stopped:
            return False
        message["streamSid"] = self._stream_sid
        self._outbox.append(json.dumps(message, separators=(",", ":")))
        return True

    # ---- parsing ---------------------------------------------------------------------------

    def _receive(self, text: str) -> list[DialectEvent]:
        if self._stopped:
            raise _protocol("message after stop")
        message = _object(_loads(text), "message")
        event = message.get("event")
        if not isinstance(event, str):
            raise _invalid("event must be a string")
        handler = self._handlers.get(event)
        if handler is None:
            self.counters.unknown_events += 1
            self._note_unknown_sequence(message)
            return []
        return handler(message)

    def _on_connected(self, message: dict[str, Any]) -> list[DialectEvent]:
        # Checked loosely: it carries nothing we use, and some Twilio clones skip it.
        self.counters.connected += 1
        return []

    def _on_start(self, message: dict[str, Any]) -> list[DialectEvent]:
        if self._started:
            raise _protocol("duplicate start")
        seq = self._sequence(message)
        body = _object(_required(message, "start", "start"), "start")
        outer = message.get("streamSid")
        inner = body.get("streamSid")
        if outer is None and inner is None:
            raise _invalid("missing streamSid")
        outer_sid = None if outer is None else _text(outer, "streamSid")
        inner_sid = None if inner is None else _text(inner, "start.streamSid")
        if outer_sid is not None and inner_sid is not None and outer_sid != inner_sid:
            raise _protocol("streamSid mismatch")
        stream_sid = outer_sid or inner_sid or ""
        call_sid = _text(_required(body, "callSid", "start.callSid"), "start.callSid")
        account_sid = _text(_required(body, "accountSid", "start.accountSid"), "start.accountSid")
        tracks = self._parse_tracks(_required(body, "tracks", "start.tracks"))
        fmt = _object(_required(body, "mediaFormat", "start.mediaFormat"), "start.mediaFormat")
        encoding = _text(_required(fmt, "encoding", "mediaFormat.encoding"), "mediaFormat.encoding")
        rate = _integer(
            _required(fmt, "sampleRate", "mediaFormat.sampleRate"), "mediaFormat.sampleRate"
        )
        channels = _integer(
            _required(fmt, "channels", "mediaFormat.channels"), "mediaFormat.channels"
        )
        if encoding.lower() != MULAW_ENCODING or rate != SAMPLE_RATE or channels != 1:
            raise _unsupported("unsupported media format")
        custom = _string_map(body.get("customParameters"), "start.customParameters")

        self._started = True
        self._stream_sid, self._call_sid, self._account_sid = stream_sid, call_sid, account_sid
        self._tracks = tracks
        self._note_sequence(seq)
        return [
            CallStarted(
                dialect=self.name,
                platform_call_id=call_sid,
                stream_id=stream_sid,
                channels=tuple(ChannelInfo(CHANNEL_NAMES[t], t) for t in tracks),
                media_format=MediaFormat("pcmu", SAMPLE_RATE, 1),
                sample_rate=SAMPLE_RATE,
                metadata={
                    "account_sid": account_sid,
                    "call_sid": call_sid,
                    "stream_sid": stream_sid,
                    "tracks": ",".join(tracks),
                },
                custom_parameters=custom,
            )
        ]

    @staticmethod
    def _parse_tracks(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise _invalid("start.tracks must be a non-empty array")
        found: set[str] = set()
        for item in value:
            if not isinstance(item, str):
                raise _invalid("start.tracks must hold strings")
            track = _TRACK_ALIASES.get(item)
            if track is None:
                raise _unsupported("unsupported track")
            if track in found:
                raise _invalid("duplicate track in start.tracks")
            found.add(track)
        return tuple(t for t in TRACKS if t in found)

    def _on_media(self, message: dict[str, Any]) -> list[DialectEvent]:
        self._require_started("media before start")
        seq = self._sequence(message)
        self._check_stream(message)
        body = _object(_required(message, "media", "media"), "media")
        track = self._track(_required(body, "track", "media.track"), "media.track")
        _optional_decimal(body, "chunk", "media.chunk")
        timestamp = _optional_decimal(body, "timestamp", "media.timestamp")
        payload = _text(_required(body, "payload", "media.payload"), "media.payload")
        mulaw = _strict_b64decode(payload)

        self._note_sequence(seq)
        self._note_timestamp(track, timestamp, len(mulaw))
        self.counters.media_frames += 1
        self.counters.media_bytes += len(mulaw)
        return [Audio(CHANNEL_NAMES[track], ulaw_to_pcm16(mulaw), timestamp)]

    def _on_dtmf(self, message: dict[str, Any]) -> list[DialectEvent]:
        self._require_started("dtmf before start")
        seq = self._sequence(message)
        self._check_stream(message)
        body = _object(_required(message, "dtmf", "dtmf"), "dtmf")
        # Twilio always says "inbound_track" here; a missing track means the caller too.
        track = self._track(body.get("track", "inbound"), "dtmf.track")
        digit = _text(_required(body, "digit", "dtmf.digit"), "dtmf.digit")
        if digit not in DTMF_DIGITS:
            raise _invalid("dtmf.digit is not a DTMF digit")

        self._note_sequence(seq)
        self.counters.dtmf += 1
        return [Dtmf(CHANNEL_NAMES[track], digit)]

    def _on_mark(self, message: dict[str, Any]) -> list[DialectEvent]:
        self._require_started("mark before start")
        seq = self._sequence(message)
        self._check_stream(message)
        body = _object(_required(message, "mark", "mark"), "mark")
        name = _text(_required(body, "name", "mark.name"), "mark.name")

        self._note_sequence(seq)
        self.counters.marks += 1
        return [Mark(name)]

    def _on_stop(self, message: dict[str, Any]) -> list[DialectEvent]:
        self._require_started("stop before start")
        seq = self._sequence(message)
        self._check_stream(message)
        body = _object(message.get("stop", {}), "stop")
        for key, expected in (("callSid", self._call_sid), ("accountSid", self._account_sid)):
            if key in body and _text(body[key], f"stop.{key}") != expected:
                raise _protocol(f"stop.{key} mismatch")

        self._note_sequence(seq)
        self._stopped = True
        return [CallEnded(reason="stop")]

    # ---- shared checks -------------------------------------------------------------------

    def _require_started(self, reason: str) -> None:
        if not self._started:
            raise _protocol(reason)

    def _check_stream(self, message: Mapping[str, Any]) -> None:
        sid = _text(_required(message, "streamSid", "streamSid"), "streamSid")
        if sid != self._stream_sid:
            raise _protocol("streamSid mismatch")

    def _track(self, value: Any, what: str) -> str:
        if not isinstance(value, str):
            raise _invalid(f"{what} must be a string")
        track = _TRACK_ALIASES.get(value)
        if track is None or track not in self._tracks:
            raise _protocol(f"{what} not in start.tracks")
        return track

    @staticmethod
    def _sequence(message: Mapping[str, Any]) -> int | None:
        return _optional_decimal(message, "sequenceNumber", "sequenceNumber")

    # ---- sequence and timing accounting (after validation: never fails) ------------------

    def _note_unknown_sequence(self, message: Mapping[str, Any]) -> None:
        # A future event type still consumes a sequence number; skipping it would look like
        # a gap. Its fields are not ours to judge, so a malformed number is just ignored.
        try:
            seq = self._sequence(message)
        except DialectError:
            return
        self._note_sequence(seq)

    def _note_sequence(self, seq: int | None) -> None:
        if seq is None:
            return
        last = self._last_seq
        if last is not None and seq != last + 1:
            if seq > last:
                self.counters.sequence_gaps += 1
                self.counters.sequence_missing += seq - last - 1
            elif seq in self._seen_seq:
                self.counters.sequence_duplicates += 1
                return
            else:
                self.counters.sequence_reorders += 1
        self._last_seq = seq if last is None else max(last, seq)
        self._seen_seq.add(seq)
        self._seen_order.append(seq)
        if len(self._seen_order) > _SEQ_WINDOW:
            self._seen_seq.discard(self._seen_order.popleft())

    def _note_timestamp(self, track: str, timestamp: int | None, samples: int) -> None:
        if timestamp is None:
            return
        frame_ms = samples * 1000 / SAMPLE_RATE
        previous = self._track_time.get(track)
        if previous is not None:
            last, last_ms = previous
            if timestamp <= last:
                self.counters.timestamp_reorders += 1
                return
            # Timestamps are whole milliseconds: lateness under a frame (or 1 ms) is jitter.
            skipped = timestamp - (last + last_ms)
            if skipped >= max(last_ms, 1.0):
                self.counters.timestamp_gaps += 1
                self.counters.timestamp_gap_ms += round(skipped)
        self._track_time[track] = (timestamp, frame_ms)


# ---- Twilio's side ---------------------------------------------------------------------------


def new_sid(prefix: str) -> str:
    """A Twilio-style identifier: two-letter prefix + 32 hex digits (CA..., MZ..., AC...)."""
    return prefix + uuid.uuid4().hex


class TwilioStreamEncoder:
    """Produces the text frames Twilio sends for one stream, numbered as Twilio numbers them.

    ``sequenceNumber`` counts every message from ``start`` ("1"); ``chunk`` counts media per
    track from "1"; ``timestamp`` is per-track milliseconds since the stream began, and keeps
    advancing across a :meth:`skip` (time passed without media), as Twilio's does.
    """

    def __init__(
        self,
        *,
        account_sid: str | None = None,
        call_sid: str | None = None,
        stream_sid: str | None = None,
        tracks: Sequence[str] = ("inbound",),
        custom_parameters: Mapping[str, str] | None = None,
    ) -> None:
        if not tracks or any(t not in TRACKS for t in tracks):
            raise ValueError("tracks must be 'inbound' and/or 'outbound'")
        self.account_sid = account_sid or new_sid("AC")
        self.call_sid = call_sid or new_sid("CA")
        self.stream_sid = stream_sid or new_sid("MZ")
        self.tracks = tuple(tracks)
        self.custom_parameters = dict(custom_parameters or {})
        self._seq = 0
        self._chunk = dict.fromkeys(self.tracks, 0)
        self._next_ms = dict.fromkeys(self.tracks, 0.0)

    @property
    def sequence_number(self) -> int:
        """The last sequenceNumber used (0 before start)."""
        return self._seq

    def timestamp_ms(self, track: str = "inbound") -> int:
        """The timestamp the next media frame of ``track`` will carry."""
        return int(self._next_ms[track])

    def _dump(self, message: dict[str, Any]) -> str:
        return json.dumps(message, separators=(",", ":"))

    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    def connected(self) -> str:
        return self._dump({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self) -> str:
        seq = self._next_seq()
        return self._dump(
            {
                "event": "start",
                "sequenceNumber": seq,
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": list(self.tracks),
                    "mediaFormat": {
                        "encoding": MULAW_ENCODING,
                        "sampleRate": SAMPLE_RATE,
                        "channels": 1,
                    },
                    "customParameters": self.custom_parameters,
                },
                "streamSid": self.stream_sid,
            }
        )

    def media(
        self, mulaw: bytes, *, track: str = "inbound", timestamp_ms: int | None = None
    ) -> str:
        """One media message carrying ``mulaw`` as is (Twilio's frames are 160 bytes)."""
        if track not in self._chunk:
            raise ValueError("track was not announced in start")
        seq = self._next_seq()
        self._chunk[track] += 1
        now = self._next_ms[track] if timestamp_ms is None else float(timestamp_ms)
        self._next_ms[track] = now + len(mulaw) * 1000 / SAMPLE_RATE
        return self._dump(
            {
                "event": "media",
                "sequenceNumber": seq,
                "media": {
                    "track": track,
                    "chunk": str(self._chunk[track]),
                    "timestamp": str(int(now)),
                    "payload": base64.b64encode(mulaw).decode("ascii"),
                },
                "streamSid": self.stream_sid,
            }
        )

    def media_frames(self, mulaw: bytes, *, track: str = "inbound") -> list[str]:
        """Cut ``mulaw`` into 20 ms media messages, padding the last with mu-law silence."""
        out = []
        for i in range(0, len(mulaw), FRAME_BYTES):
            frame = mulaw[i : i + FRAME_BYTES]
            frame += bytes([ULAW_SILENCE]) * (FRAME_BYTES - len(frame))
            out.append(self.media(frame, track=track))
        return out

    def skip(self, ms: float, *, track: str | None = None) -> None:
        """Let ``ms`` pass without media on ``track`` (all tracks when None): a gap or hold."""
        if ms < 0:
            raise ValueError("cannot skip backwards")
        for name in self.tracks if track is None else (track,):
            self._next_ms[name] += ms

    def dtmf(self, digit: str, *, track: str = "inbound_track") -> str:
        seq = self._next_seq()
        return self._dump(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": seq,
                "dtmf": {"track": track, "digit": digit},
            }
        )

    def mark(self, name: str) -> str:
        """The echo Twilio sends when a mark we queued has been reached."""
        seq = self._next_seq()
        return self._dump(
            {
                "event": "mark",
                "sequenceNumber": seq,
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    def stop(self) -> str:
        seq = self._next_seq()
        return self._dump(
            {
                "event": "stop",
                "sequenceNumber": seq,
                "streamSid": self.stream_sid,
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            }
        )
