"""One ``RecognizeStreaming`` call of the embedded recognizer, as asyncio tasks.

The protocol decisions are ``rules.SessionRules``'s; this module moves messages: a reader
takes requests off the connection at once (so slow decoding never looks like a silent client)
into a queue bounded by count and by audio bytes, a processor hands the work to the session's
engine lane and sends what comes back, a watchdog enforces the 5-second rule on the injected
clock, and a ticker sends WORKING every 2 s of session time.

Backpressure: when the queue is full the reader stops reading, so gRPC flow control slows
that client down (and only that client); the wait is counted in ``RecognizerStats.throttled``
and, since the server is the one not reading, is not held against the client by the idle rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog

from ivr_bridge.clock import Clock
from ivr_bridge.local.engine import EngineEou, EngineOptions
from ivr_bridge.local.faults import FaultPlan
from ivr_bridge.local.rules import (
    MSG_ENGINE,
    MSG_IDLE,
    MSG_INJECTED,
    MSG_OPTIONS_TWICE,
    MSG_OUTAGE,
    AudioItem,
    EndItem,
    EouItem,
    LocalLimits,
    ResponseEvent,
    SessionError,
    SessionRules,
    SilenceItem,
    WorkItem,
    split_audio,
)
from ivr_bridge.local.workers import EngineReply, PinnedSession

log = structlog.get_logger(__name__)

STATUS_INTERVAL_S = 2.0
# Before an error status the server keeps reading (and dropping) requests until the client
# pauses for DRAIN_QUIET_S, half-closes, or DRAIN_MAX_S passed (real time). A grpc.aio client
# whose write fails after the status arrived reports INTERNAL instead of the server's status
# (grpc/grpc#36066); draining lets a client's burst (options + first audio) land first.
DRAIN_QUIET_S = 0.05
DRAIN_MAX_S = 0.25
# Read-ahead of the engine, per session: at most this many requests and this much audio.
QUEUE_SIZE = 64
QUEUE_MAX_BYTES = 320_000  # 10 s at 16 kHz, 20 s at 8 kHz
# Audio is handed to the engine in calls of at most this much (a turn in the lane's rotation).
ENGINE_CALL_MS = 250


@dataclass(slots=True)
class RecognizerStats:
    """Server-wide counters for tests and metrics (updated on the event loop)."""

    sessions_opened: int = 0
    sessions_active: int = 0
    ended: dict[str, int] = field(default_factory=dict)  # status code name -> sessions
    audio_ms: int = 0  # session audio accepted, all sessions
    finals: int = 0
    throttled: int = 0  # times a reader waited for room in its session's queue

    def count_end(self, code: str) -> None:
        self.ended[code] = self.ended.get(code, 0) + 1


QueueItem = EngineOptions | WorkItem


class WorkQueue:
    """FIFO between a session's reader and its processor, bounded by items and audio bytes.

    ``put`` waits while the queue is full; one item larger than the byte bound is still
    accepted into an empty queue (the engine takes it in slices).
    """

    def __init__(self, max_items: int = QUEUE_SIZE, max_bytes: int = QUEUE_MAX_BYTES) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: deque[QueueItem] = deque()
        self._bytes = 0
        self._changed = asyncio.Condition()

    @staticmethod
    def _size(item: QueueItem) -> int:
        return len(item.data) if isinstance(item, AudioItem) else 0

    def has_room(self, item: QueueItem) -> bool:
        if not self._items:
            return True
        return (
            len(self._items) < self.max_items and self._bytes + self._size(item) <= self.max_bytes
        )

    async def put(self, item: QueueItem) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.has_room(item))
            self._items.append(item)
            self._bytes += self._size(item)
            self._changed.notify_all()

    async def get(self) -> QueueItem:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items))
            item = self._items.popleft()
            self._bytes -= self._size(item)
            self._changed.notify_all()
            return item

    def __len__(self) -> int:
        return len(self._items)


async def drain_requests(context: Any) -> None:
    """Read and drop requests until a pause of DRAIN_QUIET_S, the half-close or DRAIN_MAX_S."""
    loop = asyncio.get_running_loop()
    end = loop.time() + DRAIN_MAX_S
    while (left := end - loop.time()) > 0:
        try:
            request = await asyncio.wait_for(context.read(), min(DRAIN_QUIET_S, left))
        except TimeoutError:
            return
        if request is grpc.aio.EOF:
            return


class RecognitionSession:
    """One call: a reader, a processor, an idle watchdog, a status ticker, an outage watch.

    ``run()`` returns the (status code name, message) the call ends with; the caller sets it
    on the gRPC context. The engine session is released when ``run()`` returns.
    """

    def __init__(
        self,
        context: Any,
        *,
        engine: PinnedSession,
        clock: Clock,
        limits: LocalLimits,
        stats: RecognizerStats,
        outage: asyncio.Event,
        request_id: str,
        plan: FaultPlan | None = None,
    ) -> None:
        self._context = context
        self._engine = engine
        self._clock = clock
        self._limits = limits
        self._stats = stats
        self._outage = outage
        self._plan = plan
        self.uuid = str(uuid.uuid4())
        self.rules = SessionRules(limits, self.uuid, request_id)
        loop = asyncio.get_running_loop()
        self._queue = WorkQueue()
        self._done: asyncio.Future[tuple[str, str]] = loop.create_future()
        self._write_lock = asyncio.Lock()
        self._options_seen = asyncio.Event()
        # Idle rule state: the reader is waiting for the network since _waiting_since.
        self._reading = False
        self._waiting_since = clock.now()
        self._half_closed = False
        self._last_read = loop.time()

    @property
    def received_ms(self) -> int:
        return self.rules.received_ms

    @property
    def finals(self) -> int:
        return self.rules.finals

    # ---- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> tuple[str, str]:
        tasks = [
            asyncio.create_task(self._guard(self._read()), name="local-read"),
            asyncio.create_task(self._guard(self._process()), name="local-process"),
            asyncio.create_task(self._guard(self._watch_idle()), name="local-idle"),
            asyncio.create_task(self._guard(self._tick()), name="local-status"),
            asyncio.create_task(self._guard(self._watch_outage()), name="local-faults"),
        ]
        try:
            result = await asyncio.shield(self._done)
            if result[0] != "OK":
                await self._drain(tasks[0])
            return result
        finally:
            try:
                # Let a write in flight complete before cancelling the writers: grpc refuses
                # to finish a call while one of its write operations is still pending.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._write_lock.acquire(), 1.0)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                self._engine.release()  # even if this call is cancelled meanwhile

    async def _drain(self, reader: asyncio.Task[None]) -> None:
        """Before an error status, take what the client already sent (see drain_requests)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + DRAIN_MAX_S
        while not reader.done():
            now = loop.time()
            quiet = now - self._last_read
            if quiet >= DRAIN_QUIET_S or now >= end:
                return
            await asyncio.wait({reader}, timeout=min(DRAIN_QUIET_S - quiet, end - now))

    def _finish(self, code: str, message: str = "") -> None:
        if not self._done.done():
            self._done.set_result((code, message))

    async def _guard(self, work: Any) -> None:
        try:
            await work
        except SessionError as exc:
            self._finish(exc.code, exc.message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("local_session_failed", session=self.uuid)
            self._finish("INTERNAL", MSG_ENGINE)

    # ---- reading -----------------------------------------------------------------------------

    async def _read(self) -> None:
        rules = self.rules
        while True:
            self._waiting_since = self._clock.now()
            self._reading = True
            try:
                request = await self._context.read()
            except SessionError as exc:  # a translating context (v2) refused the request
                self._finish(exc.code, exc.message)
                continue  # keep reading: what the client already sent is drained
            finally:
                self._reading = False
                self._last_read = asyncio.get_running_loop().time()
            if request is grpc.aio.EOF:
                self._half_closed = True
                if self._done.done():
                    return
                await self._put(rules.end_of_stream())
                return
            if self._done.done():
                continue  # the session is ending: drain what the client already sent
            before = rules.received_ms
            try:
                item = rules.accept(request)
            except SessionError as exc:
                self._finish(exc.code, exc.message)
                continue
            self._stats.audio_ms += rules.received_ms - before
            if isinstance(item, EngineOptions):
                self._options_seen.set()
            if item is not None:
                await self._put(item)
            if self._plan is not None and self._plan.ends_at(rules.received_ms):
                raise SessionError(self._plan.end_status, MSG_INJECTED)

    async def _put(self, item: QueueItem) -> None:
        if not self._queue.has_room(item):
            self._stats.throttled += 1
        await self._queue.put(item)

    # ---- timers ------------------------------------------------------------------------------

    async def _watch_idle(self) -> None:
        timeout = self._limits.idle_timeout_s
        margin = max(timeout * 0.01, 0.001)
        while not self._half_closed:
            if self._reading:
                idle = self._clock.now() - self._waiting_since
                if idle > timeout:
                    raise SessionError("DEADLINE_EXCEEDED", MSG_IDLE.format(seconds=timeout))
                await self._clock.sleep(timeout - idle + margin)
            else:
                # Busy (handing a request to the engine queue): check again soon.
                await self._clock.sleep(min(timeout / 4, 0.5))

    async def _watch_outage(self) -> None:
        """End this session when the server has an injected outage (FaultInjector.outage)."""
        await self._outage.wait()
        raise SessionError("UNAVAILABLE", MSG_OUTAGE)

    async def _tick(self) -> None:
        await self._options_seen.wait()
        while True:
            await self._clock.sleep(STATUS_INTERVAL_S)
            await self._send(self.rules.working())

    # ---- processing --------------------------------------------------------------------------

    async def _process(self) -> None:
        options = await self._queue.get()
        assert isinstance(options, EngineOptions)
        engine = self._engine
        await engine.open(options)
        slice_bytes = 2 * options.sample_rate * ENGINE_CALL_MS // 1000
        while True:
            item = await self._queue.get()
            if isinstance(item, AudioItem):
                for piece in split_audio(item, slice_bytes):
                    await self._deliver(await engine.call("feed", piece.data))
            elif isinstance(item, SilenceItem):
                await self._deliver(await engine.call("add_silence", item.duration_ms))
            elif isinstance(item, EouItem):
                reply = await engine.call("force_endpoint")
                # SpeechKit puts an external EOU where the client's eou arrived.
                reply.events[:] = [
                    EngineEou(item.received_ms) if isinstance(e, EngineEou) else e
                    for e in reply.events
                ]
                await self._deliver(reply)
            elif isinstance(item, EndItem):
                await self._deliver(await engine.call("finish"))
                self._finish("OK")
                return
            else:
                raise SessionError("INVALID_ARGUMENT", MSG_OPTIONS_TWICE)

    async def _deliver(self, reply: EngineReply) -> None:
        """Send the events, then publish the engine's cursors: a client must never see
        final_time_ms pass a final it has not received."""
        rules = self.rules
        for event in reply.events:
            for response in rules.render(event):
                if response[0] == "final":
                    self._stats.finals += 1
                await self._send(response)
        rules.engine_progress(reply.processed_ms, reply.final_time_ms)

    async def _send(self, event: ResponseEvent) -> None:
        plan = self._plan
        if plan is not None:
            if plan.stalls_at(self.rules.received_ms):
                return  # an injected stall: keep reading, answer nothing
            if plan.delay_ms:
                await self._clock.sleep(plan.delay_ms / 1000)
        async with self._write_lock:
            wall_ms = int(self._clock.wall() * 1000)
            await self._context.write(self.rules.response(event, wall_ms))
