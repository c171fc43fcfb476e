"""The Twilio-style JSON stream, shared by Twilio, SignalWire, Telnyx, Plivo and Exotel.

Every member sends JSON text frames ``start`` -> ``media`` (base64 audio) -> ``stop`` with
``dtmf`` and mark echoes between, and takes ``media``/``mark``/``clear`` back. They differ in
field names (``streamSid`` / ``stream_id`` / ``streamId``), in the start message, in codecs
(PCMU, PCMA, L16 at 8/16/24 kHz) and in their back-channel verbs. :class:`TwilioStyleDialect`
holds what they share (state, sequence and timestamp accounting, media decoding, dtmf, marks,
the outbound queue); each platform's module subclasses it with its field names, its own
``parse_start`` and its outbound frames.

Validation is strict about what the bridge relies on and loose about what it does not: a frame
that would make us guess (bad JSON, wrong types, missing fields, a foreign stream id, media
outside the announced tracks) ends the call with a precise close code, while unknown event
types, extra fields and sequence anomalies are counted and tolerated. Every close reason is a
fixed phrase that never quotes the payload.

Close codes: 1007 malformed message; 1002 protocol violation; 1003 unsupported data.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Final

from ivr_bridge import wsfast
from ivr_bridge.audio.codecs import (
    alaw_to_pcm16,
    pcm16_to_alaw,
    pcm16_to_ulaw,
    resample,
    ulaw_to_pcm16,
)
from ivr_bridge.dialects import strictjson as sj
from ivr_bridge.dialects.base import (
    ClearAudio,
    DialectSettings,
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
from ivr_bridge.dialects.upgrade_auth import (
    check_shared_secret,
    check_twilio_signature,
    require_secrets,
)
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
    MediaGap,
)

TRACKS: Final = ("inbound", "outbound")  # canonical order of CallStarted.channels
CHANNEL_NAMES: Final = {"inbound": "caller", "outbound": "agent"}
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
RECOGNIZER_RATES: Final = (8000, 16000, 48000)  # what SpeechKit takes as is
TRACK_ALIASES: Final = {
    "inbound": "inbound",
    "inbound_track": "inbound",
    "outbound": "outbound",
    "outbound_track": "outbound",
}
_CAPABILITIES: Final = frozenset({"play", "mark", "clear", "disconnect"})
_SEQ_WINDOW: Final = 1024  # how far back a repeated sequence number counts as a duplicate
_SEQ_MASK: Final = (1 << _SEQ_WINDOW) - 1


def recognizer_rate(wire_rate: int) -> int:
    """The rate audio goes to SpeechKit at: the wire rate when it takes it, else 16 kHz."""
    return wire_rate if wire_rate in RECOGNIZER_RATES else 16000


@dataclass(frozen=True, slots=True)
class StreamStart:
    """What a platform's ``start`` message told us, in the family's common terms."""

    stream_id: str
    call_id: str
    tracks: tuple[str, ...]  # canonical "inbound"/"outbound", in TRACKS order
    codec: str  # "pcmu" | "pcma" | "l16"
    wire_rate: int
    channels: int = 1
    l16_big_endian: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)
    custom_parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass
class StreamCounters:
    """What one stream looked like on the wire; anomalies here are tolerated, not fatal."""

    messages: int = 0  # every frame fed in, valid or not
    connected: int = 0
    media_frames: int = 0
    media_bytes: int = 0  # payload bytes after base64
    dtmf: int = 0
    marks: int = 0
    unknown_events: int = 0
    acknowledgements: int = 0  # clear/clearedAudio acks and platform errors we only count
    untracked_media: int = 0  # media on a track we do not recognize (dropped)
    sequence_gaps: int = 0  # the sequence number jumped forward by more than one
    sequence_missing: int = 0  # numbers skipped by those jumps
    sequence_duplicates: int = 0  # a number seen before (within the last 1024)
    sequence_reorders: int = 0  # a number below the highest seen, arriving late
    timestamp_gaps: int = 0  # a track's media timestamp jumped by a frame or more
    timestamp_gap_ms: int = 0  # total milliseconds those jumps skipped
    timestamp_reorders: int = 0  # a track's media timestamp did not move forward

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class TwilioStyleDialect(QueuedOutput):
    """One connection of a Twilio-style platform. Subclasses set the names and ``parse_start``.

    Feed frames with ``receive_text``; after each call send ``data_to_send()`` and honour
    ``close_to_send()``. Only DialectError escapes ``receive_*``.
    """

    name: str = ""
    seq_key: ClassVar[str] = "sequenceNumber"
    stream_key: ClassVar[str] = "streamSid"  # the stream id on every message after start
    stream_required: ClassVar[bool] = True  # must later messages name the stream?
    media_track_key: ClassVar[str | None] = "track"  # None: every frame is the caller's
    timestamp_key: ClassVar[str] = "timestamp"
    timestamp_is_epoch: ClassVar[bool] = False  # Plivo stamps media with Unix ms
    dtmf_duration_key: ClassVar[str | None] = None
    mark_event: ClassVar[str] = "mark"
    acknowledged_events: ClassVar[frozenset[str]] = frozenset()
    # True: start lists the tracks, and media on another is a protocol error. False: tracks
    # come from configuration, and media on an unconfigured track is counted and dropped.
    tracks_announced: ClassVar[bool] = True
    # How the platform lays out a media message (media_layout: the per-frame fast path).
    media_layout_keys: ClassVar[tuple[str, ...]] = ("track", "chunk", "timestamp")
    stream_before_media: ClassVar[bool] = False

    def __init__(self, *, fill_timestamp_gaps: bool = False) -> None:
        self.counters = StreamCounters()
        self._fill_gaps = fill_timestamp_gaps
        self._outbox: list[str | bytes] = []
        self._close: tuple[int, str] | None = None
        self._start: StreamStart | None = None
        self._stopped = False
        self._last_seq: int | None = None
        # Bit i: sequence number (last - i) was seen; _SEQ_WINDOW bits (128 bytes, where a
        # set of the last 1,024 numbers took ~40 KB per call).
        self._seen_bits = 0
        self._track_time: dict[str, tuple[int, float]] = {}  # track -> (last stamp, frame ms)
        self._media_layout: re.Pattern[str] | None = None  # set at start (media_layout)
        # The same layout for the compiled frame scanner (wsfast), when it is built.
        self.compiled_layout: Any = None
        self._handlers: dict[str, Callable[[dict[str, Any]], list[DialectEvent]]] = {
            "connected": self._on_connected,
            "start": self._on_start,
            "media": self._on_media,
            "dtmf": self._on_dtmf,
            self.mark_event: self._on_mark,
            "stop": self._on_stop,
        }

    # ---- what subclasses provide ---------------------------------------------------------

    def parse_start(self, message: dict[str, Any]) -> StreamStart:
        """Validate a ``start`` message (no state change); raise DialectError if it is bad."""
        raise sj.protocol("start is not understood by this dialect")

    def outbound_media(self, pcm: bytes, sample_rate: int) -> dict[str, Any]:
        """The message that plays PCM16 on this platform (without the stream id)."""
        payload = base64.b64encode(self.encode_outbound(pcm, sample_rate)).decode("ascii")
        return {"event": "media", "media": {"payload": payload}}

    def outbound_mark(self, name: str) -> dict[str, Any]:
        return {"event": "mark", "mark": {"name": name}}

    def outbound_clear(self) -> dict[str, Any]:
        return {"event": "clear"}

    def outbound_stream_key(self) -> str | None:
        """Where our frames name the stream (None: they do not)."""
        return self.stream_key

    # ---- state ---------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._start is not None

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def stream_sid(self) -> str | None:
        return self._start.stream_id if self._start else None

    @property
    def call_sid(self) -> str | None:
        return self._start.call_id if self._start else None

    @property
    def tracks(self) -> tuple[str, ...]:
        return self._start.tracks if self._start else ()

    @property
    def capabilities(self) -> frozenset[str]:
        return _CAPABILITIES

    # ---- Dialect protocol ----------------------------------------------------------------

    def receive_text(self, text: str) -> list[DialectEvent]:
        """Feed one text frame. Raises DialectError; never anything else."""
        self.counters.messages += 1
        try:
            return self._receive(text)
        except RecursionError:
            raise sj.invalid("message nested too deeply") from None

    def receive_bytes(self, data: bytes) -> list[DialectEvent]:
        """The family sends only text frames."""
        self.counters.messages += 1
        raise sj.unsupported("binary frames are not part of this protocol")

    def receive_eof(self) -> list[DialectEvent]:
        """The socket dropped without a stop message: the call is over."""
        if self._stopped:
            return []
        self._stopped = True
        return [CallEnded(reason="hangup")]

    def send(self, request: OutboundRequest) -> None:
        """Queue a back-channel request. A request racing the hang-up is dropped quietly."""
        if isinstance(request, Disconnect):
            # Hanging up from our side is closing the socket (with <Connect><Stream>, Twilio
            # then runs the next TwiML verb).
            if self._close is None:
                self._close = (1000, request.reason[:120] or "call ended")
            self._stopped = True
            return
        if isinstance(request, SendEvent):
            raise UnsupportedRequest(f"{self.name} streams carry no such message")
        if isinstance(request, PlayAudio):
            if request.pcm:
                self._queue(self.outbound_media(request.pcm, request.sample_rate))
        elif isinstance(request, SendMark):
            if not request.name:
                raise UnsupportedRequest("a mark needs a name")
            self._queue(self.outbound_mark(request.name))
        elif isinstance(request, ClearAudio):
            self._queue(self.outbound_clear())

    def close(self, reason: str) -> None:
        """The family has no goodbye message: the websocket close, with the caller's own code,
        is the whole goodbye, so nothing is queued and ``close_to_send`` stays as it was."""
        self._stopped = True

    # ---- outbound helpers ----------------------------------------------------------------

    def encode_outbound(self, pcm: bytes, sample_rate: int) -> bytes:
        """PCM16 at ``sample_rate`` in the stream's own codec and rate."""
        start = self._start
        codec, rate = (start.codec, start.wire_rate) if start else ("pcmu", 8000)
        pcm = resample(pcm, sample_rate, rate)
        if codec == "pcmu":
            return pcm16_to_ulaw(pcm)
        if codec == "pcma":
            return pcm16_to_alaw(pcm)
        if start is not None and start.l16_big_endian:
            return _swap16(pcm)
        return pcm

    def _queue(self, message: dict[str, Any]) -> bool:
        # Racing a hang-up is normal for the dialog logic, so a closed stream is a no.
        if self._start is None or self._stopped:
            return False
        key = self.outbound_stream_key()
        if key is not None:
            message[key] = self._start.stream_id
        self._outbox.append(sj.dumps(message))
        return True

    # ---- parsing -------------------------------------------------------------------------

    def _receive(self, text: str) -> list[DialectEvent]:
        if self._stopped:
            raise sj.protocol("message after stop")
        layout = self._media_layout
        if layout is not None:
            match = layout.fullmatch(text)
            if match is not None:
                fast = self._fast_media(match)
                if fast is not None:
                    return fast
        message = self.unwrap(sj.obj(sj.loads(text), "message"))
        event = message.get("event")
        if not isinstance(event, str):
            raise sj.invalid("event must be a string")
        handler = self._handlers.get(event)
        if handler is None:
            if event in self.acknowledged_events:
                self.counters.acknowledgements += 1
            else:
                self.counters.unknown_events += 1
            self._note_unknown_sequence(message)
            return []
        return handler(message)

    def unwrap(self, message: dict[str, Any]) -> dict[str, Any]:
        """A platform that wraps frames in an envelope returns the inner frame here."""
        return message

    def _on_connected(self, message: dict[str, Any]) -> list[DialectEvent]:
        # Checked loosely: it carries nothing we use, and some platforms skip it.
        self.counters.connected += 1
        return []

    def _on_start(self, message: dict[str, Any]) -> list[DialectEvent]:
        if self._start is not None:
            raise sj.protocol("duplicate start")
        seq = self._sequence(message)
        start = self.parse_start(message)
        self._start = start
        self._media_layout = media_layout(self, start.stream_id)
        if self._media_layout is not None:
            self.compiled_layout = wsfast.compile_layout(self, start)
        self._note_sequence(seq)
        out_rate = recognizer_rate(start.wire_rate)
        return [
            CallStarted(
                dialect=self.name,
                platform_call_id=start.call_id,
                stream_id=start.stream_id,
                channels=tuple(ChannelInfo(CHANNEL_NAMES[t], t) for t in start.tracks),
                media_format=MediaFormat(start.codec, start.wire_rate, start.channels),
                sample_rate=out_rate,
                metadata=dict(start.metadata),
                custom_parameters=dict(start.custom_parameters),
            )
        ]

    def _on_media(self, message: dict[str, Any]) -> list[DialectEvent]:
        start = self._require_started("media before start")
        seq = self._sequence(message)
        self._check_stream(message)
        body = sj.obj(sj.required(message, "media", "media"), "media")
        if self.media_track_key is None:
            track = "inbound"
        else:
            what = f"media.{self.media_track_key}"
            if self.tracks_announced:
                raw_track = sj.required(body, self.media_track_key, what)
            else:
                raw_track = body.get(self.media_track_key, "inbound")
            track = self._track(raw_track, what, strict=self.tracks_announced)
        sj.optional_decimal(body, "chunk", "media.chunk")
        stamp = sj.optional_decimal(body, self.timestamp_key, f"media.{self.timestamp_key}")
        payload = sj.text(sj.required(body, "payload", "media.payload"), "media.payload")
        return self._media(start, seq, track, stamp, sj.b64decode(payload))

    def _fast_media(self, match: re.Match[str]) -> list[DialectEvent] | None:
        """A media message in the platform's own canonical layout (see media_layout): the
        same checks and result as ``_on_media``, without the general JSON parse. None: the
        general path decides (a missing track that the start announced, say)."""
        start = self._start
        assert start is not None
        seq, seq_n, raw_track, stamp, stamp_n, payload, sid = match.group(
            "seq", "seq_n", "track", "stamp", "stamp_n", "payload", "sid"
        )
        if sid is not None and sid != start.stream_id:
            return None  # the general path refuses it, with its own reason
        seq = seq or seq_n
        stamp = stamp or stamp_n
        if raw_track:
            what = f"media.{self.media_track_key}"
            track = self._track(raw_track, what, strict=self.tracks_announced)
        elif self.media_track_key is None or not self.tracks_announced:
            track = "inbound"
        else:
            return None
        return self._media(
            start,
            int(seq) if seq else None,
            track,
            int(stamp) if stamp else None,
            sj.b64decode(payload),
        )

    def receive_media_run(
        self, count: int, track_index: int, seq: int | None, stamps: Any, raw: bytes
    ) -> list[DialectEvent]:
        """``count`` media messages that the compiled scanner matched in this stream's
        layout (see wsfast.py): the same accounting and audio as ``count`` calls of
        ``receive_text``, as one Audio when nothing sets a frame apart from the one before."""
        self.counters.messages += 1  # as receive_text counts: the first, even if refused
        if self._stopped:
            raise sj.protocol("message after stop")
        self.counters.messages += count - 1
        start = self._start
        assert start is not None
        track = TRACKS[track_index]
        first = stamps[0] if stamps is not None else None
        if count == 1:
            return self._media(start, seq, track, first, raw)
        last_seq = self._last_seq
        previous = self._track_time.get(track) if first is not None else None
        if not (
            track in start.tracks
            and recognizer_rate(start.wire_rate) == start.wire_rate
            and (seq is None or last_seq is None or seq > last_seq)
            and (first is None or previous is None or first > previous[0])
        ):
            # The first frame is a duplicate, reordered or not ours: frame by frame, exactly.
            size = len(raw) // count
            events: list[DialectEvent] = []
            for i in range(count):
                events += self._media(
                    start,
                    None if seq is None else seq + i,
                    track,
                    None if stamps is None else stamps[i],
                    raw[i * size : (i + 1) * size],
                )
            return events
        # The first frame is accounted as itself; the rest carry straight on from it.
        pcm = self._decode(raw, start)
        self._note_sequence(seq)
        if seq is not None:
            more = count - 1
            self._seen_bits = ((self._seen_bits << more) | ((1 << more) - 1)) & _SEQ_MASK
            self._last_seq = seq + more
        frame_ms = (len(pcm) // 2 // count) * 1000 / start.wire_rate
        gap_ms = self._note_timestamp(track, first, frame_ms)
        if stamps is not None:
            self._track_time[track] = (stamps[-1], frame_ms)
        self.counters.media_frames += count
        self.counters.media_bytes += len(raw)
        relative = None if first is None or self.timestamp_is_epoch else first
        audio = Audio(CHANNEL_NAMES[track], pcm, relative, raw if start.codec == "pcmu" else None)
        if gap_ms and self._fill_gaps:
            return [MediaGap(CHANNEL_NAMES[track], gap_ms), audio]
        return [audio]

    def _media(
        self, start: StreamStart, seq: int | None, track: str, stamp: int | None, raw: bytes
    ) -> list[DialectEvent]:
        """A validated media frame: account for it and hand its audio on."""
        pcm = self._decode(raw, start)
        self._note_sequence(seq)
        if track not in start.tracks:
            self.counters.untracked_media += 1
            return []
        samples = len(pcm) // 2
        gap_ms = self._note_timestamp(track, stamp, samples * 1000 / start.wire_rate)
        self.counters.media_frames += 1
        self.counters.media_bytes += len(raw)
        out_rate = recognizer_rate(start.wire_rate)
        if out_rate != start.wire_rate:
            pcm = resample(pcm, start.wire_rate, out_rate)
            ulaw = None
        else:
            ulaw = raw if start.codec == "pcmu" else None
        relative = None if stamp is None or self.timestamp_is_epoch else stamp
        audio = Audio(CHANNEL_NAMES[track], pcm, relative, ulaw)
        if gap_ms and self._fill_gaps:
            return [MediaGap(CHANNEL_NAMES[track], gap_ms), audio]
        return [audio]

    def _decode(self, raw: bytes, start: StreamStart) -> bytes:
        if start.codec == "pcmu":
            return ulaw_to_pcm16(raw)
        if start.codec == "pcma":
            return alaw_to_pcm16(raw)
        if len(raw) % 2:
            raise sj.invalid("media.payload is not whole 16-bit samples")
        return _swap16(raw) if start.l16_big_endian else raw

    def _on_dtmf(self, message: dict[str, Any]) -> list[DialectEvent]:
        self._require_started("dtmf before start")
        seq = self._sequence(message)
        self._check_stream(message)
        body = sj.obj(sj.required(message, "dtmf", "dtmf"), "dtmf")
        # Twilio always says "inbound_track" here; a missing track means the caller too.
        track = self._track(body.get("track", "inbound"), "dtmf.track", strict=True)
        digit = sj.text(sj.required(body, "digit", "dtmf.digit"), "dtmf.digit")
        if digit not in DTMF_DIGITS:
            raise sj.invalid("dtmf.digit is not a DTMF digit")
        duration = None
        key = self.dtmf_duration_key
        if key is not None and body.get(key) is not None:
            duration = sj.decimal(body[key], f"dtmf.{key}")
        self._note_sequence(seq)
        self.counters.dtmf += 1
        return [Dtmf(CHANNEL_NAMES[track], digit, duration)]

    def _on_mark(self, message: dict[str, Any]) -> list[DialectEvent]:
        self._require_started(f"{self.mark_event} before start")
        seq = self._sequence(message)
        self._check_stream(message)
        name = self.mark_name(message)
        self._note_sequence(seq)
        self.counters.marks += 1
        return [Mark(name)]

    def mark_name(self, message: dict[str, Any]) -> str:
        body = sj.obj(sj.required(message, "mark", "mark"), "mark")
        return sj.text(sj.required(body, "name", "mark.name"), "mark.name")

    def _on_stop(self, message: dict[str, Any]) -> list[DialectEvent]:
        start = self._require_started("stop before start")
        seq = self._sequence(message)
        self._check_stream(message)
        self.check_stop(sj.obj(message.get("stop", {}), "stop"), start)
        self._note_sequence(seq)
        self._stopped = True
        return [CallEnded(reason="stop")]

    def check_stop(self, body: dict[str, Any], start: StreamStart) -> None:
        """A subclass checks the stop body's identifiers against the start."""

    # ---- shared checks -------------------------------------------------------------------

    def _require_started(self, reason: str) -> StreamStart:
        if self._start is None:
            raise sj.protocol(reason)
        return self._start

    def _check_stream(self, message: Mapping[str, Any]) -> None:
        assert self._start is not None
        key = self.stream_key
        if key not in message and not self.stream_required:
            return
        sid = sj.text(sj.required(message, key, key), key)
        if sid != self._start.stream_id:
            raise sj.protocol(f"{key} mismatch")

    def _track(self, value: Any, what: str, *, strict: bool) -> str:
        if not isinstance(value, str):
            raise sj.invalid(f"{what} must be a string")
        track = TRACK_ALIASES.get(value)
        if track is None:
            raise sj.protocol(f"{what} not in start.tracks")
        if strict and track not in self.tracks:
            raise sj.protocol(f"{what} not in start.tracks")
        return track

    def _sequence(self, message: Mapping[str, Any]) -> int | None:
        return sj.optional_decimal(message, self.seq_key, self.seq_key)

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
        if last is None:
            self._last_seq, self._seen_bits = seq, 1
            return
        if seq > last:
            if seq != last + 1:
                self.counters.sequence_gaps += 1
                self.counters.sequence_missing += seq - last - 1
            step = seq - last
            # A jump past the window forgets it (and never shifts by a huge count).
            self._seen_bits = (
                ((self._seen_bits << step) | 1) & _SEQ_MASK if step < _SEQ_WINDOW else 1
            )
            self._last_seq = seq
            return
        back = last - seq
        if back < _SEQ_WINDOW and (self._seen_bits >> back) & 1:
            self.counters.sequence_duplicates += 1
            return
        self.counters.sequence_reorders += 1
        if back < _SEQ_WINDOW:
            self._seen_bits |= 1 << back

    def _note_timestamp(self, track: str, stamp: int | None, frame_ms: float) -> int:
        """Accounts the frame's timestamp; returns whole ms skipped before it (0 if none)."""
        if stamp is None:
            return 0
        previous = self._track_time.get(track)
        skipped_ms = 0
        if previous is not None:
            last, last_ms = previous
            if stamp <= last:
                self.counters.timestamp_reorders += 1
                return 0
            # Timestamps are whole milliseconds: lateness under a frame (or 1 ms) is jitter.
            skipped = stamp - (last + last_ms)
            if skipped >= max(last_ms, 1.0):
                skipped_ms = round(skipped)
                self.counters.timestamp_gaps += 1
                self.counters.timestamp_gap_ms += skipped_ms
        self._track_time[track] = (stamp, frame_ms)
        return skipped_ms


_PLAIN_ID: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")


def _number(name: str) -> str:
    """A counter as sj.decimal takes it: a quoted decimal string or a bare JSON integer."""
    return f'(?:"(?P<{name}>[0-9]{{1,18}})"|(?P<{name}_n>0|[1-9][0-9]{{0,17}}))'


def media_layout(dialect: TwilioStyleDialect, stream_id: str) -> re.Pattern[str] | None:
    """The exact text of a media message as the platform lays it out.

    Media arrives 50 times a second per track, always in the platform's one layout
    (Twilio's: event, sequence number, media {track, chunk, timestamp, payload}, stream
    id; the order is the dialect's ``media_layout_keys`` and ``stream_before_media``). A
    message that matches in full is valid strict JSON with exactly these keys, once each,
    so the dialect can skip the general parse (it still compares the stream id); any other
    text (another order, spacing, extra keys, escapes) takes the general path. None when
    this stream's id has characters JSON might escape.
    """
    if not _PLAIN_ID.fullmatch(stream_id):
        return None
    cls = type(dialect)
    layout = _LAYOUTS.get(cls)
    if layout is None:
        layout = _LAYOUTS[cls] = _layout(cls)
    return layout


_LAYOUTS: dict[type[TwilioStyleDialect], re.Pattern[str]] = {}  # compiled once per class


LayoutPiece = tuple[bool, str, int, str]
"""(optional, prefix, value, suffix): a piece of a media message's layout; ``value`` is one
of wsfast's kinds (a counter, the track, the stream id, the payload, or nothing)."""


def layout_pieces(cls: type[TwilioStyleDialect]) -> list[LayoutPiece]:
    """The platform's media message layout as pieces, in order: event, sequence number,
    media {track, chunk, timestamp, payload}, stream id (in the dialect's
    ``media_layout_keys`` order and ``stream_before_media`` place). An optional piece is there
    exactly when its prefix is, which is how a JSON object with distinct keys reads. The
    regex here and the compiled matcher (wsfast.compile_layout) are both built from these."""
    track_key, keys = cls.media_track_key, cls.media_layout_keys
    fields: dict[str, LayoutPiece] = {
        "track": (True, f'"{track_key}":"', wsfast.TRACK_VALUE, '",'),
        "chunk": (True, '"chunk":', wsfast.CHUNK_VALUE, ","),
        "timestamp": (True, f'"{cls.timestamp_key}":', wsfast.STAMP_VALUE, ","),
    }
    if track_key is None or "track" not in keys:
        keys = tuple(k for k in keys if k != "track")
    media = [fields[k] for k in keys]
    media.append((False, '"payload":"', wsfast.PAYLOAD_VALUE, '"'))
    seq = (True, f'"{cls.seq_key}":', wsfast.SEQ_VALUE, ",")
    optional_stream = not cls.stream_required
    pieces: list[LayoutPiece] = [(False, '{"event":"media",', wsfast.NO_VALUE, "")]
    opening, closing = (False, '"media":{', wsfast.NO_VALUE, ""), (False, "}", wsfast.NO_VALUE, "")
    if cls.stream_before_media:
        pieces += [seq, (optional_stream, f'"{cls.stream_key}":"', wsfast.SID_VALUE, '",')]
        pieces += [opening, *media, closing]
    else:
        pieces += [seq, opening, *media, closing]
        pieces.append((optional_stream, f',"{cls.stream_key}":"', wsfast.SID_VALUE, '"'))
    pieces.append(closing)
    return pieces


_VALUE_PATTERNS: Final = {
    wsfast.NO_VALUE: "",
    wsfast.SEQ_VALUE: _number("seq"),
    wsfast.CHUNK_VALUE: _number("chunk"),
    wsfast.STAMP_VALUE: _number("stamp"),
    wsfast.TRACK_VALUE: "(?P<track>[a-z_]{1,24})",
    wsfast.SID_VALUE: "(?P<sid>[A-Za-z0-9_.:\\-]{1,128})",
    wsfast.PAYLOAD_VALUE: "(?P<payload>[A-Za-z0-9+/]+={0,2})",
}


def _layout(cls: type[TwilioStyleDialect]) -> re.Pattern[str]:
    parts = []
    for optional, prefix, value, suffix in layout_pieces(cls):
        part = re.escape(prefix) + _VALUE_PATTERNS[value] + re.escape(suffix)
        parts.append(f"(?:{part})?" if optional else part)
    if "(?P<track>" not in "".join(parts):
        parts.insert(0, "(?P<track>)")  # no track key: the group is always empty
    return re.compile("".join(parts))


def _swap16(data: bytes) -> bytes:
    """Swap the bytes of each 16-bit sample (big- <-> little-endian)."""
    swapped = bytearray(len(data))
    swapped[0::2] = data[1::2]
    swapped[1::2] = data[0::2]
    return bytes(swapped)


def parse_tracks(value: Any, what: str = "start.tracks") -> tuple[str, ...]:
    """A non-empty array of distinct track names, in canonical order."""
    if not isinstance(value, list) or not value:
        raise sj.invalid(f"{what} must be a non-empty array")
    found: set[str] = set()
    for item in value:
        if not isinstance(item, str):
            raise sj.invalid(f"{what} must hold strings")
        track = TRACK_ALIASES.get(item)
        if track is None:
            raise sj.unsupported("unsupported track")
        if track in found:
            raise sj.invalid(f"duplicate track in {what}")
        found.add(track)
    return tuple(t for t in TRACKS if t in found)


def option_tracks(options: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``tracks`` option of platforms whose start does not list them (default: caller)."""
    raw = options.get("tracks", ["inbound"])
    if isinstance(raw, str):
        raw = [raw]
    try:
        return parse_tracks(list(raw), "options.tracks")
    except (DialectError, TypeError):
        raise ConfigError("options.tracks", "expected a list of inbound / outbound") from None


def optional_text(body: Mapping[str, Any], key: str, what: str) -> str | None:
    """A string field that may be absent or null."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise sj.invalid(f"{what} must be a string")
    sj.utf8(value, what)
    return value


def metadata_of(body: Mapping[str, Any], keys: Mapping[str, str], where: str) -> dict[str, str]:
    """Optional string fields of ``body`` under our own names (``keys``: wire -> ours)."""
    out: dict[str, str] = {}
    for wire, ours in keys.items():
        value = optional_text(body, wire, f"{where}.{wire}")
        if value:
            out[ours] = value
    return out


# ---- the factory -----------------------------------------------------------------------------


class StreamFactory:
    """Authenticates an upgrade for one family member and builds its dialect.

    ``schemes`` lists the ``auth`` values the platform can use; ``token_header`` is its own
    header for a shared token; ``token_query`` allows ``?token=`` (platforms that cannot set
    headers); ``refuse_query`` answers 400 to any query string (Twilio and SignalWire never
    send one, so one is a sign of a misrouted request and a token that would end up in logs).
    """

    def __init__(
        self,
        name: str,
        build: Callable[[DialectSettings], TwilioStyleDialect],
        settings: DialectSettings,
        *,
        schemes: Sequence[str],
        token_header: str | None = None,
        token_query: bool = False,
        refuse_query: bool = False,
    ) -> None:
        require_secrets(name, settings, schemes)
        self.name = name
        self.settings = settings
        self._build = build
        self._token_header = token_header
        self._token_query = token_query
        self._refuse_query = refuse_query
        build(settings)  # options are checked at start-up, not on the first call

    def open(self, request: UpgradeRequest) -> TwilioStyleDialect:
        """Authenticate ``request``; return a fresh dialect or raise UpgradeRefused."""
        if self._refuse_query and request.query_string:
            raise UpgradeRefused(400, "query strings are not accepted")
        s = self.settings
        if s.auth == "signature":
            check_twilio_signature(request, s.secrets["auth_token"])
        else:
            check_shared_secret(request, s, header=self._token_header, query=self._token_query)
        return self._build(s)


def fill_gaps_option(options: Mapping[str, Any]) -> bool:
    value = options.get("fill_timestamp_gaps", False)
    if not isinstance(value, bool):
        raise ConfigError("options.fill_timestamp_gaps", "expected true or false")
    return value


# ---- start-message helpers -------------------------------------------------------------------

# Encoding names as the family spells them (lower-cased) -> our codec names.
ENCODINGS: Final = {
    "audio/x-mulaw": "pcmu",
    "pcmu": "pcmu",
    "mulaw": "pcmu",
    "audio/x-alaw": "pcma",
    "pcma": "pcma",
    "alaw": "pcma",
    "audio/x-l16": "l16",
    "l16": "l16",
    "audio/x-raw": "l16",
}


def media_format(
    fmt: Mapping[str, Any],
    *,
    where: str,
    rate_key: str,
    allowed: Mapping[str, tuple[int, ...]],
    quoted_rate: bool,
) -> tuple[str, int]:
    """(codec, rate) from a start message's media format; 1003 for anything not ``allowed``."""
    encoding = sj.text(sj.required(fmt, "encoding", f"{where}.encoding"), f"{where}.encoding")
    raw_rate = sj.required(fmt, rate_key, f"{where}.{rate_key}")
    what = f"{where}.{rate_key}"
    rate = sj.decimal(raw_rate, what) if quoted_rate else sj.integer(raw_rate, what)
    codec = ENCODINGS.get(encoding.lower())
    if codec is None or rate not in allowed.get(codec, ()):
        raise sj.unsupported("unsupported media format")
    return codec, rate


def byte_order_option(options: Mapping[str, Any], default: str) -> bool:
    """The ``l16_byte_order`` option ("little" / "big"); True for big-endian."""
    value = options.get("l16_byte_order", default)
    if value not in ("little", "big"):
        raise ConfigError("options.l16_byte_order", "expected little or big")
    return bool(value == "big")
