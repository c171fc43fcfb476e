"""Polling an operation within SpeechKit's status-check quotas.

Two rules combine: each operation backs off (``backoff.backoff_delay``: first check soon,
then further apart, capped), and all operations of one API share a pacer that spaces status
checks to the documented quota (v3: 5 per second; v2: 2,500 per hour), so polling several
files at once never exceeds it.
"""

from __future__ import annotations

import asyncio

from ivr_bridge.backoff import backoff_delay
from ivr_bridge.clock import Clock

V3_CHECKS_PER_S = 5.0
V2_CHECKS_PER_S = 2500 / 3600


class Pacer:
    """Spaces calls at least ``1 / per_second`` apart across every caller (on ``clock``)."""

    def __init__(self, per_second: float, clock: Clock) -> None:
        self._interval = 1.0 / per_second
        self._clock = clock
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = self._clock.now()
            while now < self._next:  # a loop: asyncio may fire a timer up to 1 ms early
                await self._clock.sleep(self._next - now)
                now = self._clock.now()
            self._next = now + self._interval


def poll_delay(attempt: int, initial_s: float, max_s: float) -> float:
    """Wait before status check ``attempt`` (0-based) of one operation."""
    return backoff_delay(attempt, initial_s=initial_s, max_s=max_s, multiplier=1.5, jitter=0.1)
