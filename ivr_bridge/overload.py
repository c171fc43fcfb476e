"""Admission control: refuse new calls when this process is past its capacity.

A process that takes one call too many makes every call on it late (the event loop is shared),
so past a threshold the bridge refuses the *new* call with 503 and a reason, and the calls in
progress stay real time. Three signals, each configurable and each off at 0:

- ``max_calls``: calls in progress on this process;
- event-loop lag: how late a periodic timer fires, averaged over the last second (a process
  past its capacity is late all the time; one spike, e.g. a burst of handshakes, is not that);
- CPU: the fraction of one core this process used over the last window.

:class:`AdmissionPolicy` is the sans-I/O decision (fed samples, asked for a verdict);
:class:`LoadMonitor` is the small asyncio driver that samples the loop and the CPU clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

_SAMPLE_S = 0.1  # the lag probe's period
_WINDOW = 10  # samples per window: lag and CPU are averages over the last second


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
        self.refused: dict[str, int] = {}

    def observe(self, lag_ms: float, cpu_fraction: float) -> None:
        """One sample: how late the probe timer fired, and CPU used over its period."""
        self._lags = [*self._lags[-(_WINDOW - 1) :], max(0.0, lag_ms)]
        self._cpu = [*self._cpu[-(_WINDOW - 1) :], max(0.0, cpu_fraction)]

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
        if refusal is not None:
            self.refused[refusal.reason] = self.refused.get(refusal.reason, 0) + 1
        return refusal


class LoadMonitor:
    """Samples event-loop lag and process CPU every ``_SAMPLE_S`` into an AdmissionPolicy.

    Real time on purpose (not the injectable Clock): it measures this process's own load.
    """

    def __init__(self, policy: AdmissionPolicy) -> None:
        self.policy = policy
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
        while True:
            await asyncio.sleep(_SAMPLE_S)
            now_wall, now_cpu = time.monotonic(), time.process_time()
            elapsed = now_wall - wall
            lag_ms = (elapsed - _SAMPLE_S) * 1000
            self.policy.observe(lag_ms, (now_cpu - cpu) / max(elapsed, 1e-6))
            wall, cpu = now_wall, now_cpu
