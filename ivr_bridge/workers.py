"""Every core: ``server.workers`` processes serving one port, seen from outside as one service.

Pre-fork: the parent binds and listens on the port once, then forks the workers before any
event loop or thread exists; each worker runs a full bridge (its own event loop, recognizer
channel, and embedded recognizer when no endpoint is configured) accepting from the shared
socket. The kernel hands each connection to one worker; a busy worker accepts less, and one
past its limits refuses (overload.py).

The service stays one service: every worker writes a snapshot of its counters and metrics
to a shared directory every ``_PUBLISH_S``, and whichever worker answers ``/healthz`` or
``/metrics`` sums all the snapshots (taking the maximum for per-process levels such as loop
lag), so figures are for the whole service and at most ``_PUBLISH_S`` old for the siblings.
SIGTERM to the parent reaches every worker; each drains its calls; the parent exits when
all have.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from ivr_bridge.config import Settings

log = structlog.get_logger(__name__)

_PUBLISH_S = 0.5
_SAMPLE = re.compile(r"^(?P<key>[a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (?P<value>\S+)$")
# Per-process levels: the service's figure is the worst worker's, not a sum.
_MAX_OF = ("event_loop_lag_ms", "process_cpu", "draining")


def worker_count(configured: int) -> int:
    """``server.workers``: 0 means one per core."""
    return configured if configured > 0 else (os.cpu_count() or 1)


def sum_health(snapshots: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The /healthz body for the whole service from each worker's own body."""
    if not snapshots:
        return {}
    body = dict(snapshots[0])
    for key in ("active_calls", "calls_total"):
        body[key] = sum(int(s.get(key, 0)) for s in snapshots)
    body["draining"] = any(bool(s.get("draining")) for s in snapshots)
    body["workers"] = len(snapshots)
    return body


def sum_metrics(texts: list[str]) -> str:
    """Prometheus text from several workers as one: same series summed (levels: max)."""
    order: list[str] = []
    values: dict[str, float] = {}
    for text in texts:
        for line in text.splitlines():
            match = _SAMPLE.match(line) if not line.startswith("#") else None
            if match is None:
                if line not in values and line not in order:
                    order.append(line)  # HELP/TYPE lines, once
                continue
            key, value = match["key"], float(match["value"])
            if key not in values:
                order.append(key)
                values[key] = value
            elif any(name in key for name in _MAX_OF):
                values[key] = max(values[key], value)
            else:
                values[key] += value
    return "".join(
        f"{item} {values[item]:g}\n" if item in values else f"{item}\n" for item in order
    )


class WorkerPeers:
    """One worker's view of its siblings' snapshots in the shared directory."""

    def __init__(self, directory: Path, index: int) -> None:
        self.directory = directory
        self.index = index
        self._task: asyncio.Task[None] | None = None

    def _path(self, index: int) -> Path:
        return self.directory / f"worker-{index}.json"

    def report_failure(self, message: str) -> None:
        """This worker could not start: leave the one-line reason for the parent to print."""
        # Atomic: the parent may stop this worker mid-write once a sibling has failed.
        tmp = self.directory / f".failed-{self.index}.tmp"
        tmp.write_text(message)
        tmp.replace(self.directory / f"failed-{self.index}.txt")

    def publish(self, health: Mapping[str, Any], metrics: str) -> None:
        tmp = self.directory / f".worker-{self.index}.tmp"
        tmp.write_text(json.dumps({"health": dict(health), "metrics": metrics}))
        tmp.replace(self._path(self.index))  # atomic: readers never see half a file

    def _siblings(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for path in sorted(self.directory.glob("worker-*.json")):
            if path == self._path(self.index):
                continue
            with contextlib.suppress(OSError, ValueError):
                found.append(json.loads(path.read_text()))
        return found

    def health(self, own: Mapping[str, Any]) -> dict[str, Any]:
        return sum_health([own, *(s["health"] for s in self._siblings())])

    def metrics(self, own: str) -> str:
        return sum_metrics([own, *(str(s["metrics"]) for s in self._siblings())])

    def start(self, snapshot: Callable[[], tuple[dict[str, Any], str]]) -> None:
        async def loop() -> None:
            while True:
                with contextlib.suppress(OSError):
                    self.publish(*snapshot())
                await asyncio.sleep(_PUBLISH_S)

        self._task = asyncio.get_running_loop().create_task(loop(), name="worker-publish")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError):
            self._path(self.index).unlink()


def listen_socket(host: str, port: int) -> socket.socket:
    """The one listening socket all workers accept from."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def worker_settings(settings: Settings, workers: int) -> Settings:
    """Each worker's settings: the embedded recognizer's engine pool shared out among them."""
    embedded = settings.embedded
    if embedded.workers > 0:
        embedded = replace(embedded, workers=max(1, embedded.workers // workers))
    return replace(settings, embedded=embedded)


class WorkerStartFailed(Exception):
    """A worker could not start; the message is the worker's one-line reason."""


def serve_workers(
    settings: Settings, workers: int, run_worker: Callable[[socket.socket, WorkerPeers], int]
) -> int:
    """Fork ``workers`` processes running ``run_worker`` on one socket; wait for them all.

    Returns the worst exit status; raises WorkerStartFailed with a worker's reason when one
    could not start. A worker that exits with an error takes the service down with it (the
    supervisor restarts the whole, rather than one port serving with fewer workers). Call
    before any event loop or thread exists (fork).
    """
    sock = listen_socket(settings.server.host, settings.server.port)
    directory = Path(tempfile.mkdtemp(prefix="ivr-bridge-workers-"))
    log.info("workers_starting", workers=workers, port=sock.getsockname()[1])
    children: list[int] = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                code = run_worker(sock, WorkerPeers(directory, index))
            finally:
                os._exit(code)
        children.append(pid)
    sock.close()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    worst = 0
    alive = set(children)
    while alive:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in alive:
            continue
        alive.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        if code != 0 and alive:
            forward(signal.SIGTERM, None)
        worst = max(worst, code if code >= 0 else 128 - code)
    failures = sorted(directory.glob("failed-*.txt"))
    reason = failures[0].read_text() if failures else ""
    with contextlib.suppress(OSError):
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()
    if reason:
        raise WorkerStartFailed(reason)
    return worst
