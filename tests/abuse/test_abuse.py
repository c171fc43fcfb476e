"""Bad input and abuse against a live bridge, each beside a good call: the attacker gets its
documented close, the good call gets every final (in-process and in the JSON-lines file), and
nothing leaks (fds, asyncio tasks) once the round is over."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ivr_bridge.simulators.twilio import TwilioStreamEncoder
from tests.abuse.conftest import ATTACKER, Live
from tests.abuse.rawws import OP_TEXT, RawClient

pytestmark = pytest.mark.usefixtures("no_leaks")


async def started_socket(
    url: str, host: str = ATTACKER
) -> tuple[ClientConnection, TwilioStreamEncoder]:
    enc = TwilioStreamEncoder()
    ws = await connect(url, local_addr=(host, 0), compression=None, max_size=None)
    await ws.send(enc.connected())
    await ws.send(enc.start())
    return ws, enc


async def close_code_of(ws: ClientConnection) -> int | None:
    """Wait for the bridge to close ``ws``; its close code."""
    try:
        while True:
            await ws.recv()
    except ConnectionClosed:
        pass
    return ws.close_code


async def reason_of_attacker_call(live: Live, good_call_id: str) -> str:
    """The one other call's call_ended reason (waits for it)."""
    while True:
        others = {c: r for c, r in live.ended().items() if c != good_call_id}
        late = [r for c, r in others.items() if c not in live.seen_before]
        if late:
            (reason,) = late
            return reason
        await asyncio.sleep(0.02)


@pytest.fixture(autouse=True)
def remember_calls(live: Live) -> None:
    live.seen_before = set(live.ended())


async def test_sockets_that_never_start_lose_their_slots(live: Live) -> None:
    hosts = [ATTACKER, ATTACKER, ATTACKER, "127.0.0.3", "127.0.0.3", "127.0.0.3"]
    sockets = []
    for host in hosts:  # as many as max_calls: every slot taken
        enc = TwilioStreamEncoder()
        ws = await connect(live.url(), local_addr=(host, 0))
        await ws.send(enc.connected())  # `connected` is not `start`
        sockets.append(ws)
    codes = await asyncio.gather(*(close_code_of(ws) for ws in sockets))
    assert codes == [1008] * 6
    good = await live.good_call()
    await live.assert_good(good)
    assert live.ended().keys() - live.seen_before == {good}  # no call_ended for the six
    assert live.app.server is not None
    assert live.app.server.metrics.connections_not_started == {"start_timeout": 6}


@pytest.mark.parametrize("kind", ["mark", "dtmf"])
async def test_a_flood_of_marks_or_dtmf_is_cut_off(live: Live, kind: str) -> None:
    async def flood() -> int | None:
        ws, enc = await started_socket(live.url())
        try:
            for i in range(2000):
                await ws.send(enc.mark(f"m{i}") if kind == "mark" else enc.dtmf("5"))
        except ConnectionClosed:
            pass
        return await close_code_of(ws)

    good, code = await asyncio.gather(live.good_call(), flood())
    assert code == 1008
    await live.assert_good(good)
    assert await reason_of_attacker_call(live, good) == "rate_limited"


async def test_an_oversize_frame_is_refused_with_1009(live: Live) -> None:
    async def oversize() -> int | None:
        ws, _ = await started_socket(live.url())
        await ws.send("x" * 10_000)  # max_message_bytes is 4096
        return await close_code_of(ws)

    good, code = await asyncio.gather(live.good_call(), oversize())
    assert code == 1009
    await live.assert_good(good)
    assert await reason_of_attacker_call(live, good) == "too_big"


async def test_invalid_utf8_is_refused_with_1007(live: Live) -> None:
    async def invalid_text() -> int | None:
        client = await RawClient.connect(live.url(), ATTACKER)
        try:
            await client.upgrade(live.url())
            enc = TwilioStreamEncoder()
            await client.send(OP_TEXT, enc.connected().encode())
            await client.send(OP_TEXT, enc.start().encode())
            await client.send(OP_TEXT, b'{"event": "\xff\xfe"}')
            return await client.close_code()
        finally:
            await client.aclose()

    good, code = await asyncio.gather(live.good_call(), invalid_text())
    assert code == 1007
    await live.assert_good(good)
    assert await reason_of_attacker_call(live, good) == "invalid_utf8"


async def test_a_slowloris_upgrade_is_dropped(live: Live) -> None:
    async def slowloris() -> bool:
        client = await RawClient.connect(live.url(), ATTACKER)
        try:
            request = b"GET /twilio HTTP/1.1\r\nHost: x\r\nX-Slow: "
            client.writer.write(request)

            async def drip() -> None:
                while True:  # a byte every 100 ms, forever: only open_timeout ends it
                    client.writer.write(b"a")
                    await client.writer.drain()
                    await asyncio.sleep(0.1)

            dripping = asyncio.create_task(drip())
            try:
                return await client.eof()
            finally:
                dripping.cancel()
                await asyncio.gather(dripping, return_exceptions=True)
        finally:
            await client.aclose()

    good, dropped = await asyncio.gather(live.good_call(), slowloris())
    assert dropped
    await live.assert_good(good)


async def test_too_many_connections_from_one_address(live: Live) -> None:
    held = [(await started_socket(live.url()))[0] for _ in range(3)]  # the per-address cap
    with pytest.raises(InvalidStatus) as refused:
        await started_socket(live.url())
    assert refused.value.response.status_code == 429
    await live.assert_good(await live.good_call())  # another address still gets in
    for ws in held:
        await ws.close()
    assert live.app.server is not None
    assert live.app.server.metrics.connections_refused == {"per_address_cap": 1}
    # The slots come back: the attacker may connect again once its sockets are closed.
    for ws in held:
        await ws.wait_closed()
    await asyncio.sleep(0)
    again, _ = await started_socket(live.url())
    await again.close()


async def test_a_peer_that_never_answers_pings_is_dropped(live: Live) -> None:
    async def deaf() -> int | None:
        client = await RawClient.connect(live.url(), ATTACKER)
        try:
            await client.upgrade(live.url())
            enc = TwilioStreamEncoder()
            await client.send(OP_TEXT, enc.connected().encode())
            await client.send(OP_TEXT, enc.start().encode())
            return await client.close_code()  # reads pings, never sends a pong
        finally:
            await client.aclose()

    good, code = await asyncio.gather(live.good_call(), deaf())
    assert code == 1011
    await live.assert_good(good)
    assert await reason_of_attacker_call(live, good) == "ping_timeout"
