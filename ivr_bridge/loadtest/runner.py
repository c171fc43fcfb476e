"""Starts the probe recognizer and the server under test, plays the calls, builds the report.

Each party runs in its own process: the probe recognizer, the server (``ivr-bridge serve`` by
default, or any command given, such as the benchmarks' baseline bridge), and this process as
the load generator. The server's CPU and memory are read from /proc for its pid only.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ivr_bridge.loadtest import procstat
from ivr_bridge.loadtest.generator import FRAME_S, CallRecord, run_calls
from ivr_bridge.loadtest.report import (
    LoadReport,
    event_latencies,
    parse_receipts,
    percentile,
    upstream_delays,
)
from ivr_bridge.simulators.base import ClientAuth


@dataclass(frozen=True, slots=True)
class LoadTestOptions:
    calls: int = 10
    duration_s: float = 10.0
    ramp_s: float = 2.0
    dialect: str = "twilio"
    auth: ClientAuth | None = None
    # The server command; {port}, {recognizer} and {events} are filled in. Empty: ivr-bridge.
    server_cmd: Sequence[str] = ()
    server_env: dict[str, str] = field(default_factory=dict)
    label: str = "ivr-bridge"
    # A bridge already running (``ws://host:port``): no probe or server is started, so the
    # upstream and event figures are n/a; CPU and RSS come from ``bridge_pid`` when given.
    url: str = ""
    bridge_pid: int = 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bridge_cmd() -> list[str]:
    launch = "import sys; from ivr_bridge.cli import main; sys.exit(main())"
    return [sys.executable, "-c", launch, "serve", "--port", "{port}"]


def _bridge_env(recognizer: str, events: str, calls: int) -> dict[str, str]:
    return {
        "IVR_BRIDGE_SPEECHKIT_ENDPOINT": recognizer,
        "IVR_BRIDGE_SPEECHKIT_TLS": "false",
        "IVR_BRIDGE_SPEECHKIT_LANGUAGES": "en-US",
        "IVR_BRIDGE_EVENTS_JSONL": events,
        "IVR_BRIDGE_SERVER_MAX_CALLS": str(calls + 16),
        "IVR_BRIDGE_LOGGING_LEVEL": "warning",
    }


async def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before listening")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("server did not start listening in time")


async def _settle(pid: int, timeout: float = 15.0) -> None:
    """Wait until the server's memory stops growing (workers still starting up would
    otherwise count their start-up as per-call memory)."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            rss = procstat.sample_tree(pid).rss_bytes
            if abs(rss - last) < 256 * 1024:
                return
            last = rss
        await asyncio.sleep(0.5)


def _start_probe(workdir: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    out = workdir / "receipts.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ivr_bridge.loadtest.probe", "--port", "0", "--out", str(out)],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError("probe recognizer did not start")
    return proc, f"127.0.0.1:{line.split()[1]}", out


def _spawn(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Usage:
    """CPU and peak RSS of the server process (and its worker children) over the run."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = procstat.sample_tree(pid) if pid else None
        self.peak_rss = self.before.rss_bytes if self.before else 0
        self.after = self.before
        self._task = asyncio.create_task(self._watch()) if pid else None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            with contextlib.suppress(OSError):
                self.peak_rss = max(self.peak_rss, procstat.sample_tree(self.pid).rss_bytes)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(OSError):
                self.after = procstat.sample_tree(self.pid)

    def cpu_ms_per_call_second(self, call_seconds: float) -> float:
        if self.before is None or self.after is None:
            return math.nan
        return (self.after.cpu_s - self.before.cpu_s) * 1000 / max(call_seconds, 1e-9)

    def rss_kb_per_call(self, calls: int) -> float:
        if self.before is None:
            return math.nan
        return (self.peak_rss - self.before.rss_bytes) / 1024 / max(1, calls)


async def _play(
    url: str, options: LoadTestOptions, progress: Callable[[str], None] | None
) -> list[CallRecord]:
    def tick(ticks: int, live: int, failed: int) -> None:
        if progress is not None:
            progress(f"t={ticks * FRAME_S:6.1f}s live={live:4d} failed={failed}")

    return await run_calls(
        url,
        dialect=options.dialect,
        calls=options.calls,
        duration_s=options.duration_s,
        ramp_s=options.ramp_s,
        progress=tick,
        auth=options.auth,
    )


async def run_loadtest(
    options: LoadTestOptions, progress: Callable[[str], None] | None = None
) -> LoadReport:
    """One load test: probe + server in their own processes, calls from this one.

    With ``options.url`` the calls go to a bridge already running instead.
    """
    if options.url:
        usage = _Usage(options.bridge_pid)
        records = await _play(options.url.rstrip("/"), options, progress)
        usage.stop()
        return _report(options, records, usage, [], [])
    with tempfile.TemporaryDirectory(prefix="ivr-loadtest-") as tmp:
        workdir = Path(tmp)
        events = workdir / "events.jsonl"
        probe, recognizer, receipts_path = _start_probe(workdir)
        port = free_port()
        fill = {"port": str(port), "recognizer": recognizer, "events": str(events)}
        cmd = [part.format(**fill) for part in (options.server_cmd or _bridge_cmd())]
        env = {**os.environ, **_bridge_env(recognizer, str(events), options.calls)}
        env.update({k: v.format(**fill) for k, v in options.server_env.items()})
        server = _spawn(cmd, env)
        try:
            await _wait_listening(port, server, 30.0)
            await _settle(server.pid)
            usage = _Usage(server.pid)
            records = await _play(f"ws://127.0.0.1:{port}", options, progress)
            usage.stop()
            await asyncio.sleep(1.5)  # let the last finals and call_ended reach the sinks
        finally:
            _stop(server)
            _stop(probe)
        receipts = parse_receipts(receipts_path.read_text()) if receipts_path.exists() else []
        lines = events.read_text().splitlines() if events.exists() else []
    return _report(options, records, usage, receipts, lines)


def _report(
    options: LoadTestOptions,
    records: list[CallRecord],
    usage: _Usage,
    receipts: list[tuple[int, int, float]],
    lines: list[str],
) -> LoadReport:
    sends = {r.call_no: r.send_times for r in records}
    delays = upstream_delays(sends, receipts, {r.call_no: r.frame_samples for r in records})
    lateness = [x for r in records for x in r.lateness_ms]
    latencies, dropped = event_latencies(lines)
    frames_sent = sum(len(r.send_times) for r in records)
    call_seconds = frames_sent * FRAME_S
    ok = sum(1 for r in records if r.ok)
    return LoadReport(
        target=options.label,
        calls=options.calls,
        calls_ok=ok,
        calls_failed=options.calls - ok,
        duration_s=options.duration_s,
        send_lateness_p50_ms=percentile(lateness, 50),
        send_lateness_p99_ms=percentile(lateness, 99),
        upstream_delay_p50_ms=percentile(delays, 50),
        upstream_delay_p99_ms=percentile(delays, 99),
        upstream_delay_max_ms=max(delays) if delays else float("nan"),
        frames_sent=frames_sent,
        frames_received=len(delays),
        event_latency_p50_ms=percentile(latencies, 50),
        event_latency_p99_ms=percentile(latencies, 99),
        finals=len(latencies),
        cpu_ms_per_call_second=usage.cpu_ms_per_call_second(call_seconds),
        rss_kb_per_call=usage.rss_kb_per_call(options.calls),
        dropped_samples=dropped,
    )
