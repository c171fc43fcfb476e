"""The in-process API on real sockets: ivr_bridge.serve(handler, settings), the mounted form
(BridgeApp.handle over the user's own websocket server), and the package's public names."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import websockets
from websockets.asyncio.server import ServerConnection

import ivr_bridge
from ivr_bridge.app import BridgeApp
from ivr_bridge.config import ServerSettings
from ivr_bridge.events.console import CallbackSink
from ivr_bridge.handle import CallHandle
from ivr_bridge.local.tones import synthesize_script
from ivr_bridge.model import UtteranceEvent
from ivr_bridge.simulate import simulate_pcm
from tests.ports import free_tcp_port

from .conftest import tone_settings

UTTERANCES = [["hello", "agent"], ["yes"]]


def test_every_public_name_resolves() -> None:
    for name in ivr_bridge.__all__:
        assert getattr(ivr_bridge, name) is not None, name
    assert ivr_bridge.serve is ivr_bridge.app.serve
    try:
        ivr_bridge.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


async def test_serve_runs_the_handler_once_per_call_until_cancelled() -> None:
    port = free_tcp_port()
    settings = replace(tone_settings(), server=ServerSettings(port=port, drain_timeout_s=5.0))
    seen: dict[str, list[str]] = {}

    async def handler(call: CallHandle) -> None:
        texts = seen.setdefault(call.call_id, [])
        assert call.dialect == "twilio" and call.channels == ("caller",)
        async for event in call.events():
            if event.type == "final":
                texts.append(str(event.data["text"]))

    server = asyncio.create_task(ivr_bridge.serve(handler, settings))
    pcm = synthesize_script(UTTERANCES)
    for _ in range(200):  # until it listens
        try:
            await simulate_pcm(f"ws://127.0.0.1:{port}/twilio", pcm, fast=True)
            break
        except OSError:
            await asyncio.sleep(0.05)
    await simulate_pcm(f"ws://127.0.0.1:{port}/twilio", pcm, fast=True)
    server.cancel()
    await asyncio.gather(server, return_exceptions=True)
    assert list(seen.values()) == [["hello agent", "yes"], ["hello agent", "yes"]]


async def test_the_mounted_form_runs_a_call_over_the_users_own_server() -> None:
    events: list[UtteranceEvent] = []
    handled: list[str] = []

    async def handler(call: CallHandle) -> None:
        handled.append(call.call_id)
        async for event in call.events():
            if event.type == "call_started":  # before any audio: the socket is surely open
                await call.play(bytes(800))

    bridge = BridgeApp(
        tone_settings(), handler=handler, listen=False, sinks=[CallbackSink(events.append)]
    )
    await bridge.start()
    ended: list[Any] = []

    async def users_handler(ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path.startswith("/my-app/twilio"):
            call = await bridge.handle(ivr_bridge.WebsocketsStream(ws), "twilio")
            ended.append(call.end_reason)

    try:
        async with websockets.serve(users_handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            report = await simulate_pcm(
                f"ws://127.0.0.1:{port}/my-app/twilio", synthesize_script(UTTERANCES), fast=True
            )
    finally:
        await bridge.stop()
    assert ended == ["stop"] and len(handled) == 1
    assert [e.data["text"] for e in events if e.type == "final"] == ["hello agent", "yes"]
    assert any('"media"' in f for f in report.received)  # the handler's replies went out
    assert bridge.find_call(handled[0]) is None  # forgotten once it ended
