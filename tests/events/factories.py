"""Valid events of any type for the sink tests (every published event is schema-checked)."""

from __future__ import annotations

from ivr_bridge.events.types import (
    CallEndedSummary,
    CallStartedInfo,
    DtmfDigit,
    FinalText,
    MarkPlayed,
    Partial,
    TimedWord,
)
from ivr_bridge.model import ChannelInfo, EventPayload, MediaFormat, UtteranceEvent


def payload(kind: str, seq: int, text: str = "hello") -> EventPayload:
    if kind == "final":
        return FinalText(text, 100, 900, (TimedWord(text, 100, 900),), max(1, seq), 0)
    if kind == "partial":
        return Partial(text, 100, 500)
    if kind == "dtmf":
        return DtmfDigit("5", None)
    if kind == "call_started":
        return CallStartedInfo(
            "twilio",
            "CA1",
            "MZ1",
            (ChannelInfo("caller", "inbound"),),
            MediaFormat("pcmu", 8000),
            8000,
        )
    if kind == "call_ended":
        return CallEndedSummary("hangup", 1000, 10, 0, 1000, 1000, 0, 0, 1, 0, 0, {})
    return MarkPlayed(f"m{seq}")


def make(
    call: str, seq: int, kind: str = "mark", *, channel: str | None = None, text: str = "hello"
) -> UtteranceEvent:
    return UtteranceEvent.of(
        payload(kind, seq, text),
        call_id=call,
        channel=channel,
        seq=seq,
        call_ms=10 * seq,
        wall_time=1_700_000_000.25,
    )
