"""The webhook sink against a real loopback receiver: signatures (checked by the Standard
Webhooks reference library), retries, the circuit breaker, 410, the dead-letter file, and an
endpoint down for two minutes of accelerated time."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog
from standardwebhooks import Webhook

from ivr_bridge.clock import ScaledClock
from ivr_bridge.errors import SinkError
from ivr_bridge.events.breaker import BreakerConfig
from ivr_bridge.events.bus import EventBus
from ivr_bridge.events.deadletter import DeadLetterFile
from ivr_bridge.events.webhook import WebhookSink, sign
from ivr_bridge.model import UtteranceEvent
from tests.markers import realtime

from .factories import make
from .receiver import Receiver

pytestmark = realtime

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def ev(call: str, seq: int) -> UtteranceEvent:
    return make(call, seq, "final", channel="caller", text="héllo")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


async def test_signatures_verify_with_the_reference_library(receiver: Receiver) -> None:
    sink = WebhookSink(receiver.url, secret=SECRET)
    await sink.deliver(ev("c", 1))
    await sink.deliver(ev("c", 2))
    await sink.aclose()
    verifier = Webhook(SECRET)
    for got in receiver.got:
        payload = verifier.verify(got.body, got.headers)
        assert payload["id"] == got.headers["webhook-id"]
        assert payload["data"]["text"] == "héllo"
    assert [g.event["seq"] for g in receiver.got] == [1, 2]
    assert "whsec" not in repr(sink)


async def test_retries_keep_the_id(receiver: Receiver) -> None:
    answers = iter([503, 429, 204])
    receiver.answer = lambda _r: next(answers)
    clock = ScaledClock(20.0)
    sink = WebhookSink(receiver.url, secret=SECRET, clock=clock)
    event = ev("c", 1)
    await sink.deliver(event)
    await sink.aclose()
    assert receiver.requests == 3 and sink.retries == 2
    assert receiver.got[0].headers["webhook-id"] == event.id
    assert len(receiver.got) == 1


async def test_other_client_errors_refuse_only_that_event(receiver: Receiver) -> None:
    receiver.answer = lambda r: 400 if r.event["seq"] == 1 else 204
    sink = WebhookSink(receiver.url)
    with pytest.raises(SinkError, match="HTTP 400"):
        await sink.deliver(ev("c", 1))
    await sink.deliver(ev("c", 2))
    await sink.aclose()
    assert receiver.requests == 2 and sink.health()["state"] == "closed"


async def test_gone_disables_the_endpoint_with_a_log_line(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.answer = lambda _r: 410
    dead = DeadLetterFile(tmp_path / "dead.jsonl")
    bus = EventBus(dead_letter=dead)
    sink = WebhookSink(receiver.url)
    bus.add_sink(sink)
    with structlog.testing.capture_logs() as logs:
        for seq in range(1, 6):
            bus.publish(ev("c", seq))
        await bus.aclose()
    assert receiver.requests == 1
    assert [e["event"] for e in logs].count("webhook_endpoint_disabled") == 1
    assert sink.health()["state"] == "disabled"
    records = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert sorted(r["event"]["seq"] for r in records) == [1, 2, 3, 4, 5]


async def test_retries_are_bounded_in_total_time_then_dead_lettered(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.answer = lambda _r: 503
    clock = ScaledClock(200.0)
    dead = DeadLetterFile(tmp_path / "dead.jsonl")
    bus = EventBus(clock=clock, dead_letter=dead)
    sink = WebhookSink(receiver.url, clock=clock, retry_total_s=60.0, backoff_max_s=5.0)
    bus.add_sink(sink)
    stats = bus.stats()[sink.name]
    bus.publish(ev("c", 1))
    await bus.aclose(timeout=120.0)
    assert stats.dead_lettered == 1 and stats.delivered == 0
    record = json.loads((tmp_path / "dead.jsonl").read_text())
    assert record["sink"] == "webhook" and "gave up" in record["reason"]
    # With the breaker opening after 5 failures, 60 s of retries is a handful of requests.
    assert 2 <= receiver.requests <= 25


async def test_endpoint_down_two_minutes_then_back_gets_everything_in_order(
    receiver: Receiver,
) -> None:
    clock = ScaledClock(100.0)
    port = receiver.port
    receiver.refuse = True
    bus = EventBus(clock=clock)
    # A generous retry budget: the machine may be loaded, and 100x time magnifies stalls.
    sink = WebhookSink(
        receiver.url, secret=SECRET, clock=clock, max_in_flight=8, retry_total_s=3600.0
    )
    bus.add_sink(sink)
    stats = bus.stats()[sink.name]
    sent: dict[str, UtteranceEvent] = {}
    calls = [f"call{i}" for i in range(5)]
    down_until = clock.now() + 120.0
    seq = 0
    while clock.now() < down_until:  # events keep coming during the outage
        seq += 1
        for call in calls:
            e = ev(call, seq)
            sent[e.id] = e
            bus.publish(e)
        await clock.sleep(5.0)
    assert stats.delivered == 0 and sink.health()["state"] in ("open", "half_open")
    await receiver.stop()  # the host comes back: a fresh listener on the same port
    back = Receiver(answer=lambda _r: 204)
    await back.start(port)
    try:
        await bus.aclose(timeout=3600.0)  # the drain period, long enough for a slow machine
    finally:
        await back.stop()
    assert stats.delivered == len(sent) and stats.dead_lettered == stats.lost == 0
    order: dict[str, list[int]] = defaultdict(list)
    bodies: dict[str, bytes] = {}
    verifier = Webhook(SECRET)
    for got in back.got:
        verifier.verify(got.body, got.headers)
        msg_id = got.headers["webhook-id"]
        assert bodies.setdefault(msg_id, got.body) == got.body  # duplicates: same id, same body
        if order[got.event["call_id"]][-1:] != [got.event["seq"]]:
            order[got.event["call_id"]].append(got.event["seq"])
    assert set(bodies) == set(sent)
    for call in calls:
        assert order[call] == list(range(1, seq + 1))


async def test_a_dead_endpoint_costs_another_endpoint_nothing(receiver: Receiver) -> None:
    clock = ScaledClock(100.0)
    dead = await Receiver(refuse=True).start()
    bus = EventBus(clock=clock)
    slow_death = WebhookSink(dead.url, name="dead", clock=clock, breaker=BreakerConfig(threshold=3))
    bus.add_sink(slow_death)
    bus.add_sink(WebhookSink(receiver.url, name="alive", clock=clock))
    for seq in range(1, 21):
        for call in ("a", "b", "c"):
            bus.publish(ev(call, seq))
    stats = bus.stats()
    for _ in range(2000):
        if stats["alive"].delivered == 60:
            break
        await asyncio.sleep(0.002)
    assert stats["alive"].delivered == 60
    assert stats["dead"].delivered == 0 and slow_death.health()["circuit_opened"] >= 1
    # The breaker keeps the dead endpoint to a few probes instead of 60 events x retries.
    assert dead.requests < 20
    await bus.aclose(timeout=0.5)
    await dead.stop()
    assert stats["dead"].lost == 60


def test_sign_accepts_raw_secret() -> None:
    assert sign("plain", "evt_1", 1, b"{}").startswith("v1,")
