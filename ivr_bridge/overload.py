"""Admission control: refuse new calls when this process is past its capacity.

A process that takes one call too many makes every call on it late (the event loop is shared),
so past a threshold the bridge refuses the *new* call with 503 and a reason, and the calls in
progress stay real time. Three signals, each configurable and each off at 0:

- ``max_calls``: calls in progress on this process;
- event-loop lag: how late a periodic timer fires, averaged over the last second (a process
  past its capacity is late all the time; one spike, e.g. a burst of handshakes, is not that);
- CPU: the fraction of one core this process used over the last window.

And one that is always on: file descriptors. Within ``fd_reserve`` of the soft limit a new call
is refused (``fd_limit``) before accept() itself starts failing, which asyncio reports with a
traceback per attempt and uvloop (libuv) handles silently; the monitor also reports the
pressure once a second so the server can log it whichever loop runs.

:class:`AdmissionPolicy` is the sans-I/O decision (fed samples, asked for a verdict);
:class:`LoadMonitor` is the small asyncio driver that samples the loop and the CPU clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

_SAMPLE_S = 0.1  # the lag probe's period
_WINDOW = 10  # samples per window: lag and CPU are averages over the last second
_FD_DIR = "/proc/self/fd"


def open_fds() -> int | None:
    """Descriptors this process has open (None where /proc is not there)."""
    try:
        return len(os.listdir(_FD_DIR))
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            return fd_soft_limit()  # not even one more to read the count with: all in use
        return None


def fd_soft_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def fd_reserve(limit: int) -> int:
    """Descriptors kept free for calls in progress (their sockets to SpeechKit, files)."""
    return max(8, limit // 50)


@dataclass(frozen=True, slots=True)
class OverloadLimits:
    max_calls: int = 500
    max_loop_lag_ms: float = 250.0  # 0: off
    max_cpu: float = 0.0  # fraction of one core for this process; 0: off


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a new call is refused: ``reason`` is a short stable token for metrics and clients."""

    reason: str
    detail: str


class AdmissionPolicy:
    """Decides whether one more call fits (sans-I/O)."""

    def __init__(self, limits: OverloadLimits) -> None:
        self.limits = limits
        self._lags: list[float] = []
        self._cpu: list[float] = []
        self.fds = 0
        self.fd_limit = 0  # 0: not known (no /proc), never refuses for it
        self.refused: dict[str, int] = {}

    def observe(self, lag_ms: float, cpu_fraction: float) -> None:
        """One sample: how late the probe timer fired, and CPU used over its period."""
        self._lags = [*self._lags[-(_WINDOW - 1) :], max(0.0, lag_ms)]
        self._cpu = [*self._cpu[-(_WINDOW - 1) :], max(0.0, cpu_fraction)]

    def observe_fds(self, open_fds: int, limit: int) -> None:
        self.fds = open_fds
        self.fd_limit = limit

    @property
    def fd_pressure(self) -> bool:
        """Open descriptors within the reserve of the soft limit."""
        return self.fd_limit > 0 and self.fds >= self.fd_limit - fd_reserve(self.fd_limit)

    @property
    def loop_lag_ms(self) -> float:
        return sum(self._lags) / len(self._lags) if self._lags else 0.0

    @property
    def cpu(self) -> float:
        return sum(self._cpu) / len(self._cpu) if self._cpu else 0.0

    def check(self, active_calls: int) -> Refusal | None:
        """None when a new call may start; else the first limit it would break."""
        limits = self.limits
        refusal: Refusal | None = None
        if active_calls >= limits.max_calls:
            refusal = Refusal("max_calls", f"{active_calls} calls in progress")
        elif limits.max_loop_lag_ms and self.loop_lag_ms > limits.max_loop_lag_ms:
            refusal = Refusal("loop_lag", f"event loop {self.loop_lag_ms:.0f} ms behind")
        elif limits.max_cpu and self.cpu > limits.max_cpu:
            refusal = Refusal("cpu", f"process at {self.cpu:.2f} of a core")
        elif self.fd_pressure:
            refusal = Refusal("fd_limit", f"{self.fds} of {self.fd_limit} file descriptors open")
        if refusal is not None:
            self.refused[refusal.reason] = self.refused.get(refusal.reason, 0) + 1
        return refusal


class LoadMonitor:
    """Samples event-loop lag and process CPU every ``_SAMPLE_S``, and open descriptors once a
    window, into an AdmissionPolicy; ``on_fd_pressure`` runs for each pressured sample.

    Real time on purpose (not the injectable Clock): it measures this process's own load.
    """

    def __init__(
        self, policy: AdmissionPolicy, on_fd_pressure: Callable[[], None] | None = None
    ) -> None:
        self.policy = policy
        self._on_fd_pressure = on_fd_pressure
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="load-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        wall, cpu = time.monotonic(), time.process_time()
        samples = 0
        while True:
            await asyncio.sleep(_SAMPLE_S)
            now_wall, now_cpu = time.monotonic(), time.process_time()
            elapsed = now_wall - wall
            lag_ms = (elapsed - _SAMPLE_S) * 1000
            self.policy.observe(lag_ms, (now_cpu - cpu) / max(elapsed, 1e-6))
            wall, cpu = now_wall, now_cpu
            samples += 1
            if samples % _WINDOW == 1:  # the first sample, then once a second
                self.sample_fds()

    def sample_fds(self) -> None:
        count = open_fds()
        if count is None:
            return
        self.policy.observe_fds(count, fd_soft_limit())
        if self.policy.fd_pressure and self._on_fd_pressure is not None:
            self._on_fd_pressure()
