"""The command line as a user runs it: serve, simulate, SIGTERM; check-config; bad config."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.conftest import SAMPLE
from tests.test_config import DIALECT_SECRETS

CLI = [sys.executable, "-m", "ivr_bridge"]


def _wait_for(proc: subprocess.Popen[str], pattern: str, seen: list[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if re.search(pattern, line):
            return line
    raise AssertionError(f"{pattern!r} not seen in: {''.join(seen)[-2000:]}")


def test_serve_simulate_and_sigterm(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    env = {
        **os.environ,
        "IVR_BRIDGE_SPEECHKIT_LANGUAGES": "en-US",
        "IVR_BRIDGE_EVENTS_STDOUT": "true",
        "IVR_BRIDGE_EVENTS_INCLUDE_PARTIALS": "false",
        # --fast sends 26 s of audio at once; on a loaded machine PocketSphinx needs more than
        # the default 5 s to finish decoding it after hang-up.
        "IVR_BRIDGE_SESSION_DRAIN_TIMEOUT_S": "30",
    }
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", "0", "--events-jsonl", str(events)],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    seen: list[str] = []
    try:
        _wait_for(proc, "embedded_recognizer_started", seen, 60)
        line = _wait_for(proc, "bridge_listening", seen, 30)
        port = int(re.search(r"port=(\d+)", line).group(1))  # type: ignore[union-attr]
        sim = subprocess.run(
            [*CLI, "simulate", "--url", f"ws://127.0.0.1:{port}/twilio", "--fast", str(SAMPLE)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert sim.returncode == 0, sim.stderr
        assert "1000" in sim.stdout  # the bridge closed the call normally
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = events.read_text().splitlines() if events.exists() else []
            if lines and json.loads(lines[-1])["type"] == "call_ended":
                break
            time.sleep(0.2)
        kinds = [json.loads(line)["type"] for line in lines]
        assert kinds[0] == "call_started" and kinds[-1] == "call_ended" and "final" in kinds
        # logrotate's SIGHUP must not end the service (it asks the sinks to reopen).
        proc.send_signal(signal.SIGHUP)
        _wait_for(proc, "sighup_received", seen, 30)
        _wait_for(proc, "sinks_reopen", seen, 30)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert proc.stderr is not None and proc.stdout is not None
    log = "".join(seen) + proc.stderr.read()
    printed = proc.stdout.read().splitlines()
    assert any(" call_started " in line for line in printed)
    assert any(" final " in line for line in printed)
    assert printed[-1].split()[2] == "call_ended"
    assert "call_ended" in log and "drain_started" in log
    # Transcripts never reach the log.
    assert "internet" not in log and "account" not in log


def test_check_config_hides_secrets(tmp_path: Path) -> None:
    env = {**os.environ, "IVR_BRIDGE_SPEECHKIT_API_KEY": "AQVN-super-secret"}
    env.update(DIALECT_SECRETS, IVR_BRIDGE_DIALECTS_TWILIO_AUTH_TOKEN="twilio-super-secret")
    out = subprocess.run(
        [*CLI, "check-config", "--config", "configs/production.toml"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["speechkit"]["api_key"] == "[set]"
    assert data["dialects"]["twilio"]["secrets"] == {"auth_token": "[set]"}
    assert "super-secret" not in out.stdout + out.stderr


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[session]\nkeepalive_interval_ms = 6000\n")
    out = subprocess.run(
        [*CLI, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "session.keepalive_interval_ms" in out.stderr


def _start_failure(args: list[str], env: dict[str, str] | None = None) -> str:
    """Run ``serve`` expecting a startup failure; returns the one line that names it."""
    out = subprocess.run(
        [*CLI, "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "IVR_BRIDGE_EMBEDDED_ENGINE": "tones", **(env or {})},
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    # No stray exception lines either (e.g. a gRPC server collected after the loop closed).
    assert not re.search(r"^\w+(Error|Exception|Warning)\b", out.stderr, re.M), out.stderr
    causes = [
        line
        for line in out.stderr.splitlines()
        if line.startswith(("cannot start:", "configuration error:"))
    ]
    assert len(causes) == 1, out.stderr
    assert out.stderr.rstrip().splitlines()[-1] == causes[0]  # the last word, after the logs
    return causes[0]


def test_events_file_not_writable_is_one_line(tmp_path: Path) -> None:
    line = _start_failure(["--port", "0", "--events-jsonl", str(tmp_path)])
    assert line.startswith("cannot start: events.jsonl:") and "Is a directory" in line
    blocker = tmp_path / "plain-file"
    blocker.write_text("")
    line = _start_failure(["--port", "0", "--events-jsonl", str(blocker / "events.jsonl")])
    assert "events.jsonl" in line and "not a directory" in line


def test_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _start_failure(["--port", str(port)])
    assert line == f"cannot start: server.port: 127.0.0.1:{port} is already in use"


def test_bad_host_is_one_line() -> None:
    line = _start_failure(["--port", "0", "--host", "no-such-host.invalid"])
    assert line == "cannot start: server.host: cannot resolve 'no-such-host.invalid'"
    line = _start_failure(["--port", "0", "--host", "192.0.2.1"])  # TEST-NET: not ours
    assert line == "cannot start: server.host: '192.0.2.1' is not an address of this machine"


def test_unknown_engine_is_one_line() -> None:
    line = _start_failure(["--port", "0"], env={"IVR_BRIDGE_EMBEDDED_ENGINE": "nope"})
    assert line.startswith("cannot start: embedded.engine: unknown engine 'nope'")


def test_out_of_range_setting_is_one_line(tmp_path: Path) -> None:
    line = _start_failure(["--port", "0"], env={"IVR_BRIDGE_SERVER_MAX_CALLS": "0"})
    assert line == "configuration error: server.max_calls: must be 1..100000"
    cfg = tmp_path / "c.toml"
    cfg.write_text("[session]\nrotate_soft_s = 1\nrotate_hard_s = 1\n")
    line = _start_failure(["--config", str(cfg)])
    assert line.startswith("configuration error: session.rotate_hard_s:")


def test_check_config_names_an_unknown_engine() -> None:
    out = subprocess.run(
        [*CLI, "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "IVR_BRIDGE_EMBEDDED_ENGINE": "nope"},
    )
    assert out.returncode == 2
    assert out.stderr.startswith("configuration error: embedded.engine: unknown engine 'nope'")
    assert len(out.stderr.splitlines()) == 1
