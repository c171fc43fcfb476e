"""AudioSocket end to end: a real TCP connection on port 0 -> Call -> embedded recognizer.

The embedded recognizer runs the "tones" engine, so transcripts are compared word for word.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge.app import BridgeApp, call_options_from
from ivr_bridge.audiosocket_server import (
    AudioSocketServer,
    PacedStream,
    parse_allow_list,
    peer_allowed,
)
from ivr_bridge.clock import ScaledClock
from ivr_bridge.config import Settings
from ivr_bridge.dialects.audiosocket import KIND_HANGUP, FrameParser, encode_frame
from ivr_bridge.dialects.audiosocket_client import AudioSocketClient
from ivr_bridge.errors import ConfigError
from ivr_bridge.local.tones import synthesize_script
from tests.integration.conftest import local_settings
from tests.ports import free_tcp_port

UTTERANCES = [["hello", "account", "balance"], ["card", "payment", "seven"]]
UUID = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"


@pytest.fixture
async def listener() -> AsyncIterator[Callable[..., Any]]:
    servers: list[AudioSocketServer] = []

    async def make(app: BridgeApp, **kw: Any) -> AudioSocketServer:
        assert app.recognizer is not None and app.bus is not None
        server = AudioSocketServer(
            recognizer=app.recognizer,
            bus=app.bus,
            options=call_options_from(app.settings),
            **kw,
        )
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.drain(0)


async def send_call(port: int, frames: list[bytes]) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(frames))
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), 60)  # until the bridge closes
    writer.close()
    await writer.wait_closed()
    return received


def with_audiosocket(settings: Settings, port: int, allow: tuple[str, ...] = ()) -> Settings:
    server = replace(settings.server, audiosocket_port=port, audiosocket_allow=allow)
    return replace(settings, server=server)


async def test_the_bridge_serves_audiosocket_on_its_own_port(bridge: Any) -> None:
    port = free_tcp_port()
    app, got = await bridge(
        engine="tones", settings=with_audiosocket(local_settings("tones"), port)
    )
    assert app.audiosocket is not None and app.audiosocket.port == port
    client = AudioSocketClient(call_uuid=UUID)
    pcm = synthesize_script(UTTERANCES)
    await send_call(port, [*client.start_frames(), *client.audio_frames(pcm, 8000),
                           client.hangup()])  # fmt: skip
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    assert [f.data["text"] for f in got.of(call_id, "final")] == [" ".join(u) for u in UTTERANCES]
    metrics = await asyncio.to_thread(
        lambda: (
            urllib.request.urlopen(app.url("/metrics").replace("ws://", "http://")).read().decode()
        )
    )
    assert "ivr_bridge_audiosocket_calls_total 1" in metrics
    assert "ivr_bridge_audiosocket_connections_refused 0" in metrics
    await app.stop(drain_timeout_s=1)
    assert app.audiosocket is None


def test_audiosocket_settings_are_checked() -> None:
    with pytest.raises(ConfigError) as bad_allow:
        with_audiosocket(Settings(), 9092, ("not-a-network",))
    assert bad_allow.value.key == "server.audiosocket_allow"
    with pytest.raises(ConfigError) as bad_port:
        with_audiosocket(Settings(), 70000)
    assert bad_port.value.key == "server.audiosocket_port"


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_tone_call_is_transcribed_exactly(bridge: Any, listener: Any, rate: int) -> None:
    app, got = await bridge(engine="tones")
    server = await listener(app)
    client = AudioSocketClient(call_uuid=UUID, sample_rate=rate)
    pcm = synthesize_script(UTTERANCES, rate=rate)
    frames = [
        *client.start_frames(),
        client.dtmf("5"),
        *client.audio_frames(pcm, rate),
        *client.stop_frames(),
    ]
    await send_call(server.port, frames)
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    started = got.of(call_id, "call_started")[0].data
    assert started["dialect"] == "audiosocket"
    assert started["platform_call_id"] == UUID
    assert started["sample_rate"] == rate  # 16 kHz is not downsampled
    assert [f.data["text"] for f in got.of(call_id, "final")] == [" ".join(u) for u in UTTERANCES]
    assert [d.data["digit"] for d in got.of(call_id, "dtmf")] == ["5"]
    ended = got.of(call_id, "call_ended")[0].data
    assert ended["reason"] == "hangup"
    assert ended["sessions_opened"] == 1 and ended["errors"] == 0
    assert abs(ended["audio_ms_received"] - len(pcm) * 1000 // (2 * rate)) <= 20
    assert server.calls_total == 1 and server.active_calls == 0


async def test_address_off_the_allow_list_opens_no_session(bridge: Any, listener: Any) -> None:
    app, got = await bridge(engine="tones")
    server = await listener(app, allowed_addresses=["10.255.0.0/16"])
    client = AudioSocketClient(call_uuid=UUID)
    frames = [*client.start_frames(), *client.audio_frames(synthesize_script(UTTERANCES), 8000)]
    try:
        data = await send_call(server.port, frames)
    except ConnectionError:  # closed unread: the kernel may answer our data with a reset
        data = b""
    assert data == b""
    assert server.connections_refused >= 1 and server.calls_total == 0
    assert server.counters()["audiosocket_connections_refused"] == server.connections_refused
    assert got.events == []
    assert app.embedded is not None and app.embedded.stats.sessions_opened == 0


async def test_protocol_violation_closes_only_that_connection(bridge: Any, listener: Any) -> None:
    app, got = await bridge(engine="tones")
    server = await listener(app)
    good = AudioSocketClient(call_uuid=UUID)
    bad = await send_call(server.port, [encode_frame(0x10, b"\x00\x00")])  # audio before UUID
    assert bad == encode_frame(KIND_HANGUP)  # the goodbye, then the close
    await send_call(
        server.port,
        [
            *good.start_frames(),
            *good.audio_frames(synthesize_script(UTTERANCES), 8000),
            good.hangup(),
        ],
    )
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    assert len(got.of(call_id, "final")) == 2


async def test_playback_is_paced_in_order_and_bounded() -> None:
    """PacedStream over a real socket pair: order kept, hang-up last, overflow counted."""
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.set_result(await reader.read())
        writer.close()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    stream = PacedStream(reader, writer, clock=ScaledClock(speed=50), max_queued=8)
    packets = [encode_frame(0x10, bytes([i]) * 320) for i in range(10)]
    for packet in packets:
        await stream.send(packet)
    await stream.send(encode_frame(KIND_HANGUP))
    await stream.close()
    data = await asyncio.wait_for(received, 10)
    frames = list(FrameParser().feed(data))
    assert [f.payload[0] for f in frames[:-1]] == list(range(8))
    assert frames[-1].kind == KIND_HANGUP
    assert (stream.playback_sent, stream.playback_dropped) == (8, 2)
    assert await stream.recv() is None
    server.close()
    await server.wait_closed()


def test_allow_list_parsing() -> None:
    networks = parse_allow_list(["10.0.0.5", "192.168.0.0/16", "::1"])
    assert len(networks) == 3
    with pytest.raises(ValueError):
        parse_allow_list(["not-an-address"])
    assert peer_allowed("10.0.0.5", networks) and peer_allowed("192.168.7.1", networks)
    assert peer_allowed("::ffff:10.0.0.5", networks)  # a dual-stack listener's view of IPv4
    assert peer_allowed("::1", networks)
    assert not peer_allowed("10.0.0.6", networks) and not peer_allowed("", networks)
    assert peer_allowed("203.0.113.9", ())


async def test_no_lingering_for_a_peer_that_hung_up() -> None:
    """Once Asterisk closed its side, close() drops queued playback instead of waiting."""

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # Real time and a 10-minute linger: waiting for the queue would hit the test timeout.
    stream = PacedStream(reader, writer, linger_s=600)
    assert await stream.recv() is None
    for i in range(50):
        await stream.send(encode_frame(0x10, bytes([i]) * 320))
    await stream.close()
    assert stream.playback_sent + stream.playback_dropped == 50
    assert stream.playback_dropped > 0
    server.close()
    await server.wait_closed()
