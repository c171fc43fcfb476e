"""The front door on a real socket: refused upgrades are HTTP errors, counted, logged without
the secret, and open no recognition session; an authenticated call goes through."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from ivr_bridge.call import CallOptions
from ivr_bridge.dialects.base import DialectSettings
from ivr_bridge.dialects.registry import build_routes
from ivr_bridge.events.bus import EventBus
from ivr_bridge.events.console import CallbackSink
from ivr_bridge.model import UtteranceEvent
from ivr_bridge.recognition.base import SessionConfig
from ivr_bridge.server import BridgeServer
from ivr_bridge.simulate import simulate_pcm
from ivr_bridge.simulators.base import ClientAuth
from tests.fakes import FakeRecognizer, silence_pcm, word_pcm

TOKEN = "tw-secret-0042"


@pytest.fixture
async def server() -> AsyncIterator[tuple[BridgeServer, FakeRecognizer, list[UtteranceEvent]]]:
    rec = FakeRecognizer()
    events: list[UtteranceEvent] = []
    bus = EventBus()
    bus.add_sink(CallbackSink(events.append))
    routes = build_routes(
        {
            "twilio": DialectSettings(auth="signature", secrets={"auth_token": TOKEN}),
            "telnyx": DialectSettings(
                auth="token",
                secrets={"token": TOKEN},
                allowed_origins=("https://console.example",),
            ),
            "plivo": DialectSettings(enabled=False),
        }
    )
    srv = BridgeServer(
        routes=routes,
        recognizer=rec,
        bus=bus,
        options=CallOptions(session=SessionConfig(sample_rate=8000)),
        port=0,
    )
    await srv.start()
    yield srv, rec, events
    await srv.drain(0)
    await bus.aclose()


async def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        async with connect(url, additional_headers=headers or {}, open_timeout=5):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_refused_upgrades_are_http_errors_counted_and_open_nothing(
    server: tuple[BridgeServer, FakeRecognizer, list[UtteranceEvent]],
) -> None:
    srv, rec, events = server
    base = f"ws://127.0.0.1:{srv.port}"
    forged = RequestValidator("wrong").compute_signature(f"{base}/twilio", {})
    wrong_url = RequestValidator(TOKEN).compute_signature(f"{base}/elsewhere", {})
    with structlog.testing.capture_logs() as logs:
        assert await status_of(f"{base}/twilio") == 401
        assert await status_of(f"{base}/twilio", {"X-Twilio-Signature": forged}) == 403
        assert await status_of(f"{base}/twilio", {"X-Twilio-Signature": wrong_url}) == 403
        assert await status_of(f"{base}/twilio?token={TOKEN}") == 400
        assert await status_of(f"{base}/telnyx", {"Authorization": "Bearer nope"}) == 403
        browser = {"Origin": "https://evil.example", "Authorization": f"Bearer {TOKEN}"}
        assert await status_of(f"{base}/telnyx", browser) == 403
        assert await status_of(f"{base}/plivo") == 404  # disabled
    assert rec.opened == 0 and srv.active_calls == 0 and events == []
    refusals = [log for log in logs if log["event"] == "upgrade_refused"]
    assert len(refusals) == 6
    assert TOKEN not in repr(logs) and forged not in repr(logs)
    metrics = await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/metrics").read().decode()
    )
    line = 'ivr_bridge_upgrades_refused_total{dialect="twilio",reason="signature mismatch"} 2'
    assert line in metrics
    assert 'reason="origin not allowed"} 1' in metrics
    assert 'dialect="twilio",reason="signature required"} 1' in metrics


async def test_signed_call_goes_through(
    server: tuple[BridgeServer, FakeRecognizer, list[UtteranceEvent]],
) -> None:
    srv, rec, events = server
    pcm = word_pcm(5, 300) + silence_pcm(600)
    auth = ClientAuth("signature", {"auth_token": TOKEN})
    report = await simulate_pcm(
        f"ws://127.0.0.1:{srv.port}/twilio", pcm, fast=True, auth=auth, trailing_silence_s=0
    )
    assert report.close_code == 1000
    for _ in range(200):
        if any(e.type == "call_ended" for e in events):
            break
        await asyncio.sleep(0.01)
    assert rec.opened == 1
    assert events[0].type == "call_started"


async def test_allowed_origin_and_token_header(
    server: tuple[BridgeServer, FakeRecognizer, list[UtteranceEvent]],
) -> None:
    srv, rec, _ = server
    auth = ClientAuth("token", {"token": TOKEN})
    report = await simulate_pcm(
        f"ws://127.0.0.1:{srv.port}/telnyx",
        silence_pcm(200),
        fast=True,
        auth=auth,
        dialect="telnyx",
        trailing_silence_s=0,
    )
    assert report.close_code == 1000 and report.dialect == "telnyx"
    headers: dict[str, Any] = {
        "Origin": "https://console.example",
        "x-telnyx-streaming-auth-token": TOKEN,
    }
    assert await status_of(f"ws://127.0.0.1:{srv.port}/telnyx", headers) == 101
