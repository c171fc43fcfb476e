"""A bug while handling one pushed message ends that call (1011, internal_error), not others.

On the media path the call handles each message inside the transport's receive callback
(media_connection.py); an exception there must not escape into the event loop's transport
machinery, where it would kill the connection without a close frame or a call_ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ivr_bridge.call import CallOptions
from ivr_bridge.dialects.base import DialectSettings, UpgradeRequest
from ivr_bridge.dialects.registry import Route, build_routes
from ivr_bridge.dialects.twilio import TwilioDialect
from ivr_bridge.events.bus import EventBus
from ivr_bridge.events.console import CallbackSink
from ivr_bridge.model import DialectEvent, UtteranceEvent
from ivr_bridge.recognition.base import SessionConfig
from ivr_bridge.server import BridgeServer
from ivr_bridge.simulators.twilio import TwilioStreamEncoder
from tests.fakes import FakeRecognizer


class _BuggyDialect(TwilioDialect):
    """Twilio, except that a DTMF message trips a bug (not a DialectError)."""

    def receive_text(self, text: str) -> list[DialectEvent]:
        if '"event":"dtmf"' in text:
            raise RuntimeError("a bug in the dialect")
        return super().receive_text(text)


class _BuggyFactory:
    name = "twilio"

    def open(self, request: UpgradeRequest) -> TwilioDialect:
        return _BuggyDialect()


@pytest.fixture
async def server() -> AsyncIterator[tuple[BridgeServer, list[UtteranceEvent]]]:
    events: list[UtteranceEvent] = []
    bus = EventBus()
    bus.add_sink(CallbackSink(events.append))
    routes = dict(build_routes({"twilio": DialectSettings()}))
    routes["/buggy"] = Route(path="/buggy", name="twilio", factory=_BuggyFactory())
    srv = BridgeServer(
        routes=routes,
        recognizer=FakeRecognizer(),
        bus=bus,
        options=CallOptions(session=SessionConfig(sample_rate=8000), start_timeout_s=0),
        port=0,
    )
    await srv.start()
    yield srv, events
    await srv.drain(0)
    await bus.aclose()


async def _play(url: str, messages: list[str]) -> tuple[int | None, str | None]:
    async with connect(url) as ws:
        for message in messages:
            await ws.send(message)
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason


async def test_a_bug_ends_only_its_own_call(
    server: tuple[BridgeServer, list[UtteranceEvent]],
) -> None:
    srv, events = server
    base = f"ws://127.0.0.1:{srv.port}"
    bad, good = TwilioStreamEncoder(), TwilioStreamEncoder()
    frame = b"\xff" * 160
    bad_msgs = [bad.connected(), bad.start(), *bad.media_frames(frame), bad.dtmf("5")]
    good_msgs = [good.connected(), good.start(), *good.media_frames(frame), good.stop()]
    code, reason = await _play(base + "/buggy", bad_msgs)
    assert (code, reason) == (1011, "internal error")
    assert (await _play(base + "/twilio", good_msgs))[0] == 1000
    ended: dict[str, Any] = {}
    for _ in range(200):
        ended = {e.call_id: e.data for e in events if e.type == "call_ended"}
        if len(ended) == 2:
            break
        await asyncio.sleep(0.01)
    assert sorted(d["reason"] for d in ended.values()) == ["internal_error", "stop"]
