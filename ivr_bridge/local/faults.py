"""Fault injection for the embedded recognizer, so recovery is tested against a real server.

Two kinds. A ``FaultPlan`` shapes one session (from the server config, or per session from
request metadata when the server allows it): end it with a status after N ms of audio, stop
answering after N ms, or hold every response back. ``FaultInjector.outage(seconds)`` is
server-wide: every live session ends with UNAVAILABLE and new ones are refused until the
outage is over, as when the network to SpeechKit goes down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ivr_bridge.clock import Clock

METADATA_PREFIX = "x-fault-"
STATUSES = frozenset(
    {
        "UNAVAILABLE",
        "INTERNAL",
        "DEADLINE_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "OUT_OF_RANGE",
        "INVALID_ARGUMENT",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
    }
)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    end_after_ms: int | None = None  # end the session once it has this much audio
    end_status: str = "UNAVAILABLE"
    stall_after_ms: int | None = None  # then stop answering (the stream stays open)
    delay_ms: int = 0  # hold each response back this long
    sessions: frozenset[int] = frozenset()  # server-wide session numbers (1, 2, ...); empty: all

    def __post_init__(self) -> None:
        if self.end_status not in STATUSES:
            raise ValueError(f"unsupported fault status {self.end_status!r}")
        for value in (self.end_after_ms, self.stall_after_ms, self.delay_ms):
            if value is not None and value < 0:
                raise ValueError("fault times must not be negative")

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> FaultPlan | None:
        """``x-fault-end-after-ms``, ``x-fault-status``, ``x-fault-stall-after-ms``,
        ``x-fault-delay-ms``. None when no fault header is present."""
        items = {
            k[len(METADATA_PREFIX) :]: v
            for k, v in metadata.items()
            if k.startswith(METADATA_PREFIX)
        }
        if not items:
            return None

        def number(name: str) -> int | None:
            raw = items.get(name)
            return None if raw is None else int(raw)

        return cls(
            end_after_ms=number("end-after-ms"),
            end_status=items.get("status", "UNAVAILABLE").upper(),
            stall_after_ms=number("stall-after-ms"),
            delay_ms=number("delay-ms") or 0,
        )

    def applies_to(self, session_number: int) -> bool:
        return not self.sessions or session_number in self.sessions

    def ends_at(self, audio_ms: int) -> bool:
        return self.end_after_ms is not None and audio_ms >= self.end_after_ms

    def stalls_at(self, audio_ms: int) -> bool:
        return self.stall_after_ms is not None and audio_ms >= self.stall_after_ms


class FaultInjector:
    """Server-wide outages on the server's clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._refuse_until = 0.0
        self.outages = 0
        self.refused = 0

    def outage(self, seconds: float) -> None:
        """Refuse new sessions for ``seconds`` (the server also ends the live ones)."""
        self._refuse_until = max(self._refuse_until, self._clock.now() + seconds)
        self.outages += 1

    def refusing(self) -> bool:
        if self._clock.now() < self._refuse_until:
            self.refused += 1
            return True
        return False
