"""Where engine sessions run: lanes of workers, sessions pinned to the least-loaded lane, and
fair round-robin scheduling of engine calls inside each lane.

PocketSphinx holds the GIL while it decodes, so in the server's process it can use one core at
most and slows the event loop that reads every call. CPU-bound engines (``Engine.parallel``)
therefore run in worker processes, one lane per process: a session is opened in one worker and
stays there (its decoder state lives there), and new sessions go to the lane with the fewest.
Cheap engines (the tones engine, test engines) run in one in-process thread lane.

Inside a lane, calls run one at a time in round-robin order over the sessions that have calls
waiting, so a session with a backlog (a client sending far faster than real time) gets one
call per turn like everybody else; the session also cuts long audio into short calls
(``rules.split_audio``), which bounds how long any one turn takes.

Worker processes are fresh interpreters (``engine_worker.main``, on the parent's sys.path, with a
socket pair for requests; the parent runs gRPC threads, which ``fork`` does not survive) and
find the engine by name, so an engine must be built in or importable as
``package.module:factory`` to run in processes. If a worker dies, its sessions fail (the server
ends them with INTERNAL) and the lane starts a fresh worker for new sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol, TypeVar

import structlog

from ivr_bridge.local.engine import Engine, EngineEvent, EngineOptions, EngineSession, get_engine

log = structlog.get_logger(__name__)

T = TypeVar("T")

WORKER_START_TIMEOUT_S = 120.0  # spawn + imports + model warm-up on a busy machine
WORKER_STOP_TIMEOUT_S = 5.0
# The worker's interpreter imports from exactly the parent's sys.path (not from its working
# directory first, as ``python -m`` would), so both sides run the same ivr_bridge.
_PATH_ENV = "IVR_BRIDGE_WORKER_SYS_PATH"
_BOOTSTRAP = (
    "import json, os, sys; "
    f"sys.path[:] = json.loads(os.environ[{_PATH_ENV!r}]); "
    "from ivr_bridge.local.engine_worker import main; main(sys.argv[1:])"
)


@dataclass(frozen=True, slots=True)
class EngineReply:
    """What one engine call produced, with the engine's cursors right after it."""

    events: list[EngineEvent]
    processed_ms: int
    final_time_ms: int


# Engine session operations by name: they cross the process boundary as plain tuples.
OPERATIONS = ("feed", "add_silence", "force_endpoint", "finish")


def apply_operation(session: EngineSession, op: str, arg: Any) -> EngineReply:
    if op == "feed":
        events = session.feed(arg)
    elif op == "add_silence":
        events = session.add_silence(arg)
    elif op == "force_endpoint":
        events = session.force_endpoint()
    elif op == "finish":
        events = session.finish()
    else:
        raise ValueError(f"unknown engine operation {op!r}")
    return EngineReply(list(events), session.processed_ms, session.final_time_ms)


class WorkerLost(RuntimeError):
    """The worker process that held a session is gone (crashed or killed)."""


class Backend(Protocol):
    """Runs engine sessions; every method blocks and is called from its lane's thread only."""

    def start(self) -> None: ...

    def open(self, sid: int, options: EngineOptions) -> None: ...

    def call(self, sid: int, op: str, arg: Any) -> EngineReply: ...

    def close(self, sid: int) -> None: ...

    def stop(self) -> None: ...


class InProcessBackend:
    """Sessions in this process (run on the lane's thread)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions: dict[int, EngineSession] = {}

    def start(self) -> None:
        self._engine.warm_up()

    def open(self, sid: int, options: EngineOptions) -> None:
        self._sessions[sid] = self._engine.open_session(options)

    def call(self, sid: int, op: str, arg: Any) -> EngineReply:
        return apply_operation(self._sessions[sid], op, arg)

    def close(self, sid: int) -> None:
        session = self._sessions.pop(sid, None)
        if session is not None:
            session.close()

    def stop(self) -> None:
        for sid in list(self._sessions):
            self.close(sid)


class ProcessBackend:
    """Sessions in one worker process, reached over a pipe."""

    def __init__(self, engine_name: str, index: int) -> None:
        self._engine_name = engine_name
        self._index = index
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._generation = 0
        self._owner: dict[int, int] = {}  # sid -> generation of the worker that holds it
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        # A fresh interpreter (not fork: the parent runs gRPC threads; not multiprocessing's
        # spawn: it re-imports the parent's __main__, which an embedding script may not guard).
        parent, child = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, str(child.fileno()), self._engine_name],
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
                env={**os.environ, _PATH_ENV: json.dumps(sys.path)},
            )
        finally:
            child.close()
        conn = Connection(parent.detach())
        if not conn.poll(WORKER_START_TIMEOUT_S):
            process.kill()
            process.wait()
            conn.close()
            raise WorkerLost(f"engine worker {self._index} did not start")
        try:
            conn.recv()
        except (EOFError, OSError) as exc:
            process.wait()
            conn.close()
            raise WorkerLost(f"engine worker {self._index} failed to start") from exc
        self._process, self._conn = process, conn
        self._generation += 1
        log.info("local_engine_worker_started", worker=self._index, pid=process.pid)

    def _request(self, kind: str, sid: int, args: Any) -> Any:
        conn = self._conn
        if conn is None:
            raise WorkerLost(f"engine worker {self._index} is not running")
        try:
            conn.send((kind, sid, args))
            status, payload = conn.recv()
        except (EOFError, OSError) as exc:
            self._replace()
            raise WorkerLost(f"engine worker {self._index} exited") from exc
        if status == "error":
            raise RuntimeError(payload)
        return payload

    def _replace(self) -> None:
        """The worker died: reap it and start another for the sessions to come."""
        log.warning("local_engine_worker_lost", worker=self._index, pid=self.pid)
        process, self._process = self._process, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if process is not None:
            process.kill()
            process.wait()
        self.restarts += 1
        self.start()

    def open(self, sid: int, options: EngineOptions) -> None:
        self._request("open", sid, options)
        self._owner[sid] = self._generation

    def call(self, sid: int, op: str, arg: Any) -> EngineReply:
        if self._owner.get(sid) != self._generation:
            raise WorkerLost(f"engine worker {self._index} restarted; session lost")
        reply: EngineReply = self._request("call", sid, (op, arg))
        return reply

    def close(self, sid: int) -> None:
        if self._owner.pop(sid, None) == self._generation:
            # A fresh worker (after a crash) holds nothing of this session.
            with contextlib.suppress(WorkerLost):
                self._request("close", sid, None)

    def stop(self) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(("stop", 0, None))
            conn.close()
        if process is not None:
            try:
                process.wait(WORKER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass(slots=True)
class _Job:
    fn: Callable[[Backend], Any]
    future: asyncio.Future[Any] | None  # None: fire and forget (closing a session)


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return  # the caller gave up (its call was cancelled)
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class EngineLane:
    """One backend (a worker process or this process) and the sessions pinned to it.

    ``run`` queues one engine call for a session and waits for its result. The lane's own
    thread executes the calls one at a time, taking sessions in round-robin order, so a
    session's backlog never delays another session by more than one call. Scheduling happens
    on that thread, so a call costs the event loop one hand-over each way, like a plain
    executor.
    """

    def __init__(self, index: int, backend: Backend) -> None:
        self.index = index
        self.backend = backend
        self.sessions = 0  # sessions pinned here now (the load used for assignment)
        self.calls = 0
        self._changed = threading.Condition()
        self._jobs: dict[int, deque[_Job]] = {}
        self._ready: deque[int] = deque()  # sessions with calls waiting, in turn order
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self.backend.start)
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._work, name=f"local-asr-{self.index}", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        """Fail the calls still queued, finish the one running, stop the backend."""
        with self._changed:
            self._stopping = True
            stranded = [job for queue in self._jobs.values() for job in queue]
            self._jobs.clear()
            self._ready.clear()
            self._changed.notify_all()
        for job in stranded:
            if job.future is not None and not job.future.done():
                job.future.set_exception(RuntimeError("local recognizer stopped"))
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join)
        await asyncio.to_thread(self.backend.stop)

    async def run(self, sid: int, fn: Callable[[Backend], T]) -> T:
        """Run ``fn(backend)`` in session ``sid``'s next turn; its result or exception."""
        if self._thread is None:
            raise RuntimeError("local recognizer not started")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue(sid, _Job(fn, future))
        return await future

    def post(self, sid: int, fn: Callable[[Backend], Any]) -> None:
        """Queue ``fn`` after the session's earlier calls, without waiting (e.g. close)."""
        if self._thread is not None:
            self._queue(sid, _Job(fn, None))

    def _queue(self, sid: int, job: _Job) -> None:
        with self._changed:
            queue = self._jobs.get(sid)
            if queue is None:
                queue = self._jobs[sid] = deque()
                self._ready.append(sid)
            queue.append(job)
            self._changed.notify()

    def _next(self) -> _Job | None:
        """The next job in round-robin order over sessions (None once stopping)."""
        with self._changed:
            while not self._ready:
                if self._stopping:
                    return None
                self._changed.wait()
            sid = self._ready.popleft()
            queue = self._jobs[sid]
            job = queue.popleft()
            if queue:
                self._ready.append(sid)  # more from this session: back of the line
            else:
                del self._jobs[sid]
            return job

    def _work(self) -> None:
        """The lane's thread."""
        loop = self._loop
        assert loop is not None
        while (job := self._next()) is not None:
            if job.future is not None and job.future.done():
                continue  # cancelled while it waited
            self.calls += 1
            result: Any = None
            error: BaseException | None = None
            try:
                result = job.fn(self.backend)
            except Exception as exc:
                error = exc
            if job.future is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    loop.call_soon_threadsafe(_resolve, job.future, result, error)
            elif error is not None:
                log.warning("local_engine_call_failed", error=type(error).__name__)


class PinnedSession:
    """An engine session opened in one lane; every call goes to that lane, in order."""

    def __init__(self, lane: EngineLane, sid: int) -> None:
        self.lane = lane
        self.sid = sid
        self._opened = False
        self._released = False

    async def open(self, options: EngineOptions) -> None:
        sid = self.sid
        await self.lane.run(sid, lambda backend: backend.open(sid, options))
        self._opened = True

    async def call(self, op: str, arg: Any = None) -> EngineReply:
        sid = self.sid
        return await self.lane.run(sid, lambda backend: backend.call(sid, op, arg))

    def release(self) -> None:
        """Close the engine session after its queued calls and free the slot. Idempotent."""
        if self._released:
            return
        self._released = True
        self.lane.sessions -= 1
        sid = self.sid
        # Always queued (even if open never finished): the lane runs it after the open.
        self.lane.post(sid, lambda backend: backend.close(sid))


class EnginePool:
    """The lanes of one server: ``workers`` processes for a CPU-bound engine, else one thread.

    Call ``start()`` (loads the engine in every worker) before ``assign()``, and ``stop()``
    once no session is left.
    """

    def __init__(self, engine_name: str, workers: int = 0) -> None:
        if workers < 0:
            raise ValueError("workers must not be negative")
        self.engine: Engine = get_engine(engine_name)  # ConfigError for an unknown name
        self.processes = bool(workers) and bool(getattr(self.engine, "parallel", False))
        backends: list[Backend] = (
            [ProcessBackend(engine_name, i) for i in range(workers)]
            if self.processes
            else [InProcessBackend(self.engine)]
        )
        self.lanes = [EngineLane(i, backend) for i, backend in enumerate(backends)]
        self._ids = itertools.count(1)

    async def start(self) -> None:
        await asyncio.gather(*(lane.start() for lane in self.lanes))

    async def stop(self) -> None:
        await asyncio.gather(*(lane.stop() for lane in self.lanes))

    def assign(self) -> PinnedSession:
        """A new session on the lane with the fewest sessions (the first among equals)."""
        lane = min(self.lanes, key=lambda lane: (lane.sessions, lane.index))
        lane.sessions += 1
        return PinnedSession(lane, next(self._ids))

    def load(self) -> list[int]:
        """Sessions per lane."""
        return [lane.sessions for lane in self.lanes]
