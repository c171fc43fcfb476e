"""Engine lanes: round-robin turns, least-loaded pinning, worker processes and their loss."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import Any

import pytest

import ivr_bridge.local.tone_engine  # noqa: F401  (registers "tones")
from ivr_bridge.local.engine import EngineOptions, get_engine
from ivr_bridge.local.rules import AudioItem, EndItem, SilenceItem
from ivr_bridge.local.session import WorkQueue
from ivr_bridge.local.tones import synthesize_script
from ivr_bridge.local.workers import (
    EngineLane,
    EnginePool,
    EngineReply,
    InProcessBackend,
    ProcessBackend,
    WorkerLost,
)

OPTIONS = EngineOptions(sample_rate=8000)
AUDIO = synthesize_script([["hello", "agent"], ["yes", "no"]], pause_ms=1000)


class RecordingBackend:
    """Records the order of calls; the first call waits until the test lets it go."""

    def __init__(self) -> None:
        self.order: list[tuple[int, Any]] = []
        self.release = threading.Event()

    def start(self) -> None:
        pass

    def open(self, sid: int, options: EngineOptions) -> None:
        pass

    def call(self, sid: int, op: str, arg: Any) -> EngineReply:
        if not self.order:
            self.release.wait(10)
        self.order.append((sid, arg))
        return EngineReply([], 0, 0)

    def close(self, sid: int) -> None:
        self.order.append((sid, "closed"))

    def stop(self) -> None:
        pass


async def test_a_backlog_gets_one_turn_per_round() -> None:
    backend = RecordingBackend()
    lane = EngineLane(0, backend)
    await lane.start()

    def call(sid: int, n: int) -> Any:
        return lane.run(sid, lambda b: b.call(sid, "feed", n))

    first = asyncio.create_task(call(0, 0))  # holds the lane while the others queue up
    await asyncio.sleep(0)
    flood = [asyncio.create_task(call(1, n)) for n in range(5)]
    await asyncio.sleep(0)
    others = [asyncio.create_task(call(2, 0)), asyncio.create_task(call(3, 0))]
    await asyncio.sleep(0)
    backend.release.set()
    await asyncio.gather(first, *flood, *others)
    await lane.stop()
    # Sessions 2 and 3 arrived after five calls of session 1 and still ran after its first.
    assert backend.order == [(0, 0), (1, 0), (2, 0), (3, 0), (1, 1), (1, 2), (1, 3), (1, 4)]
    assert lane.calls == 8


async def test_close_runs_after_the_sessions_queued_calls() -> None:
    backend = RecordingBackend()
    backend.release.set()
    pool_lane = EngineLane(0, backend)
    await pool_lane.start()
    pool_lane.sessions = 1
    from ivr_bridge.local.workers import PinnedSession

    session = PinnedSession(pool_lane, 7)
    pending = asyncio.create_task(session.call("feed", "x"))
    await asyncio.sleep(0)
    session.release()
    session.release()  # idempotent
    await pending
    for _ in range(10):
        if (7, "closed") in backend.order:
            break
        await asyncio.sleep(0.01)
    await pool_lane.stop()
    assert backend.order == [(7, "x"), (7, "closed")]
    assert pool_lane.sessions == 0


def test_sessions_go_to_the_least_loaded_worker() -> None:
    pool = EnginePool("pocketsphinx", workers=3)  # not started: no process is spawned
    assert pool.processes and len(pool.lanes) == 3
    sessions = [pool.assign() for _ in range(4)]
    assert [s.lane.index for s in sessions] == [0, 1, 2, 0]
    assert pool.load() == [2, 1, 1]
    sessions[1].release()
    assert pool.assign().lane.index == 1
    assert pool.load() == [2, 1, 1]


def test_cheap_engines_stay_in_process() -> None:
    pool = EnginePool("tones", workers=4)
    assert not pool.processes
    assert len(pool.lanes) == 1
    assert isinstance(pool.lanes[0].backend, InProcessBackend)
    assert not EnginePool("pocketsphinx", workers=0).processes
    with pytest.raises(ValueError):
        EnginePool("tones", workers=-1)


def decode(backend: Any, sid: int) -> list[str]:
    backend.open(sid, OPTIONS)
    texts: list[str] = []
    for off in range(0, len(AUDIO), 1600):
        reply = backend.call(sid, "feed", AUDIO[off : off + 1600])
        texts += [e.text for e in reply.events if type(e).__name__ == "EngineFinal"]
    reply = backend.call(sid, "finish", None)
    texts += [e.text for e in reply.events if type(e).__name__ == "EngineFinal"]
    backend.close(sid)
    return texts


async def test_a_worker_process_decodes_like_this_process() -> None:
    local = decode(InProcessBackend(get_engine("tones")), 1)
    assert local == ["hello agent", "yes no"]
    worker = ProcessBackend("tones", 0)
    await asyncio.to_thread(worker.start)
    try:
        assert await asyncio.to_thread(decode, worker, 1) == local
        with pytest.raises(RuntimeError, match="unknown engine operation"):
            worker.open(2, OPTIONS)
            worker.call(2, "sing", None)
    finally:
        await asyncio.to_thread(worker.stop)
    assert worker.pid is None


async def test_a_lost_worker_fails_its_sessions_and_is_replaced() -> None:
    worker = ProcessBackend("tones", 0)
    await asyncio.to_thread(worker.start)
    try:
        worker.open(1, OPTIONS)
        old = worker.pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        with pytest.raises(WorkerLost):
            await asyncio.to_thread(worker.call, 1, "feed", AUDIO[:1600])
        assert worker.restarts == 1 and worker.pid not in (None, old)
        with pytest.raises(WorkerLost):  # the session died with its worker
            worker.call(1, "feed", AUDIO[:1600])
        worker.close(1)
        assert await asyncio.to_thread(decode, worker, 2) == ["hello agent", "yes no"]
    finally:
        await asyncio.to_thread(worker.stop)


async def test_work_queue_is_bounded_by_items_and_bytes() -> None:
    queue = WorkQueue(max_items=3, max_bytes=1000)
    await queue.put(AudioItem(bytes(800)))
    assert not queue.has_room(AudioItem(bytes(400)))  # bytes
    assert queue.has_room(SilenceItem(100))
    await queue.put(SilenceItem(100))
    await queue.put(SilenceItem(100))
    assert not queue.has_room(EndItem())  # items
    blocked = asyncio.create_task(queue.put(EndItem()))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    assert await queue.get() == AudioItem(bytes(800))
    await asyncio.wait_for(blocked, 1)
    assert len(queue) == 3
    empty = WorkQueue(max_items=3, max_bytes=1000)
    assert empty.has_room(AudioItem(bytes(5000)))  # one oversized item still fits
