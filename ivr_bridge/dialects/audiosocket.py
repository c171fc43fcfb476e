"""Asterisk AudioSocket, sans-I/O: a TCP byte stream of type-length-value packets in, events out.

AudioSocket is not a websocket protocol: Asterisk (``AudioSocket(<uuid>,host:port)`` in the
dialplan, ``Dial(AudioSocket/host:port/<uuid>)``, or ARI externalMedia with
``encapsulation=audiosocket``) opens a plain TCP connection and sends packets of
``kind`` (1 byte), ``length`` (2 bytes, big-endian) and ``length`` payload bytes:

=======  ==========================================================================
0x00     hangup (either side), no payload
0x01     the stream's 16-byte UUID, always first
0x03     one DTMF digit, ASCII (Asterisk 20+)
0x10     audio: signed 16-bit little-endian mono PCM at 8 kHz (0x11-0x18: 12-192 kHz)
0xff     error, with an optional one-byte code (0x01 caller hung up, 0x02 frame
         forwarding error, 0x04 memory error)
=======  ==========================================================================

:class:`FrameParser` turns arbitrary TCP chunks into whole packets; :func:`encode_frame` is the
reverse. :class:`AudioSocketDialect` implements the bridge's Dialect protocol on top of them so
the same ``Call`` runs it; ``ivr_bridge.audiosocket_server`` feeds it from a TCP listener.

There is **no authentication on the wire** and nothing but the UUID to identify a call: bind the
listener to loopback or a private network and, where possible, an address allow-list.

Audio keeps its rate when it is 8 or 16 kHz; any other rate is resampled to 16 kHz, the most
SpeechKit takes. Back-channel audio goes out as 20 ms packets at the call's rate; AudioSocket
does not re-time what it receives, so the transport paces them (see audiosocket_server).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Final

from ivr_bridge.audio.codecs import Resampler, resample
from ivr_bridge.dialects.base import (
    ClearAudio,
    Disconnect,
    OutboundRequest,
    PlayAudio,
    QueuedOutput,
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
    MediaFormat,
)

NAME: Final = "audiosocket"
CHANNEL: Final = "caller"

KIND_HANGUP: Final = 0x00
KIND_UUID: Final = 0x01
KIND_DTMF: Final = 0x03
KIND_AUDIO: Final = 0x10  # slin 8 kHz; 0x11-0x18 are the higher rates below
KIND_ERROR: Final = 0xFF
AUDIO_RATES: Final = {
    0x10: 8000,
    0x11: 12000,
    0x12: 16000,
    0x13: 24000,
    0x14: 32000,
    0x15: 44100,
    0x16: 48000,
    0x17: 96000,
    0x18: 192000,
}
AUDIO_KINDS: Final = {rate: kind for kind, rate in AUDIO_RATES.items()}
ERROR_CALLER_HANGUP: Final = 0x01
HEADER: Final = struct.Struct(">BH")
MAX_PAYLOAD: Final = 0xFFFF
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
FRAME_MS: Final = 20
_NATIVE_RATES: Final = (8000, 16000)
_MAX_EARLY_DTMF: Final = 16


def _invalid(reason: str) -> DialectError:
    return DialectError(reason, DialectError.INVALID_PAYLOAD)


def _protocol(reason: str) -> DialectError:
    return DialectError(reason, DialectError.PROTOCOL_ERROR)


# ---- packets -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    kind: int
    payload: bytes


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    """One packet: kind, big-endian length, payload."""
    if not 0 <= kind <= 0xFF:
        raise ValueError("kind is one byte")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload longer than 65535 bytes")
    return HEADER.pack(kind, len(payload)) + payload


class FrameParser:
    """Reassembles packets from a TCP byte stream cut anywhere. Holds at most one packet.

    Feed chunks with :meth:`feed`; it yields every packet completed so far. The length field is
    16 bits, so a hostile peer can make us hold at most 64 KiB.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an incomplete packet held back."""
        return len(self._buffer)

    def feed(self, data: bytes) -> Iterator[Frame]:
        self._buffer += data
        offset = 0
        size = len(self._buffer)
        try:
            while size - offset >= HEADER.size:
                kind, length = HEADER.unpack_from(self._buffer, offset)
                end = offset + HEADER.size + length
                if end > size:
                    break
                yield Frame(kind, bytes(self._buffer[offset + HEADER.size : end]))
                offset = end
        finally:
            del self._buffer[:offset]


# ---- the bridge's side ---------------------------------------------------------------------


@dataclass
class AudioSocketCounters:
    """What one connection looked like; tolerated anomalies are counted here."""

    bytes_in: int = 0
    frames: int = 0
    audio_frames: int = 0
    audio_bytes: int = 0
    empty_audio: int = 0
    dtmf: int = 0
    unknown_kinds: int = 0
    after_hangup: int = 0  # packets after the call ended, ignored
    dtmf_dropped: int = 0  # digits before any audio beyond the small holding queue
    truncated_at_eof: int = 0
    playback_frames: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


_CAPABILITIES: Final = frozenset({"play", "disconnect"})


class AudioSocketDialect(QueuedOutput):
    """One AudioSocket connection. Feed TCP chunks to ``receive_bytes``; send ``data_to_send()``.

    ``CallStarted`` is emitted with the first audio packet, whose kind fixes the sample rate, so
    the rate is never guessed; DTMF before it is held (at most 16 digits) and follows it.
    ``close_to_send()`` is ``(1000, reason)`` when the bridge wants the TCP connection closed;
    AudioSocket has no close codes, so only the hang-up packet before it reaches Asterisk.
    """

    name = NAME

    def __init__(self, *, remote_address: str = "") -> None:
        self.counters = AudioSocketCounters()
        self._remote = remote_address
        self._parser = FrameParser()
        self._uuid: str | None = None
        self._kind: int | None = None  # the audio kind that fixed the call's rate
        self._rate = 0
        self._resampler: Resampler | None = None
        self._started = False
        self._ended = False
        self._early_dtmf: list[DialectEvent] = []
        self._outbox: list[str | bytes] = []
        self._close: tuple[int, str] | None = None

    @property
    def call_uuid(self) -> str | None:
        return self._uuid

    @property
    def sample_rate(self) -> int:
        """The rate of the PCM in Audio events (0 before the first audio)."""
        return self._rate

    @property
    def capabilities(self) -> frozenset[str]:
        return _CAPABILITIES

    # ---- inbound -------------------------------------------------------------------------

    def receive_text(self, text: str) -> list[DialectEvent]:
        raise DialectError("AudioSocket is a binary protocol", DialectError.UNSUPPORTED_DATA)

    def receive_bytes(self, data: bytes) -> list[DialectEvent]:
        """Feed the next chunk of the TCP stream (any size). Raises DialectError only."""
        self.counters.bytes_in += len(data)
        events: list[DialectEvent] = []
        for frame in self._parser.feed(data):
            self.counters.frames += 1
            if self._ended:
                self.counters.after_hangup += 1  # e.g. an error packet and then a hangup
                continue
            events += self._on_frame(frame)
        return events

    def receive_eof(self) -> list[DialectEvent]:
        """TCP closed: equivalent to a hangup packet."""
        if self._ended:
            return []
        self._ended = True
        if self._parser.pending:
            # A truncated packet at EOF is the peer's crash, not a reason to lose the call end.
            self.counters.truncated_at_eof += 1
        return [CallEnded(reason="hangup")]

    def _on_frame(self, frame: Frame) -> list[DialectEvent]:
        kind, payload = frame.kind, frame.payload
        if self._uuid is None:
            if kind != KIND_UUID:
                raise _protocol("first packet must be the UUID")
            if len(payload) != 16:
                raise _invalid("UUID packet must carry 16 bytes")
            self._uuid = str(uuid.UUID(bytes=payload))
            return []
        if kind in AUDIO_RATES:
            return self._on_audio(kind, payload)
        if kind == KIND_DTMF:
            return self._on_dtmf(payload)
        if kind == KIND_HANGUP:
            return self._end("hangup")
        if kind == KIND_ERROR:
            code = payload[0] if payload else 0
            return self._end("hangup" if code == ERROR_CALLER_HANGUP else "pbx_error")
        if kind == KIND_UUID:
            raise _protocol("duplicate UUID packet")
        self.counters.unknown_kinds += 1  # length-delimited, so safe to skip
        return []

    def _on_audio(self, kind: int, payload: bytes) -> list[DialectEvent]:
        if self._kind is not None and kind != self._kind:
            raise _protocol("audio rate changed mid-call")
        if len(payload) % 2:
            raise _invalid("audio packet is not whole samples")
        events = self._start(kind)
        if not payload:
            self.counters.empty_audio += 1
            return events
        self.counters.audio_frames += 1
        self.counters.audio_bytes += len(payload)
        pcm = payload if self._resampler is None else self._resampler.process(payload)
        return [*events, Audio(CHANNEL, pcm)]

    def _on_dtmf(self, payload: bytes) -> list[DialectEvent]:
        if len(payload) != 1:
            raise _invalid("DTMF packet must carry one byte")
        digit = chr(payload[0]).upper()
        if digit not in DTMF_DIGITS:
            raise _invalid("DTMF packet is not a DTMF digit")
        self.counters.dtmf += 1
        if self._started:
            return [Dtmf(CHANNEL, digit)]
        # The first audio packet fixes the rate and starts the call; hold digits until then.
        if len(self._early_dtmf) < _MAX_EARLY_DTMF:
            self._early_dtmf.append(Dtmf(CHANNEL, digit))
        else:
            self.counters.dtmf_dropped += 1
        return []

    def _end(self, reason: str) -> list[DialectEvent]:
        self._ended = True
        return [CallEnded(reason=reason)]

    def _start(self, kind: int) -> list[DialectEvent]:
        if self._started:
            return []
        assert self._uuid is not None
        wire_rate = AUDIO_RATES[kind]
        rate = wire_rate if wire_rate in _NATIVE_RATES else 16000
        self._started = True
        self._kind = kind
        self._rate = rate
        if rate != wire_rate:
            self._resampler = Resampler(wire_rate, rate)
        held, self._early_dtmf = self._early_dtmf, []
        metadata = {"uuid": self._uuid, "wire_sample_rate": str(wire_rate)}
        if self._remote:
            metadata["remote_address"] = self._remote
        return [
            CallStarted(
                dialect=self.name,
                platform_call_id=self._uuid,
                stream_id=self._uuid,
                channels=(ChannelInfo(CHANNEL, "in"),),
                media_format=MediaFormat("l16", wire_rate, 1),
                sample_rate=rate,
                metadata=metadata,
            ),
            *held,
        ]

    # ---- outbound ------------------------------------------------------------------------

    def send(self, request: OutboundRequest) -> None:
        """Audio and hang-up are all AudioSocket carries. Then send ``data_to_send()``."""
        if isinstance(request, SendMark | ClearAudio | SendEvent):
            raise UnsupportedRequest("AudioSocket carries only audio and hangup packets")
        if not self._started or self._ended:
            return
        if isinstance(request, PlayAudio):
            kind = self._kind if self._kind is not None else KIND_AUDIO
            wire_rate = AUDIO_RATES[kind]
            pcm = resample(request.pcm, request.sample_rate, wire_rate)
            step = wire_rate * FRAME_MS // 1000 * 2
            pcm += bytes(-len(pcm) % step)
            for i in range(0, len(pcm), step):
                self._outbox.append(encode_frame(kind, pcm[i : i + step]))
                self.counters.playback_frames += 1
        elif isinstance(request, Disconnect):
            self._hangup(request.reason or "call ended")

    def close(self, reason: str) -> None:
        """The bridge is ending the call: say hangup, then close the TCP connection."""
        self._hangup(reason)

    def _hangup(self, reason: str) -> None:
        if self._close is not None:
            return
        if not self._ended:
            self._outbox.append(encode_frame(KIND_HANGUP))
        self._ended = True
        self._close = (1000, reason[:120])
