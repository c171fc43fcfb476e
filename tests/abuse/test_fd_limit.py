"""At the file-descriptor limit: `ivr-bridge serve` under a low RLIMIT_NOFILE, flooded with idle
TCP connections, says so in one rate-limited line (no traceback storm) and serves again once
the flood is gone."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "ivr_bridge"]
FD_LIMIT = 96  # the bridge starts with about 40 open


def _healthz(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
        return int(resp.status)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_NOFILE on Linux")
def test_fd_exhaustion_is_one_quiet_line_and_service_recovers(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "IVR_BRIDGE_EMBEDDED_ENGINE": "tones",
        "IVR_BRIDGE_EMBEDDED_WORKERS": "0",
        "IVR_BRIDGE_SERVER_OPEN_TIMEOUT_S": "2",
        # One bridge process: the rate limit of the log line is per process.
        "IVR_BRIDGE_SERVER_WORKERS": "1",
    }
    serve = [*CLI, "serve", "--port", "0", "--events-jsonl", str(tmp_path / "e.jsonl")]
    proc = subprocess.Popen(
        # The shell lowers the soft limit for the bridge alone, then becomes it.
        ["sh", "-c", f'ulimit -n {FD_LIMIT} && exec "$@"', "sh", *serve],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: list[str] = []
    stderr = proc.stderr
    assert stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(stderr.readline, "")))
    reader.start()
    flood: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while not any("bridge_listening" in line for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            time.sleep(0.05)
        line = next(line for line in lines if "bridge_listening" in line)
        port = int(re.search(r"port=(\d+)", line).group(1))  # type: ignore[union-attr]
        for _ in range(2 * FD_LIMIT):  # idle connections: far more than the bridge may open
            flood.append(socket.create_connection(("127.0.0.1", port)))
        deadline = time.monotonic() + 30
        while not any("fd_limit_reached" in line for line in lines):
            assert time.monotonic() < deadline, "".join(lines[-20:])
            time.sleep(0.1)
        time.sleep(3)  # three more accept retries (asyncio retries once a second)
        for sock in flood:
            sock.close()
        flood.clear()
        deadline = time.monotonic() + 30
        status = 0
        while status != 200 and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                status = _healthz(port)
            time.sleep(0.2)
        assert status == 200  # serving again once descriptors are free
    finally:
        for sock in flood:
            sock.close()
        proc.terminate()
        proc.wait(timeout=60)
        reader.join(timeout=10)
    text = "".join(lines)
    assert "Traceback" not in text
    assert sum("fd_limit_reached" in line for line in lines) == 1
