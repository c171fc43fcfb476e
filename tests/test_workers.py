"""server.workers: several processes on one port answer health and metrics for the whole
service, and SIGTERM drains them all."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import urllib.request
from typing import Any

from ivr_bridge.simulate import simulate_pcm
from ivr_bridge.workers import sum_health, sum_metrics, worker_count
from tests.fakes import silence_pcm, word_pcm


def test_health_and_metrics_sum_over_workers() -> None:
    a = {"status": "ok", "active_calls": 2, "calls_total": 5, "draining": False}
    b = {"status": "ok", "active_calls": 1, "calls_total": 7, "draining": True}
    assert sum_health([a, b]) == {
        "status": "ok",
        "active_calls": 3,
        "calls_total": 12,
        "draining": True,
        "workers": 2,
    }
    one = (
        "# TYPE ivr_bridge_active_calls gauge\nivr_bridge_active_calls 2\n"
        "ivr_bridge_event_loop_lag_ms 40\n"
        'ivr_bridge_calls_ended_total{reason="stop"} 3\n'
    )
    two = (
        "# TYPE ivr_bridge_active_calls gauge\nivr_bridge_active_calls 1\n"
        "ivr_bridge_event_loop_lag_ms 90\n"
        'ivr_bridge_calls_ended_total{reason="stop"} 4\n'
        'ivr_bridge_calls_ended_total{reason="error"} 1\n'
    )
    assert sum_metrics([one, two]).splitlines() == [
        "# TYPE ivr_bridge_active_calls gauge",
        "ivr_bridge_active_calls 3",
        "ivr_bridge_event_loop_lag_ms 90",  # a level: the worst worker's
        'ivr_bridge_calls_ended_total{reason="stop"} 7',
        'ivr_bridge_calls_ended_total{reason="error"} 1',
    ]
    assert worker_count(3) == 3 and worker_count(0) == (os.cpu_count() or 1)


async def _get(url: str) -> str:
    def fetch() -> str:
        with urllib.request.urlopen(url) as resp:
            return str(resp.read().decode())

    return await asyncio.to_thread(fetch)


async def _read_port(proc: asyncio.subprocess.Process) -> int:
    assert proc.stderr is not None
    while line := (await proc.stderr.readline()).decode():
        if "workers_starting" in line:
            found = re.search(r"port=(\d+)", line)
            assert found is not None
            return int(found.group(1))
    raise AssertionError("the server never said which port it listens on")


async def test_two_workers_serve_one_port_as_one_service() -> None:
    env = {
        **os.environ,
        "IVR_BRIDGE_SERVER_WORKERS": "2",
        "IVR_BRIDGE_EMBEDDED_ENGINE": "tones",
        "IVR_BRIDGE_SPEECHKIT_LANGUAGES": "en-US",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ivr_bridge",
        "serve",
        "--port",
        "0",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        port = await _read_port(proc)
        assert proc.stderr is not None
        drain = asyncio.create_task(proc.stderr.read())  # keep the pipe from filling
        base = f"http://127.0.0.1:{port}"
        health: dict[str, Any] = {}
        while health.get("workers") != 2:  # both workers up and publishing
            try:
                health = json.loads(await _get(f"{base}/healthz"))
            except OSError:
                await asyncio.sleep(0.2)
        pcm = word_pcm(988, 300) + silence_pcm(1500)
        calls = [
            simulate_pcm(f"ws://127.0.0.1:{port}/twilio", pcm, trailing_silence_s=0)
            for _ in range(4)
        ]
        reports = await asyncio.gather(*calls)
        assert [r.close_code for r in reports] == [1000] * 4
        # Whichever worker answers, the figures are the service's: all four calls.
        while json.loads(await _get(f"{base}/healthz"))["calls_total"] < 4:
            await asyncio.sleep(0.2)
        for _ in range(3):
            metrics = await _get(f"{base}/metrics")
            assert "ivr_bridge_calls_started_total 4" in metrics
            assert json.loads(await _get(f"{base}/healthz"))["calls_total"] == 4
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
        log = (await drain).decode()
        assert log.count("drain_started") == 2
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
