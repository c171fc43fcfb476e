"""Fan-out of utterance events to sinks, each behind its own bounded queue.

``publish`` never blocks and never raises: a slow or broken sink fills its own queue and
loses events there (counted per sink), while the audio path and the other sinks go on.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Protocol

import structlog

from ivr_bridge.errors import SinkError
from ivr_bridge.model import UtteranceEvent

log = structlog.get_logger(__name__)


class Sink(Protocol):
    name: str

    async def deliver(self, event: UtteranceEvent) -> None:
        """Deliver one event; raise SinkError when it could not be delivered."""
        ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class SinkStats:
    delivered: int = 0
    failed: int = 0
    dropped_queue_full: int = 0


class _Worker:
    def __init__(self, sink: Sink, queue_size: int) -> None:
        self.sink = sink
        self.stats = SinkStats()
        self.queue: asyncio.Queue[UtteranceEvent | None] = asyncio.Queue(queue_size)
        self.task = asyncio.create_task(self._run(), name=f"sink-{sink.name}")

    def offer(self, event: UtteranceEvent) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.stats.dropped_queue_full += 1
            if (
                self.stats.dropped_queue_full in (1, 10, 100)
                or self.stats.dropped_queue_full % 1000 == 0
            ):
                log.warning(
                    "sink_queue_full", sink=self.sink.name, dropped=self.stats.dropped_queue_full
                )

    async def _run(self) -> None:
        while True:
            event = await self.queue.get()
            if event is None:
                return
            try:
                await self.sink.deliver(event)
                self.stats.delivered += 1
            except SinkError as exc:
                self.stats.failed += 1
                log.warning("sink_delivery_failed", sink=self.sink.name, error=str(exc)[:200])
            except Exception:
                self.stats.failed += 1
                log.exception("sink_crashed", sink=self.sink.name)

    async def close(self, timeout: float) -> None:
        # A full queue at shutdown gets the timeout to drain, then is stopped.
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except TimeoutError:
            log.warning("sink_close_timeout", sink=self.sink.name, left=self.queue.qsize())
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.sink.aclose()


class EventBus:
    """Fans events out to sinks, each behind its own bounded queue, without ever blocking.

    Add sinks with :meth:`add_sink` before the first :meth:`publish` (publishing never waits;
    a full queue drops and counts). At shutdown await :meth:`aclose` once, which gives each
    sink a bounded time to deliver what is queued; :meth:`stats` reports drops per sink.
    """

    def __init__(self, queue_size: int = 1000, include_partials: bool = True) -> None:
        self._queue_size = queue_size
        self._include_partials = include_partials
        self._workers: list[_Worker] = []
        self.published = 0

    def add_sink(self, sink: Sink) -> None:
        self._workers.append(_Worker(sink, self._queue_size))

    def publish(self, event: UtteranceEvent) -> None:
        if event.type == "partial" and not self._include_partials:
            return
        self.published += 1
        for worker in self._workers:
            worker.offer(event)

    def stats(self) -> dict[str, SinkStats]:
        return {w.sink.name: w.stats for w in self._workers}

    async def aclose(self, timeout: float = 5.0) -> None:
        await asyncio.gather(*(w.close(timeout) for w in self._workers))
        self._workers.clear()
