"""Fan-out of utterance events to sinks, each with its own bounded, per-call fair queue.

``publish`` never blocks and never raises. Each sink has one worker that keeps a lane (a
FIFO) per call: a call's events go out in order, one at a time, while up to the sink's
``concurrency`` calls are delivered at once, taken round-robin so a busy call cannot starve
the others. Each lane has its own quota, and when the sink's whole queue is full the longest
lane gives up its newest event, so one call's flood can only cost that call's events.

Nothing is lost silently: an event the sink could not deliver (SinkError after its retries),
and every event still queued when shutdown's drain period ends, is written to the dead-letter
file when one is configured; every loss is counted in the sink's stats, which /metrics shows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.errors import SinkError
from ivr_bridge.events.deadletter import DeadLetterFile
from ivr_bridge.model import UtteranceEvent

log = structlog.get_logger(__name__)

_INLINE_BATCH = 64  # synchronous deliveries between yields to the event loop


class Sink(Protocol):
    """What the bus delivers to. Optional extras, found with getattr: ``concurrency`` (how
    many calls may be in delivery at once, default 1), ``reopen()`` (SIGHUP),
    ``health()`` (a short dict for /healthz) and ``deliver_now(event)``: the same delivery
    done synchronously, for a sink that never waits (a file), which the worker then calls
    in its own loop instead of a task per event."""

    name: str

    async def deliver(self, event: UtteranceEvent) -> None:
        """Deliver one event; raise SinkError when it could not be delivered."""
        ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class SinkStats:
    """Counters per sink. Every event published is, in the end, exactly one of: delivered,
    dropped_queue_full (never queued), dead_lettered or lost (failed and not on disk)."""

    delivered: int = 0
    failed: int = 0  # not delivered: dead_lettered + lost
    dropped_queue_full: int = 0  # refused at the queue: call quota, full queue, bus closed
    dead_lettered: int = 0
    lost: int = 0
    calls_over_quota: int = 0  # calls that lost at least one event to their own quota
    queued: int = 0  # gauge: events waiting now


@dataclass(slots=True)
class _Lane:
    events: deque[UtteranceEvent] = field(default_factory=deque)
    dropped: int = 0
    busy: bool = False  # one of this call's events is being delivered


class _Worker:
    def __init__(
        self,
        sink: Sink,
        *,
        queue_size: int,
        per_call_size: int,
        clock: Clock,
        dead_letter: DeadLetterFile | None,
    ) -> None:
        self.sink = sink
        self.stats = SinkStats()
        self._queue_size = queue_size
        self._per_call = max(1, min(per_call_size, queue_size))
        self._concurrency = max(1, int(getattr(sink, "concurrency", 1)))
        self._deliver_now: Any = getattr(sink, "deliver_now", None)
        self._clock = clock
        self._dead_letter = dead_letter
        self._lanes: dict[str, _Lane] = {}
        self._ready: deque[str] = deque()  # calls with queued events and none in delivery
        self._inflight: set[asyncio.Task[None]] = set()
        self._active = 0  # deliveries running (the task set empties a step later)
        self._wake = asyncio.Event()
        self._closing = False
        self._stopped = False
        self._closed = False
        self.task = asyncio.create_task(self._run(), name=f"sink-{sink.name}")

    # ---- the publishing side (never waits) ---------------------------------------------

    def offer(self, event: UtteranceEvent) -> None:
        if self._stopped:
            # Published after this worker finished draining: straight to the dead-letter file.
            self._lose(event, "published after shutdown")
            return
        lane = self._lanes.get(event.call_id)
        if lane is None:
            lane = self._lanes[event.call_id] = _Lane()
        if len(lane.events) >= self._per_call:
            self._drop(event.call_id, lane)
            return
        if self.stats.queued >= self._queue_size and not self._evict_for(lane):
            self._drop(event.call_id, lane)
            return
        lane.events.append(event)
        self.stats.queued += 1
        if not lane.busy and len(lane.events) == 1:
            self._ready.append(event.call_id)
            self._wake.set()

    def _evict_for(self, lane: _Lane) -> bool:
        """Full queue: the longest lane, if longer than ``lane``, gives up its newest event."""
        call_id, longest = max(self._lanes.items(), key=lambda item: len(item[1].events))
        if len(longest.events) <= len(lane.events):
            return False
        longest.events.pop()
        self.stats.queued -= 1
        self._drop(call_id, longest)
        return True

    def _drop(self, call_id: str, lane: _Lane) -> None:
        self.stats.dropped_queue_full += 1
        lane.dropped += 1
        if lane.dropped == 1:
            self.stats.calls_over_quota += 1
            log.warning("sink_call_over_quota", sink=self.sink.name, call_id=call_id)
        if not lane.events and not lane.busy:
            self._forget(call_id, lane)

    def _forget(self, call_id: str, lane: _Lane) -> None:
        self._lanes.pop(call_id, None)
        if lane.dropped:
            log.warning(
                "sink_call_events_dropped",
                sink=self.sink.name,
                call_id=call_id,
                dropped=lane.dropped,
            )

    # ---- the delivering side -----------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if self._deliver_now is not None:
                await self._deliver_inline()
            while self._ready and self._active < self._concurrency:
                call_id = self._ready.popleft()
                lane = self._lanes.get(call_id)
                if lane is None or lane.busy or not lane.events:
                    continue  # emptied by an eviction, or already listed
                event = lane.events.popleft()
                self.stats.queued -= 1
                lane.busy = True
                self._active += 1
                task = asyncio.create_task(self._deliver(call_id, lane, event))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            if self._closing and not self._active and not self._ready:
                self._stopped = True
                return
            self._wake.clear()
            await self._wake.wait()

    async def _deliver_inline(self) -> None:
        """A synchronous sink's deliveries, in this task: the same order, round-robin and
        accounting as a task per event (``_deliver``), at a fraction of the cost."""
        deliver_now = self._deliver_now
        done = 0
        while self._ready:
            call_id = self._ready.popleft()
            lane = self._lanes.get(call_id)
            if lane is None or lane.busy or not lane.events:
                continue
            event = lane.events.popleft()
            self.stats.queued -= 1
            # The sink's log lines carry the call, as in a delivery task (and unbound after).
            bound = structlog.contextvars.bind_contextvars(call_id=call_id)
            try:
                deliver_now(event)
                self.stats.delivered += 1
            except SinkError as exc:
                self._lose(event, str(exc)[:200])
            except Exception as exc:
                log.exception("sink_crashed", sink=self.sink.name)
                self._lose(event, f"sink error: {type(exc).__name__}")
            finally:
                structlog.contextvars.reset_contextvars(**bound)
            if lane.events:
                self._ready.append(call_id)
            else:
                self._forget(call_id, lane)
            done += 1
            if done % _INLINE_BATCH == 0:
                await asyncio.sleep(0)  # a long backlog must not hold up the calls' I/O

    async def _deliver(self, call_id: str, lane: _Lane, event: UtteranceEvent) -> None:
        # Each delivery is its own task: bind the call here so the sink's log lines carry it.
        structlog.contextvars.bind_contextvars(call_id=call_id)
        try:
            await self.sink.deliver(event)
            self.stats.delivered += 1
        except SinkError as exc:
            self._lose(event, str(exc)[:200])
        except asyncio.CancelledError:
            self._lose(event, "shutdown: drain period over")
            raise
        except Exception as exc:
            log.exception("sink_crashed", sink=self.sink.name)
            self._lose(event, f"sink error: {type(exc).__name__}")
        finally:
            self._active -= 1
            lane.busy = False
            if lane.events:
                self._ready.append(call_id)
            else:
                self._forget(call_id, lane)
            self._wake.set()

    def _lose(self, event: UtteranceEvent, reason: str) -> None:
        self.stats.failed += 1
        if self._dead_letter is not None and self._dead_letter.write(
            event, sink=self.sink.name, reason=reason, at=self._clock.wall()
        ):
            self.stats.dead_lettered += 1
        else:
            self.stats.lost += 1
        n = self.stats.dead_lettered + self.stats.lost
        if n in (1, 10, 100) or n % 1000 == 0:
            log.warning(
                "sink_event_not_delivered",
                sink=self.sink.name,
                reason=reason,
                dead_lettered=self.stats.dead_lettered,
                lost=self.stats.lost,
            )

    # ---- shutdown ----------------------------------------------------------------------

    async def close(self, timeout: float) -> None:
        """Deliver what is queued within ``timeout`` (clock seconds), dead-letter the rest."""
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await self._clock.wait_for(asyncio.shield(self.task), timeout)
        if not self.task.done():
            left = self.stats.queued + len(self._inflight)
            log.warning("sink_drain_timeout", sink=self.sink.name, left=left)
            self.task.cancel()
            for task in list(self._inflight):
                task.cancel()
            await asyncio.gather(self.task, *self._inflight, return_exceptions=True)
            self._stopped = True
            for lane in self._lanes.values():
                while lane.events:
                    self.stats.queued -= 1
                    self._lose(lane.events.popleft(), "shutdown: drain period over")
            self._lanes.clear()
            self._ready.clear()
        self._closed = True
        try:
            await self.sink.aclose()
        except Exception:
            log.exception("sink_close_failed", sink=self.sink.name)

    def health(self) -> dict[str, Any]:
        own = getattr(self.sink, "health", None)
        extra: dict[str, Any] = own() if callable(own) else {}
        return {"queued": self.stats.queued, **extra}


class EventBus:
    """Hands every published event to every sink; see the module docstring for the rules.

    Create it inside the running event loop, add sinks, ``publish`` from anywhere in the loop,
    and ``await aclose(timeout)`` at shutdown (it drains, dead-letters and closes the sinks).
    """

    def __init__(
        self,
        queue_size: int = 1000,
        include_partials: bool = True,
        *,
        per_call_queue_size: int = 200,
        clock: Clock = SYSTEM_CLOCK,
        dead_letter: DeadLetterFile | None = None,
    ) -> None:
        self._queue_size = queue_size
        self._per_call = per_call_queue_size
        self._include_partials = include_partials
        self._clock = clock
        self.dead_letter = dead_letter
        self._workers: list[_Worker] = []
        self.published = 0

    def add_sink(self, sink: Sink) -> None:
        self._workers.append(
            _Worker(
                sink,
                queue_size=self._queue_size,
                per_call_size=self._per_call,
                clock=self._clock,
                dead_letter=self.dead_letter,
            )
        )

    def publish(self, event: UtteranceEvent) -> None:
        if event.type == "partial" and not self._include_partials:
            return
        self.published += 1
        for worker in self._workers:
            worker.offer(event)

    def stats(self) -> dict[str, SinkStats]:
        return {w.sink.name: w.stats for w in self._workers}

    def health(self) -> dict[str, dict[str, Any]]:
        """Per-sink state for /healthz: queue depth plus what the sink reports itself."""
        return {w.sink.name: w.health() for w in self._workers}

    def reopen(self) -> None:
        """Reopen the sinks' files (SIGHUP after logrotate). Safe to call at any time."""
        for worker in self._workers:
            reopen = getattr(worker.sink, "reopen", None)
            if callable(reopen):
                reopen()

    async def aclose(self, timeout: float = 5.0) -> None:
        await asyncio.gather(*(w.close(timeout) for w in self._workers))
        self._workers.clear()
        if self.dead_letter is not None:
            self.dead_letter.close()
