"""The shared ticker: one task per loop, clock and interval; every subscriber each tick."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest
import structlog

from ivr_bridge.ticker import Ticker, ticker

TAG: contextvars.ContextVar[str] = contextvars.ContextVar("TAG", default="none")


class GatedClock:
    """Clock time moves only when the test lets one sleep finish (``tick``)."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        gate = asyncio.get_running_loop().create_future()
        self.sleeps.append((seconds, gate))
        await gate

    async def wait_for(self, awaitable: Any, timeout: float | None) -> Any:
        return await awaitable

    async def tick(self) -> None:
        """Let the pending sleep end, and the ticker run its subscribers."""
        for _ in range(5):  # the ticker's task reaches its sleep
            if self.sleeps:
                break
            await asyncio.sleep(0)
        seconds, gate = self.sleeps.pop(0)
        self.t += seconds
        gate.set_result(None)
        for _ in range(5):
            await asyncio.sleep(0)


async def test_every_subscriber_each_interval_on_one_sleep() -> None:
    clock = GatedClock()
    shared = ticker(clock, 0.25)
    calls: list[str] = []
    stop_a = shared.subscribe(lambda: calls.append("a"))
    stop_b = shared.subscribe(lambda: calls.append("b"))
    await clock.tick()
    await clock.tick()
    assert calls == ["a", "b", "a", "b"]
    assert clock.t == 0.5  # two sleeps of the interval for both subscribers, not four
    stop_a()
    await clock.tick()
    assert calls[4:] == ["b"]
    stop_b()
    await clock.tick()  # the last sleep ends, nobody is left: the task ends
    assert calls[5:] == []
    assert clock.sleeps == []
    # A new subscription starts it again.
    shared.subscribe(lambda: calls.append("c"))
    await clock.tick()
    assert calls[5:] == ["c"]


async def test_shared_per_clock_and_interval() -> None:
    one, other = GatedClock(), GatedClock()
    assert ticker(one, 0.25) is ticker(one, 0.25)
    assert ticker(one, 0.25) is not ticker(one, 0.5)
    assert ticker(one, 0.25) is not ticker(other, 0.25)


def test_shared_per_loop() -> None:
    clock = GatedClock()

    async def get() -> Ticker:
        return ticker(clock, 0.25)

    first = asyncio.run(get())
    second = asyncio.run(get())
    assert first is not second  # a ticker's task belongs to one loop


async def test_a_failing_subscriber_is_logged_and_the_others_still_run() -> None:
    clock = GatedClock()
    shared = Ticker(clock, 0.25)
    calls: list[str] = []

    def broken() -> None:
        raise RuntimeError("bug in one channel")

    shared.subscribe(broken)
    shared.subscribe(lambda: calls.append("ok"))
    with structlog.testing.capture_logs() as logs:
        await clock.tick()
        await clock.tick()
    assert calls == ["ok", "ok"]
    assert [entry["event"] for entry in logs] == ["tick_failed", "tick_failed"]


async def test_the_task_does_not_carry_the_first_subscribers_context() -> None:
    clock = GatedClock()
    shared = Ticker(clock, 0.25)
    seen: list[str] = []
    TAG.set("call_1")
    shared.subscribe(lambda: seen.append(TAG.get()))
    await clock.tick()
    assert seen == ["none"]


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Ticker(GatedClock(), 0)
