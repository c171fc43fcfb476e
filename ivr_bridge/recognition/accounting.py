"""Per-channel accounting as one typed record, and the call's totals derived from it.

``ChannelAccounting`` is the single definition of every counter a channel reports: its field
names are the keys of ``call_ended.data.channels.<name>``, the fields marked ``per_call`` are
also summed at the top of ``call_ended``, and the fields with help text are the /metrics
counters (``ivr_bridge_<name>_total``). Adding a counter here adds it everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


def _counter(help_text: str = "", *, per_call: bool = False) -> Any:
    """A summable counter; ``help_text`` makes it a metric, ``per_call`` a call_ended total."""
    return field(default=0, metadata={"help": help_text, "per_call": per_call})


@dataclass(frozen=True, slots=True)
class ChannelAccounting:
    """One channel's counters when the call ends (or now, for a live channel)."""

    audio_ms_received: int = _counter("audio received from the PBX, ms", per_call=True)
    audio_ms_sent: int = _counter("audio sent to recognition the first time, ms", per_call=True)
    audio_ms_replayed: int = _counter("audio sent again after a seam, ms", per_call=True)
    audio_ms_dropped: int = _counter("audio never sent to recognition, ms", per_call=True)
    audio_ms_pending: int = _counter()
    samples_received: int = _counter()
    samples_sent_first: int = _counter()
    samples_replayed: int = _counter()
    samples_dropped: int = _counter()
    keepalive_ms: int = _counter("silence inserted while the PBX sent nothing, ms", per_call=True)
    sessions_opened: int = _counter("recognition sessions opened", per_call=True)
    rotations: int = _counter("sessions rotated before SpeechKit's limits")
    forced_rotations: int = _counter("rotations forced in mid-utterance")
    reconnects: int = _counter("sessions reopened after a failure")
    stalls: int = _counter("sessions that stopped answering")
    errors: int = _counter("recognition errors", per_call=True)
    finals: int = _counter("final results emitted")
    seam_words_dropped: int = _counter("duplicate words dropped at session seams")
    last_error: str = ""
    recognition_failed: bool = False

    def to_json(self) -> dict[str, Any]:
        """The ``call_ended.data.channels.<name>`` object."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


COUNTERS: tuple[str, ...] = tuple(f.name for f in fields(ChannelAccounting) if "help" in f.metadata)
PER_CALL: tuple[str, ...] = tuple(
    f.name for f in fields(ChannelAccounting) if f.metadata.get("per_call")
)
METRICS: tuple[tuple[str, str], ...] = tuple(
    (f.name, f.metadata["help"]) for f in fields(ChannelAccounting) if f.metadata.get("help")
)
"""(counter name, help text) for every counter /metrics exports."""


def sum_channels(channels: Mapping[str, ChannelAccounting]) -> ChannelAccounting:
    """The call's totals: every counter summed; failed when any channel failed."""
    sums = {name: sum(getattr(acc, name) for acc in channels.values()) for name in COUNTERS}
    failed = any(acc.recognition_failed for acc in channels.values())
    return ChannelAccounting(**sums, recognition_failed=failed)


@dataclass(frozen=True, slots=True)
class CallAccounting:
    """Every channel's accounting for one call, and their sum."""

    channels: Mapping[str, ChannelAccounting]

    @property
    def total(self) -> ChannelAccounting:
        return sum_channels(self.channels)

    @property
    def failed_channels(self) -> int:
        return sum(1 for acc in self.channels.values() if acc.recognition_failed)

    def to_json(self) -> dict[str, Any]:
        """The accounting part of ``call_ended.data``: per-call totals, then ``channels``."""
        total = self.total
        out: dict[str, Any] = {name: getattr(total, name) for name in PER_CALL}
        out["channels"] = {name: acc.to_json() for name, acc in self.channels.items()}
        return out
