from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
from pathlib import Path
from typing import Any

import httpx

from ivr_bridge.errors import SinkError
from ivr_bridge.events.bus import EventBus
from ivr_bridge.events.console import CallbackSink, ConsoleSink, render
from ivr_bridge.events.jsonl import JsonlSink
from ivr_bridge.events.webhook import WebhookSink, sign
from ivr_bridge.model import EVENT_SCHEMA, UtteranceEvent


def event(seq: int, kind: str = "final", **data: Any) -> UtteranceEvent:
    return UtteranceEvent(
        type=kind,
        call_id="call_x",
        channel="caller",
        seq=seq,
        call_ms=1500 * seq,
        wall_time=1_700_000_000.25,
        data=data or {"text": "hello", "start_ms": 100, "end_ms": 900},
    )


def test_event_json_shape() -> None:
    j = event(3).to_json()
    assert j["schema"] == EVENT_SCHEMA
    assert j["id"].startswith("evt_") and len(j["id"]) == 36
    assert j["time"] == "2023-11-14T22:13:20.250Z"
    assert {k: j[k] for k in ("type", "call_id", "channel", "seq", "call_ms")} == {
        "type": "final",
        "call_id": "call_x",
        "channel": "caller",
        "seq": 3,
        "call_ms": 4500,
    }


async def test_jsonl_sink_appends_lines(tmp_path: Path) -> None:
    bus = EventBus()
    bus.add_sink(JsonlSink(tmp_path / "out" / "events.jsonl"))
    for i in range(1, 4):
        bus.publish(event(i))
    await bus.aclose()
    lines = (tmp_path / "out" / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]


async def test_slow_sink_drops_are_counted_and_others_unaffected() -> None:
    got: list[int] = []

    class Slow:
        name = "slow"

        async def deliver(self, e: UtteranceEvent) -> None:
            await asyncio.sleep(10)

        async def aclose(self) -> None:
            return None

    bus = EventBus(queue_size=10)
    bus.add_sink(Slow())
    bus.add_sink(CallbackSink(lambda e: got.append(e.seq)))
    for i in range(1, 51):
        bus.publish(event(i))
        await asyncio.sleep(0)  # the fast sink keeps up; the slow one cannot
    await asyncio.sleep(0.05)
    stats = bus.stats()
    assert stats["slow"].dropped_queue_full >= 39
    assert got == list(range(1, 51))
    await bus.aclose(timeout=0.1)


async def test_partials_can_be_filtered() -> None:
    got: list[str] = []
    bus = EventBus(include_partials=False)
    bus.add_sink(CallbackSink(lambda e: got.append(e.type)))
    bus.publish(event(1, "partial", text="he"))
    bus.publish(event(2))
    await bus.aclose()
    assert got == ["final"]


async def test_console_rendering() -> None:
    out = io.StringIO()
    sink = ConsoleSink(out, include_partials=False)
    await sink.deliver(event(1, "partial", text="x"))
    await sink.deliver(event(1))
    await sink.deliver(event(2, "dtmf", digit="5"))
    await sink.deliver(event(3, "eou", end_ms=5))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("00:01.500 caller final") and "'hello'" in lines[0]
    assert "digit=5" in lines[1]
    assert "audio_gap" in render(event(4, "audio_gap", from_ms=1, to_ms=2))


def _signature_ok(secret: str, headers: httpx.Headers, body: bytes) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return headers["webhook-signature"] == "v1," + expected


async def test_webhook_retries_then_delivers_signed() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            return httpx.Response(503, headers={"retry-after": "0"})
        return httpx.Response(204)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    sink = WebhookSink("https://hooks.test/x", secret=secret, backoff_s=0.001, client=client)
    ev = event(1)
    await sink.deliver(ev)
    assert len(calls) == 3
    assert {c.headers["webhook-id"] for c in calls} == {ev.id}
    assert all(_signature_ok(secret, c.headers, c.content) for c in calls)
    assert json.loads(calls[-1].content)["id"] == ev.id
    assert "whsec" not in repr(sink)
    await client.aclose()


async def test_webhook_gives_up_and_refuses() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/gone":
            return httpx.Response(410)
        raise httpx.ConnectError("refused")

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    sink = WebhookSink("https://hooks.test/down", max_attempts=3, backoff_s=0.001, client=client)
    try:
        await sink.deliver(event(1))
    except SinkError as exc:
        assert "3 attempts" in str(exc) and "ConnectError" in str(exc)
    else:
        raise AssertionError("expected SinkError")
    gone = WebhookSink("https://hooks.test/gone", client=client)
    try:
        await gone.deliver(event(1))
    except SinkError as exc:
        assert "410" in str(exc)
    else:
        raise AssertionError("expected SinkError")
    await client.aclose()


def test_sign_accepts_raw_secret() -> None:
    assert sign("plain", "evt_1", 1, b"{}").startswith("v1,")
