"""examples/nats_worker.py end to end: a real nats-server, two `ivr-bridge serve` processes
(embedded recognizer, tones engine), one simulated call on each, and one worker answering
both calls' key presses with prompts through the bridge that owns each call."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr_bridge.simulate import simulate_pcm
from tests.events.test_nats import nats_url  # noqa: F401  (the nats-server fixture)
from tests.ports import free_tcp_port

from .examples import load_example

worker_module = load_example("nats_worker")


def bridge_config(tmp_path: Path, name: str, port: int, nats: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f"""
[server]
port = {port}
drain_timeout_s = 5.0
[speechkit]
languages = ["en-US"]
[embedded]
engine = "tones"
workers = 0
[events]
nats_url = "{nats}"
[logging]
level = "warning"
"""
    )
    return path


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.fixture
def two_bridges(tmp_path: Path, nats_url: str) -> Iterator[list[int]]:  # noqa: F811
    ports = [free_tcp_port(), free_tcp_port()]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ivr_bridge", "serve", "--config",
             str(bridge_config(tmp_path, f"bridge{i}", port, nats_url))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i, port in enumerate(ports)
    ]  # fmt: skip
    try:
        for proc, port in zip(procs, ports, strict=True):
            for _ in range(600):
                if healthy(port):
                    break
                if proc.poll() is not None:
                    why = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    raise RuntimeError(f"bridge exited: {why}")
                time.sleep(0.05)
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def media_frames(received: list[str]) -> int:
    return sum(1 for f in received if json.loads(f).get("event") == "media")


async def test_one_worker_answers_both_bridges_calls(
    two_bridges: list[int],
    nats_url: str,  # noqa: F811
) -> None:
    answers: list[Any] = []
    worker = worker_module.Worker(nats_url, on_answer=answers.append)
    running = asyncio.create_task(worker.run())
    silence = bytes(2 * 8000 * 3)
    calls = [
        simulate_pcm(f"ws://127.0.0.1:{port}/twilio", silence, dtmf=[(0.3, digit), (1.2, "#")])
        for port, digit in zip(two_bridges, ("1", "2"), strict=True)
    ]
    reports = await asyncio.wait_for(asyncio.gather(*calls), 60)
    worker.stop()
    await asyncio.wait_for(running, 10)
    by_call: dict[str, list[tuple[str, str, bool]]] = {}
    for a in answers:
        by_call.setdefault(a.call_id, []).append((a.digit, a.command, a.ok))
    assert sorted(by_call.values()) == [
        [("1", "play", True), ("#", "hangup", True)],
        [("2", "play", True), ("#", "hangup", True)],
    ]
    for report in reports:
        assert media_frames(report.received) > 0  # the prompt reached this caller
        assert report.closed_by_server  # and the hangup ended it from the bridge
