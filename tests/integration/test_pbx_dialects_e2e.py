"""Asterisk, FreeSWITCH, jambonz and Vonage end to end over real websockets on port 0.

Each platform's client encoder speaks to a websockets server whose upgrade hook runs the
dialect factory (auth included) and whose handler runs the same ``Call`` the bridge runs,
against the embedded recognizer's "tones" engine, so transcripts compare word for word.
(Once server.py routes the registry, the same frames go through BridgeServer unchanged.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge.app import BridgeApp, call_options_from
from ivr_bridge.call import Call
from ivr_bridge.dialects import asterisk, freeswitch, vonage
from ivr_bridge.dialects.asterisk_client import AsteriskClient
from ivr_bridge.dialects.base import (
    Dialect,
    DialectFactory,
    DialectSettings,
    UpgradeRefused,
    UpgradeRequest,
)
from ivr_bridge.dialects.freeswitch_client import AudioForkClient
from ivr_bridge.dialects.vonage_client import VonageClient
from ivr_bridge.local.tones import synthesize_script

CALLER = [["hello", "account", "balance"], ["card", "payment", "seven"]]
AGENT = [["thanks", "help", "agent"]]
SECRET = "e2e-shared-secret"


class _Stream:
    """call.MessageStream over a websockets server connection."""

    def __init__(self, ws: ServerConnection) -> None:
        self._ws = ws

    async def recv(self) -> str | bytes | None:
        try:
            return await self._ws.recv()
        except ConnectionClosed:
            return None

    async def send(self, message: str | bytes) -> None:
        try:
            await self._ws.send(message)
        except ConnectionClosed:
            return

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)


@pytest.fixture
async def front_door() -> AsyncIterator[Callable[..., Any]]:
    servers: list[Server] = []

    async def make(app: BridgeApp, factory: DialectFactory, subprotocols: Sequence[str]) -> int:
        assert app.recognizer is not None and app.bus is not None
        recognizer, bus = app.recognizer, app.bus
        dialects: dict[int, Dialect] = {}

        def upgrade(connection: ServerConnection, request: Request) -> Response | None:
            path, _, query = request.path.partition("?")
            headers = {k.lower(): v for k, v in request.headers.raw_items()}
            try:
                dialects[id(connection)] = factory.open(
                    UpgradeRequest(path=path, query_string=query, headers=headers)
                )
            except UpgradeRefused as refused:
                return connection.respond(refused.status, refused.reason)
            return None

        async def handler(ws: ServerConnection) -> None:
            call = Call(
                call_id=f"call_{id(ws):x}",
                dialect=dialects.pop(id(ws)),
                stream=_Stream(ws),
                recognizer=recognizer,
                options=call_options_from(app.settings),
                bus=bus,
            )
            await call.run()

        server = await serve(
            handler,
            "127.0.0.1",
            0,
            process_request=upgrade,
            subprotocols=[*subprotocols] or None,
            compression=None,
        )
        servers.append(server)
        return int(next(iter(server.sockets)).getsockname()[1])

    yield make
    for server in servers:
        server.close()
        await server.wait_closed()


async def play(port: int, path: str, frames: list[str | bytes], **kw: Any) -> None:
    async with connect(f"ws://127.0.0.1:{port}{path}", compression=None, **kw) as ws:
        for frame in frames:
            await ws.send(frame)


def finals(got: Any, call_id: str, channel: str) -> list[str]:
    return [str(e.data["text"]) for e in got.of(call_id, "final") if e.channel == channel]


async def test_asterisk_slin16_json_control(bridge: Any, front_door: Any) -> None:
    app, got = await bridge(engine="tones")
    factory = asterisk.SPEC.make_factory(
        DialectSettings(auth="basic", secrets={"username": "asterisk", "password": SECRET})
    )
    port = await front_door(app, factory, [])
    client = AsteriskClient(media_format="slin16", control_format="json",
                            channel_variables={"LANG": "en"})  # fmt: skip
    frames: list[str | bytes] = [
        client.media_start(),
        client.dtmf("4"),
        *client.media_frames(synthesize_script(CALLER, rate=16000), 16000),
    ]
    headers = client.upgrade_headers(username="asterisk", password=SECRET)
    await play(port, "/asterisk", frames, additional_headers=headers)
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    started = got.of(call_id, "call_started")[0].data
    assert started["sample_rate"] == 16000 and started["metadata"]["variable.LANG"] == "en"
    assert finals(got, call_id, "caller") == [" ".join(u) for u in CALLER]
    assert [d.data["digit"] for d in got.of(call_id, "dtmf")] == ["4"]


async def test_jambonz_stereo_gives_two_sessions(bridge: Any, front_door: Any) -> None:
    app, got = await bridge(engine="tones")
    factory = freeswitch.JAMBONZ_SPEC.make_factory(
        DialectSettings(auth="basic", secrets={"username": "jambonz", "password": SECRET})
    )
    port = await front_door(app, factory, ["audio.jambonz.org"])
    client = AudioForkClient("jambonz", sample_rate=16000, mix_type="stereo",
                             call_attributes={"from": "+15550100001"})  # fmt: skip
    left = synthesize_script(CALLER, rate=16000)
    right = bytes(16000 * 2) + synthesize_script(AGENT, rate=16000)
    frames = [client.metadata_frame(), *client.audio_frames(left, 16000, other=right),
              *client.stop_frames()]  # fmt: skip
    await play(
        port,
        "/jambonz",
        frames,
        subprotocols=[client.subprotocol],
        additional_headers=client.upgrade_headers(username="jambonz", password=SECRET),
    )
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    started = got.of(call_id, "call_started")[0].data
    assert [c["name"] for c in started["channels"]] == ["caller", "agent"]
    assert started["sample_rate"] == 16000
    assert finals(got, call_id, "caller") == [" ".join(u) for u in CALLER]
    assert finals(got, call_id, "agent") == [" ".join(u) for u in AGENT]
    assert got.of(call_id, "call_ended")[0].data["sessions_opened"] == 2


async def test_freeswitch_without_metadata_uses_the_url(bridge: Any, front_door: Any) -> None:
    app, got = await bridge(engine="tones")
    port = await front_door(app, freeswitch.SPEC.make_factory(DialectSettings()), [])
    client = AudioForkClient("freeswitch", sample_rate=8000)
    await play(port, client.upgrade_path(describe=True), client.audio_frames(
        synthesize_script(CALLER), 8000))  # fmt: skip
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    assert finals(got, call_id, "caller") == [" ".join(u) for u in CALLER]


async def test_vonage_token_and_sixteen_khz(bridge: Any, front_door: Any) -> None:
    app, got = await bridge(engine="tones")
    factory = vonage.SPEC.make_factory(DialectSettings(auth="token", secrets={"token": SECRET}))
    port = await front_door(app, factory, [])
    client = VonageClient(sample_rate=16000)
    frames = [client.connected(), *client.audio_frames(synthesize_script(CALLER, rate=16000),
                                                       16000), client.dtmf("9")]  # fmt: skip
    await play(port, client.upgrade_path(token=SECRET), frames)
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    assert got.of(call_id, "call_started")[0].data["sample_rate"] == 16000
    assert finals(got, call_id, "caller") == [" ".join(u) for u in CALLER]
    assert [d.data["digit"] for d in got.of(call_id, "dtmf")] == ["9"]


@pytest.mark.parametrize("token", [None, "forged"])
async def test_refused_upgrade_opens_no_session(
    bridge: Any, front_door: Any, token: str | None
) -> None:
    app, got = await bridge(engine="tones")
    factory = vonage.SPEC.make_factory(DialectSettings(auth="token", secrets={"token": SECRET}))
    port = await front_door(app, factory, [])
    client = VonageClient()
    with pytest.raises(InvalidStatus) as info:
        await play(port, client.upgrade_path(token=token), [client.connected()])
    assert info.value.response.status_code == (401 if token is None else 403)
    assert got.events == []
    assert app.embedded is not None and app.embedded.stats.sessions_opened == 0
