"""Frozen dataclasses shared by every layer. Standard library only.

Inbound: what a dialect makes of the PBX's messages (CallStarted, Audio, Dtmf, Mark, MediaGap,
Paused, Resumed, CallEnded). Outbound: UtteranceEvent, what the sinks receive; its ``data``
is either a plain mapping or a typed payload (EventPayload, one class per event type in
ivr_bridge/events/types.py).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, ClassVar, Final

import orjson

EVENT_SCHEMA: Final = "ivr-bridge.event/1"


def _frozen_map(items: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(items or {}))


# ---- media as the PBX describes it ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaFormat:
    """Wire format of one track as negotiated with the PBX (before decoding)."""

    encoding: str  # "pcmu" | "pcma" | "l16"
    sample_rate: int
    channels: int = 1


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """One call channel: gets its own recognition session. ``track`` is the PBX's own name."""

    name: str  # "caller" | "agent" | ...
    track: str  # e.g. Twilio "inbound" / "outbound"


# ---- dialect events (PBX -> bridge) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallStarted:
    dialect: str
    platform_call_id: str  # the platform's own call identifier (Twilio callSid, ...)
    stream_id: str
    channels: tuple[ChannelInfo, ...]
    media_format: MediaFormat
    sample_rate: int  # rate of the PCM16 that Audio events carry
    metadata: Mapping[str, str] = field(default_factory=_frozen_map)
    custom_parameters: Mapping[str, str] = field(default_factory=_frozen_map)


@dataclass(slots=True)
class Audio:
    """Decoded audio for one channel: PCM16 little-endian mono at CallStarted.sample_rate.

    Not frozen, unlike the other events: one is built per 20 ms frame, and a frozen
    dataclass's ``__init__`` (``object.__setattr__`` per field) cost 1.5 us against 0.4 us.
    Treat it as read-only all the same.
    """

    channel: str
    pcm: bytes
    timestamp_ms: int | None = None  # the PBX's media timestamp, if it sends one
    # The same samples as they came off the wire in mu-law, when they did (and were not
    # resampled): the ledger keeps these bytes instead of encoding ``pcm`` again. A cache of
    # ``pcm``, so not part of equality.
    ulaw: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Dtmf:
    channel: str
    digit: str
    duration_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Mark:
    """The PBX echoed a back-channel mark: everything queued before it has played."""

    name: str


@dataclass(frozen=True, slots=True)
class MediaGap:
    """Audio the PBX reports as lost or skipped (AudioHook ``discarded``, a timestamp jump).

    call.py puts ``duration_ms`` of silence on the channel's timeline (every channel when
    ``channel`` is None) so call times and the ledger stay true.
    """

    channel: str | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Paused:
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class Resumed:
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class CallEnded:
    reason: str


DialectEvent = CallStarted | Audio | Dtmf | Mark | MediaGap | Paused | Resumed | CallEnded


# ---- recognition results (session-relative, as the recognizer reports them) ----------------


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class Hypothesis:
    text: str
    start_ms: int
    end_ms: int
    words: tuple[Word, ...] = ()
    confidence: float = 0.0


@dataclass(frozen=True, slots=True)
class Cursors:
    received_data_ms: int = 0
    partial_time_ms: int = 0
    final_time_ms: int = 0
    final_index: int = 0
    eou_time_ms: int = 0


@dataclass(frozen=True, slots=True)
class PartialResult:
    hypothesis: Hypothesis
    cursors: Cursors


@dataclass(frozen=True, slots=True)
class FinalResult:
    hypothesis: Hypothesis
    cursors: Cursors


@dataclass(frozen=True, slots=True)
class EndOfUtterance:
    time_ms: int
    cursors: Cursors


@dataclass(frozen=True, slots=True)
class FinalRefinement:
    final_index: int
    hypothesis: Hypothesis
    cursors: Cursors


@dataclass(frozen=True, slots=True)
class StatusReport:
    code: str  # "WORKING" | "WARNING" | "CLOSED"
    message: str
    cursors: Cursors


RecognitionUpdate = PartialResult | FinalResult | EndOfUtterance | FinalRefinement | StatusReport


# ---- what the dialog logic receives --------------------------------------------------------


class _UuidPool:
    """Random version-4 UUIDs as hex, made 256 at a time from one os.urandom call (one
    getrandom() and one hex conversion per 256 event ids, not per id). Emptied in a forked
    child, so worker processes never share ids."""

    _BATCH = 256

    def __init__(self) -> None:
        self._hex = ""
        self._pos = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._hex, self._pos = "", 0

    def _refill(self) -> None:
        raw = bytearray(os.urandom(16 * self._BATCH))
        # RFC 9562: version 4 in the high nibble of byte 6, variant 10 in the top of byte 8.
        raw[6::16] = bytes(b & 0x0F | 0x40 for b in raw[6::16])
        raw[8::16] = bytes(b & 0x3F | 0x80 for b in raw[8::16])
        self._hex, self._pos = raw.hex(), 0

    def take_hex(self) -> str:
        if self._pos >= len(self._hex):
            self._refill()
        pos = self._pos
        self._pos = pos + 32
        return self._hex[pos : pos + 32]


_POOL: Final = _UuidPool()


def new_event_id() -> str:
    """``evt_`` and a random (version 4) UUID's hex."""
    return "evt_" + _POOL.take_hex()


def _iso_utc_slow(epoch_seconds: float) -> str:
    return (
        datetime.fromtimestamp(epoch_seconds, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


@functools.lru_cache(maxsize=8)
def _second_text(whole: int) -> str:
    """A whole epoch second as date and time of day, formatted once per second."""
    return datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def iso_utc(epoch_seconds: float) -> str:
    """``2026-11-30T12:00:00.123Z``: exactly what datetime gives (microseconds rounded
    half to even, then truncated to ms), with the date and time of day formatted once per
    second rather than per event."""
    if not 0 <= epoch_seconds < 253402300799:  # before 1970 or after 9999: datetime's way
        return _iso_utc_slow(epoch_seconds)
    whole = int(epoch_seconds)
    micros = round((epoch_seconds - whole) * 1_000_000)
    if micros >= 1_000_000:
        whole += 1
        micros -= 1_000_000
    return f"{_second_text(whole)}.{micros // 1000:03d}Z"


_PLAIN: Final = frozenset({str, int, float, bool, type(None)})  # JSON as they are
_DATACLASS_FIELDS: dict[type, tuple[str, ...]] = {}  # field names per dataclass, found once


def _jsonable(value: Any) -> Any:
    """Nested payload values (dataclasses, mappings, tuples) as JSON-ready dicts and lists."""
    kind = type(value)
    if kind in _PLAIN:  # most values: no dataclass or ABC checks
        return value
    names = _DATACLASS_FIELDS.get(kind)
    if names is None and is_dataclass(value) and not isinstance(value, type):
        names = _DATACLASS_FIELDS[kind] = tuple(f.name for f in fields(value))
    if names is not None:
        return {name: _jsonable(getattr(value, name)) for name in names}
    if kind is tuple or kind is list:
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


class EventPayload(Mapping[str, Any]):
    """Base of the typed payloads: a frozen dataclass per event type (``TYPE``) that reads as
    the JSON ``data`` object it serializes to, so ``event.data["text"]`` works either way."""

    __slots__ = ()
    TYPE: ClassVar[str]

    def _names(self) -> tuple[str, ...]:
        cls = type(self)
        names = _DATACLASS_FIELDS.get(cls)
        if names is None:
            names = _DATACLASS_FIELDS[cls] = tuple(f.name for f in fields(self))  # type: ignore[arg-type]
        return names

    def to_data(self) -> dict[str, Any]:
        """The JSON ``data`` object."""
        return {name: _jsonable(getattr(self, name)) for name in self._names()}

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return _jsonable(getattr(self, key))

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


@dataclass(frozen=True, slots=True)
class UtteranceEvent:
    """One event for the dialog logic. ``to_json`` is the documented wire form (the one
    place events become JSON; ivr_bridge/schema/events.schema.json describes it)."""

    type: str
    call_id: str
    channel: str | None
    seq: int
    call_ms: int
    wall_time: float
    data: Mapping[str, Any]
    id: str = field(default_factory=new_event_id)

    def __post_init__(self) -> None:
        if isinstance(self.data, EventPayload) and self.type != self.data.TYPE:
            raise ValueError(f"payload {type(self.data).__name__} is not a {self.type!r} event")

    @classmethod
    def of(
        cls,
        payload: EventPayload,
        *,
        call_id: str,
        channel: str | None,
        seq: int,
        call_ms: int,
        wall_time: float,
    ) -> UtteranceEvent:
        """An event from a typed payload; its type is the payload's."""
        return cls(payload.TYPE, call_id, channel, seq, call_ms, wall_time, payload)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": EVENT_SCHEMA,
            "id": self.id,
            "type": self.type,
            "call_id": self.call_id,
            "channel": self.channel,
            "seq": self.seq,
            "call_ms": self.call_ms,
            "time": iso_utc(self.wall_time),
            "data": self.data.to_data() if isinstance(self.data, EventPayload) else dict(self.data),
        }


def event_json(event: UtteranceEvent) -> bytes:
    """An event as compact UTF-8 JSON, as every sink sends it (orjson: several times faster
    than the stdlib, and sinks serialize every event of every call)."""
    payload = event.to_json()
    try:
        return orjson.dumps(payload)
    except TypeError:
        # Something orjson refuses (a lone surrogate in a string): the stdlib escapes it.
        return json.dumps(payload).encode()
