"""Operations against a live bridge (tones engine): per-component /healthz, /readyz after a
recognizer outage, a failing sink reported, TLS on the listener with a self-signed cert."""

from __future__ import annotations

import asyncio
import errno
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog
from websockets.asyncio.client import connect

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge.app import BridgeApp
from ivr_bridge.config import EventSettings, Settings
from ivr_bridge.errors import ConfigError
from ivr_bridge.simulators.twilio import TwilioStreamEncoder
from tests.integration.conftest import local_settings
from tests.tls import self_signed

Get = Callable[[str], tuple[int, dict[str, Any]]]


def getter(base: str, context: ssl.SSLContext | None = None) -> Get:
    def get(path: str) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(base + path, timeout=5, context=context) as resp:
                return int(resp.status), json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return int(err.code), json.loads(err.read())

    return get


async def poll(get: Get, path: str, done: Callable[[int, dict[str, Any]], bool]) -> dict[str, Any]:
    """GET ``path`` until ``done(status, body)``; the last body."""
    for _ in range(300):
        status, body = await asyncio.to_thread(get, path)
        if done(status, body):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never reached the expected state: {status} {body}")


def settings(tmp_path: Path, **server: Any) -> Settings:
    base = local_settings("tones")
    return replace(
        base,
        server=replace(base.server, **server),
        embedded=replace(base.embedded, workers=0),
        events=EventSettings(jsonl=str(tmp_path / "events.jsonl")),
    )


@pytest.fixture
async def started() -> AsyncIterator[list[BridgeApp]]:
    apps: list[BridgeApp] = []
    yield apps
    for app in apps:
        await app.stop()


async def test_healthz_names_each_component_and_readyz_follows_the_recognizer(
    tmp_path: Path, started: list[BridgeApp]
) -> None:
    app = BridgeApp(settings(tmp_path, ready_recognizer_grace_s=0.5))
    started.append(app)
    await app.start()
    get = getter(f"http://127.0.0.1:{app.port}")
    body = await poll(
        get, "/healthz", lambda s, b: b["components"]["recognizer"]["state"] == "READY"
    )
    assert body["status"] == "ok"
    assert body["components"]["sink:jsonl"]["status"] == "ok"
    assert (await asyncio.to_thread(get, "/readyz"))[0] == 200
    assert app.embedded is not None
    await app.embedded.stop()  # the recognizer goes away
    app.embedded = None
    body = await poll(get, "/healthz", lambda s, b: b["status"] == "degraded")
    # Liveness stays 200 during an outage: the body says degraded and names the component.
    assert "version" in body and body["components"]["recognizer"]["status"] == "unreachable"
    body = await poll(get, "/readyz", lambda s, b: s == 503)
    assert body == {"ready": False, "why": "recognizer unreachable"}


async def test_zero_grace_keeps_a_single_replica_ready(
    tmp_path: Path, started: list[BridgeApp]
) -> None:
    app = BridgeApp(settings(tmp_path, ready_recognizer_grace_s=0))
    started.append(app)
    await app.start()
    get = getter(f"http://127.0.0.1:{app.port}")
    assert app.embedded is not None
    await app.embedded.stop()
    app.embedded = None
    await poll(get, "/healthz", lambda s, b: b["status"] == "degraded")
    assert (await asyncio.to_thread(get, "/readyz"))[0] == 200


async def test_a_failing_sink_is_reported(tmp_path: Path, started: list[BridgeApp]) -> None:
    app = BridgeApp(settings(tmp_path))
    started.append(app)
    await app.start()
    get = getter(f"http://127.0.0.1:{app.port}")
    events = tmp_path / "events.jsonl"
    events.unlink()
    events.mkdir()  # the path can no longer be written: every delivery fails
    async with connect(app.url()) as ws:
        enc = TwilioStreamEncoder()
        for message in (enc.connected(), enc.start(), enc.stop()):
            await ws.send(message)
        await ws.wait_closed()
    body = await poll(get, "/healthz", lambda s, b: b["status"] == "degraded")
    sink = body["components"]["sink:jsonl"]
    assert sink["status"] == "failing" and sink["write_errors"] >= 1


async def test_tls_listener_serves_calls_and_health(
    tmp_path: Path, started: list[BridgeApp]
) -> None:
    cert, key, _ = self_signed(tmp_path)
    s = settings(tmp_path, host="localhost", tls_cert=str(cert), tls_key=str(key))
    app = BridgeApp(s)
    started.append(app)
    await app.start()
    assert app.url().startswith("wss://localhost:")
    client = ssl.create_default_context(cafile=str(cert))
    status, body = await asyncio.to_thread(
        getter(f"https://localhost:{app.port}", client), "/healthz"
    )
    assert status == 200 and body["version"]
    async with connect(app.url(), ssl=client) as ws:
        enc = TwilioStreamEncoder()
        for message in (enc.connected(), enc.start(), enc.stop()):
            await ws.send(message)
        await ws.wait_closed()
    assert ws.close_code == 1000
    with pytest.raises(ssl.SSLError):  # a client that does not trust the cert gets nowhere
        async with connect(app.url(), ssl=ssl.create_default_context()):
            pass


async def test_tls_files_that_cannot_be_loaded_name_the_setting(
    tmp_path: Path, started: list[BridgeApp]
) -> None:
    missing = str(tmp_path / "nope.pem")
    app = BridgeApp(settings(tmp_path, tls_cert=missing, tls_key=missing))
    with pytest.raises(ConfigError) as info:
        await app.start()
    assert info.value.key == "server.tls_cert"


async def test_fd_exhaustion_logs_one_line_not_a_traceback_per_accept(
    tmp_path: Path, started: list[BridgeApp]
) -> None:
    """asyncio reports each failed accept() through the loop's exception handler, with the
    OSError; the bridge turns a storm of them into one counted line per 10 s."""
    app = BridgeApp(settings(tmp_path))
    started.append(app)
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    await app.start()
    assert loop.get_exception_handler() is not before
    emfile = OSError(errno.EMFILE, "Too many open files")
    with structlog.testing.capture_logs() as logs:
        for _ in range(7000):
            loop.call_exception_handler(
                {"message": "socket.accept() out of system resource", "exception": emfile}
            )
    lines = [entry for entry in logs if entry["event"] == "fd_limit_reached"]
    assert len(lines) == 1 and len(logs) == 1
    assert app.server is not None
    assert app.server.metrics.connections_refused == {"fd_limit": 7000}
    status, _ = await asyncio.to_thread(getter(f"http://127.0.0.1:{app.port}"), "/healthz")
    assert status == 200
    # stop() puts back the handler the loop had before start().
    await app.stop()
    started.clear()
    assert loop.get_exception_handler() is before


async def _short_call(app: BridgeApp) -> None:
    async with connect(app.url()) as ws:
        enc = TwilioStreamEncoder()
        for message in (enc.connected(), enc.start(), enc.stop()):
            await ws.send(message)
        await ws.wait_closed()


def _call_ids(path: Path) -> set[str]:
    return {json.loads(line)["call_id"] for line in path.read_text().splitlines()}


async def test_sighup_reopen_after_logrotate_moves_writes_to_the_new_file(
    tmp_path: Path, started: list[BridgeApp]
) -> None:
    app = BridgeApp(settings(tmp_path))
    started.append(app)
    await app.start()
    events, rotated = tmp_path / "events.jsonl", tmp_path / "events.jsonl.1"
    await _short_call(app)
    await poll_file(events, 1)
    events.rename(rotated)  # logrotate's rename, then its postrotate SIGHUP
    assert await app.reopen_sinks()
    assert events.exists() and events.read_text() == ""
    await _short_call(app)
    await poll_file(events, 1)
    assert len(_call_ids(rotated)) == 1 and len(_call_ids(events)) == 1
    assert _call_ids(rotated).isdisjoint(_call_ids(events))


async def poll_file(path: Path, calls: int) -> None:
    """Until ``calls`` call_ended lines are in the file (the sink writes on its own queue)."""
    for _ in range(300):
        if path.exists():
            ended = [line for line in path.read_text().splitlines() if '"call_ended"' in line]
            if len(ended) >= calls:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path.name} never had {calls} call_ended lines")
