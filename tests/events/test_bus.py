"""The bus's per-call lanes: order within a call, concurrency across calls, fairness under a
flood, dead-lettering, and a shutdown that drains or dead-letters every queued event."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import structlog

from ivr_bridge.clock import ScaledClock
from ivr_bridge.errors import ConfigError, SinkError
from ivr_bridge.events.bus import EventBus, SinkStats
from ivr_bridge.events.deadletter import DeadLetterFile
from ivr_bridge.model import UtteranceEvent

from .factories import make


def ev(call: str, seq: int, kind: str = "mark") -> UtteranceEvent:
    return make(call, seq, kind)


class Recording:
    """Records deliveries; ``gate`` holds each delivery until the test releases it."""

    def __init__(self, name: str = "rec", concurrency: int = 1) -> None:
        self.name = name
        self.concurrency = concurrency
        self.got: list[tuple[str, int]] = []
        self.active: dict[str, int] = {}
        self.max_active = 0
        self.overlap_within_call = False
        self.gate: asyncio.Event | None = None
        self.fail_calls: set[str] = set()
        self.closed = False

    async def deliver(self, e: UtteranceEvent) -> None:
        if self.active.get(e.call_id):
            self.overlap_within_call = True
        self.active[e.call_id] = 1
        self.max_active = max(self.max_active, sum(self.active.values()))
        try:
            if self.gate is not None:
                await self.gate.wait()
            else:
                await asyncio.sleep(0)
            if e.call_id in self.fail_calls:
                raise SinkError("refused by test")
            self.got.append((e.call_id, e.seq))
        finally:
            self.active[e.call_id] = 0

    async def aclose(self) -> None:
        self.closed = True


def accounted(stats: SinkStats) -> int:
    return stats.delivered + stats.dropped_queue_full + stats.dead_lettered + stats.lost


async def wait_until(cond: object, steps: int = 2000) -> None:
    for _ in range(steps):
        if callable(cond) and cond():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


async def test_calls_deliver_concurrently_each_in_order() -> None:
    sink = Recording(concurrency=4)
    bus = EventBus(queue_size=500)
    bus.add_sink(sink)
    for seq in range(1, 21):
        for call in ("a", "b", "c", "d", "e", "f"):
            bus.publish(ev(call, seq))
    await bus.aclose(timeout=5)
    for call in "abcdef":
        assert [s for c, s in sink.got if c == call] == list(range(1, 21))
    assert not sink.overlap_within_call
    assert sink.max_active == 4
    assert sink.closed


@pytest.mark.parametrize(("queue_size", "per_call"), [(200, 60), (180, 180)])
async def test_flooding_call_loses_only_its_own_events(queue_size: int, per_call: int) -> None:
    # (200, 60): the flood hits its own quota; (180, 180): it fills the whole queue and the
    # quiet calls' events push its newest ones out.
    sink = Recording()
    sink.gate = asyncio.Event()
    bus = EventBus(queue_size=queue_size, per_call_queue_size=per_call)
    bus.add_sink(sink)
    for seq in range(1, 2001):
        bus.publish(ev("flood", seq))
        if seq % 40 == 0:
            for quiet in ("q1", "q2"):
                bus.publish(ev(quiet, seq // 40, kind="final"))
    stats = bus.stats()["rec"]
    assert stats.calls_over_quota == 1
    sink.gate.set()
    await bus.aclose(timeout=5)
    for quiet in ("q1", "q2"):
        assert [s for c, s in sink.got if c == quiet] == list(range(1, 51))
    flood = [s for c, s in sink.got if c == "flood"]
    assert flood == sorted(flood) and len(flood) <= 80
    assert stats.dropped_queue_full == 2000 - len(flood)
    assert accounted(stats) == bus.published


async def test_failures_go_to_the_dead_letter_file(tmp_path: Path) -> None:
    dead = DeadLetterFile(tmp_path / "dl" / "dead.jsonl")
    sink = Recording()
    sink.fail_calls = {"bad"}
    bus = EventBus(dead_letter=dead)
    bus.add_sink(sink)
    bus.publish(ev("bad", 1))
    bus.publish(ev("good", 1))
    await bus.aclose()
    records = [json.loads(x) for x in (tmp_path / "dl" / "dead.jsonl").read_text().splitlines()]
    assert [(r["sink"], r["reason"], r["event"]["call_id"]) for r in records] == [
        ("rec", "refused by test", "bad")
    ]
    stats = bus.stats() if bus._workers else None
    assert stats in (None, {})
    assert sink.got == [("good", 1)]


async def test_shutdown_dead_letters_what_the_drain_period_cannot_deliver(
    tmp_path: Path,
) -> None:
    clock = ScaledClock(100.0)
    dead = DeadLetterFile(tmp_path / "dead.jsonl")
    stuck = Recording("stuck", concurrency=2)
    stuck.gate = asyncio.Event()  # never released: an endpoint that never answers
    fine = Recording("fine")
    bus = EventBus(clock=clock, dead_letter=dead)
    bus.add_sink(stuck)
    bus.add_sink(fine)
    for seq in range(1, 11):
        bus.publish(ev("a", seq))
        bus.publish(ev("b", seq))
    stats = bus.stats()
    await bus.aclose(timeout=5.0)  # 50 ms of real time
    lines = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert sorted((r["event"]["call_id"], r["event"]["seq"]) for r in lines) == sorted(
        (c, s) for c in "ab" for s in range(1, 11)
    )
    assert {r["reason"] for r in lines} == {"shutdown: drain period over"}
    assert stats["stuck"].dead_lettered == 20 and stats["stuck"].lost == 0
    assert stats["fine"].delivered == 20
    assert all(accounted(s) == 20 for s in stats.values())


async def test_without_a_dead_letter_file_losses_are_counted() -> None:
    sink = Recording()
    sink.fail_calls = {"a"}
    bus = EventBus()
    bus.add_sink(sink)
    stats = bus.stats()["rec"]
    bus.publish(ev("a", 1))
    await bus.aclose()
    bus.publish(ev("a", 2))  # after close: no workers, nothing to count
    assert (stats.failed, stats.lost, stats.dead_lettered) == (1, 1, 0)


async def test_publish_during_shutdown_is_dead_lettered(tmp_path: Path) -> None:
    dead = DeadLetterFile(tmp_path / "dead.jsonl")
    sink = Recording()
    sink.gate = asyncio.Event()
    bus = EventBus(dead_letter=dead, clock=ScaledClock(1000.0))
    bus.add_sink(sink)
    stats = bus.stats()["rec"]
    closing = asyncio.create_task(bus.aclose(timeout=1.0))
    await asyncio.sleep(0)
    bus.publish(ev("late", 1))
    await closing
    assert stats.dead_lettered == 1
    assert '"call_id": "late"' in (tmp_path / "dead.jsonl").read_text()


async def test_bus_reopen_and_health_reach_the_sinks() -> None:
    class Reopenable(Recording):
        reopened = 0

        def reopen(self) -> None:
            self.reopened += 1

        def health(self) -> dict[str, object]:
            return {"state": "ok"}

    sink = Reopenable()
    bus = EventBus()
    bus.add_sink(sink)
    bus.add_sink(Recording("plain"))
    bus.reopen()
    assert sink.reopened == 1
    assert bus.health() == {"rec": {"queued": 0, "state": "ok"}, "plain": {"queued": 0}}
    await bus.aclose()


def test_unwritable_dead_letter_file_names_the_key(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as err:
        DeadLetterFile(blocker / "dead.jsonl")
    assert err.value.key == "events.dead_letter_file" and str(blocker) in str(err.value)


def test_dead_letter_write_after_close_is_counted(tmp_path: Path) -> None:
    dead = DeadLetterFile(tmp_path / "dead.jsonl")
    dead.close()
    assert not dead.write(ev("a", 1), sink="s", reason="r", at=0.0)
    assert dead.failed == 1


class ContextRecording(Recording):
    """Also records the structlog context each delivery runs in."""

    def __init__(self) -> None:
        super().__init__("ctx", concurrency=4)
        self.bound: list[tuple[str, object]] = []

    async def deliver(self, e: UtteranceEvent) -> None:
        self.bound.append((e.call_id, structlog.contextvars.get_contextvars().get("call_id")))
        await super().deliver(e)


async def test_sink_work_is_logged_with_the_call_id() -> None:
    bus = EventBus(100)
    sink = ContextRecording()
    bus.add_sink(sink)
    for call in ("call_a", "call_b"):
        for seq in range(1, 4):
            bus.publish(ev(call, seq))
    await wait_until(lambda: len(sink.got) == 6)
    await bus.aclose(1.0)
    assert sink.bound and all(call == bound for call, bound in sink.bound)


class SyncRecording:
    """A sink that never waits: the bus calls its ``deliver_now`` in the worker itself."""

    name = "sync"

    def __init__(self) -> None:
        self.got: list[tuple[str, int]] = []
        self.bound: list[tuple[str, object]] = []
        self.fail: dict[str, Exception] = {}
        self.closed = False

    def deliver_now(self, e: UtteranceEvent) -> None:
        self.bound.append((e.call_id, structlog.contextvars.get_contextvars().get("call_id")))
        if e.call_id in self.fail:
            raise self.fail[e.call_id]
        self.got.append((e.call_id, e.seq))

    async def deliver(self, e: UtteranceEvent) -> None:
        raise AssertionError("the bus must use deliver_now")

    async def aclose(self) -> None:
        self.closed = True


async def test_a_synchronous_sink_gets_every_call_in_order_round_robin() -> None:
    sink = SyncRecording()
    bus = EventBus(queue_size=2000, per_call_queue_size=500)
    bus.add_sink(sink)
    for seq in range(1, 201):  # a backlog several inline batches long
        for call in ("a", "b", "c"):
            bus.publish(ev(call, seq))
    await bus.aclose(timeout=5)
    for call in "abc":
        assert [s for c, s in sink.got if c == call] == list(range(1, 201))
    assert [c for c, _ in sink.got[:6]] == ["a", "b", "c", "a", "b", "c"]  # taken in turn
    assert all(call == bound for call, bound in sink.bound)
    assert structlog.contextvars.get_contextvars().get("call_id") is None
    assert sink.closed


async def test_a_synchronous_sink_that_fails_loses_only_that_event(tmp_path: Path) -> None:
    dead = DeadLetterFile(tmp_path / "dead.jsonl")
    sink = SyncRecording()
    sink.fail = {"refused": SinkError("disk full"), "buggy": ValueError("bug")}
    bus = EventBus(dead_letter=dead)
    bus.add_sink(sink)
    worker = bus._workers[0]
    with structlog.testing.capture_logs() as logs:
        for call in ("refused", "buggy", "fine"):
            bus.publish(ev(call, 1))
        await wait_until(lambda: worker.stats.delivered + worker.stats.failed == 3)
    assert sink.got == [("fine", 1)]
    assert worker.stats.dead_lettered == 2
    records = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [(r["event"]["call_id"], r["reason"]) for r in records] == [
        ("refused", "disk full"),
        ("buggy", "sink error: ValueError"),
    ]
    assert [e["event"] for e in logs].count("sink_crashed") == 1  # the bug, once
    assert all(call == bound for call, bound in sink.bound)  # its log line names the call
    await bus.aclose(1.0)
