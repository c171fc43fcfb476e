"""Injected time. Logic layers take ``now`` as an argument; the async runtime asks a Clock.

Every wait in the bridge (drain, stall, media inactivity, webhook retry, credential refresh,
keepalive) goes through a Clock: ``sleep`` for a pause and ``wait_for`` for a deadline on
something else. ScaledClock runs time faster than real (the bridge, the simulator and the
embedded recognizer can share one), so a 20-minute call or a 60-second hold tests in seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

_T = TypeVar("_T")


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch (for timestamps shown to people)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Pause for ``seconds`` of this clock's time."""
        ...

    async def wait_for(self, awaitable: Awaitable[_T], timeout: float | None) -> _T:
        """Await ``awaitable`` for at most ``timeout`` seconds of this clock's time.

        Raises TimeoutError (and cancels the awaitable) when the time runs out; ``None`` waits
        without a limit.
        """
        ...


class SystemClock:
    """Real time: monotonic for deadlines, the epoch for timestamps."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait_for(self, awaitable: Awaitable[_T], timeout: float | None) -> _T:
        return await asyncio.wait_for(awaitable, None if timeout is None else max(0.0, timeout))


class ScaledClock:
    """Time that passes ``speed`` times faster than real time."""

    def __init__(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._mono0 = time.monotonic()
        self._wall0 = time.time()

    def now(self) -> float:
        return self._mono0 + (time.monotonic() - self._mono0) * self.speed

    def wall(self) -> float:
        return self._wall0 + (time.monotonic() - self._mono0) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    async def wait_for(self, awaitable: Awaitable[_T], timeout: float | None) -> _T:
        real = None if timeout is None else max(0.0, timeout) / self.speed
        return await asyncio.wait_for(awaitable, real)


SYSTEM_CLOCK = SystemClock()
