"""MediaConnection (the media websocket's own frame parser) end to end: a real bridge on
loopback port 0 with the tones engine, driven by a hand-rolled websocket client that writes
exactly the bytes a test wants on the wire: frames split at every byte, many frames in one
write, fragments, pings, protocol errors, frames pipelined with the upgrade.

A call sent any of these ways must come out as a call sent plainly does (same finals, same
call_ended), and every protocol error must close with websockets' own code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog.testing
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge import wsfast
from ivr_bridge.app import BridgeApp
from ivr_bridge.config import (
    EmbeddedSettings,
    ServerSettings,
    SessionSettings,
    Settings,
    SpeechKitSettings,
)
from ivr_bridge.dialects.audiohook_client import AudioHookClient
from ivr_bridge.events.console import CallbackSink
from ivr_bridge.local.tones import synthesize_script
from ivr_bridge.media_connection import MediaConnection
from ivr_bridge.simulators.twilio import FRAME_BYTES, TwilioStreamEncoder
from tests.abuse.rawws import read_server_frame, upgrade_request
from tests.integration.conftest import Collector

UTTERANCES = [["alpha", "bravo"], ["account", "help"]]
TEXTS = [" ".join(u) for u in UTTERANCES]
MAX_MESSAGE = 4096

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def wire_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    long_length: bool = False,
) -> bytes:
    """One client frame, as RFC 6455 section 5.2 lays it out (any flags the test wants);
    ``long_length`` writes the length in 64 bits whatever it is."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if long_length:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    elif n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def text(message: str) -> bytes:
    return wire_frame(OP_TEXT, message.encode())


@dataclass
class WireClient:
    """A TCP connection that speaks just enough websocket, reading in the background: it
    answers pings and the bridge's close, and records pongs and the close code."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pongs: list[bytes] = field(default_factory=list)
    close_code: int | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, app: BridgeApp, *, pipelined: bytes = b"") -> WireClient:
        """Connect and upgrade; ``pipelined`` bytes go out in the same write as the request."""
        reader, writer = await asyncio.open_connection("127.0.0.1", app.port)
        client = cls(reader, writer)
        writer.write(upgrade_request(app.url("/twilio")) + pipelined)
        await writer.drain()
        status = await reader.readuntil(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status[:40]
        client.task = asyncio.create_task(client._read())
        return client

    async def _read(self) -> None:
        try:
            while True:
                opcode, payload = await read_server_frame(self.reader)
                if opcode == OP_PING:
                    self.writer.write(wire_frame(OP_PONG, payload))
                elif opcode == OP_PONG:
                    self.pongs.append(payload)
                elif opcode == OP_CLOSE:
                    self.close_code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                    self.writer.write(wire_frame(OP_CLOSE, payload[:2]))  # the closing handshake
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the TCP connection ended without a close frame
        finally:
            self.closed.set()

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def bytewise(self, data: bytes) -> None:
        """One byte per write, yielding to the loop after each: the bridge reads them apart."""
        for i in range(len(data)):
            self.writer.write(data[i : i + 1])
            await asyncio.sleep(0)
        await self.writer.drain()

    async def finish(self) -> int | None:
        """Wait for the bridge to close; its close code."""
        await asyncio.wait_for(self.closed.wait(), 30)
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
        return self.close_code


def settings(*, read_batching: bool = False) -> Settings:
    return Settings(
        server=ServerSettings(
            port=0,
            start_timeout_s=5.0,
            ping_interval_s=60.0,  # the bridge's own pings stay out of these exchanges
            ping_timeout_s=60.0,
            max_message_bytes=MAX_MESSAGE,
            read_batching=read_batching,
        ),
        speechkit=SpeechKitSettings(languages=("en-US",)),
        embedded=EmbeddedSettings(port=0, engine="tones", workers=0),
        session=SessionSettings(drain_timeout_s=30.0),
    )


@dataclass
class Bridge:
    app: BridgeApp
    got: Collector

    def media_connections(self) -> list[MediaConnection]:
        """The bridge's open media connections (websockets' Server.connections)."""
        assert self.app.server is not None and self.app.server._server is not None
        conns = self.app.server._server.connections
        return [c for c in conns if isinstance(c, MediaConnection)]

    async def connection(self) -> MediaConnection:
        """The one media connection, once the bridge has it open."""
        while not (conns := self.media_connections()):
            await asyncio.sleep(0.005)
        (conn,) = conns
        return conn

    async def ended(self) -> dict[str, Any]:
        """The one call's finals and call_ended data."""
        await self.got.wait_ended(1)
        (call_id,) = self.got.calls()
        finals = [e.data["text"] for e in self.got.of(call_id, "final")]
        dtmf = [e.data["digit"] for e in self.got.of(call_id, "dtmf")]
        (ended,) = self.got.of(call_id, "call_ended")
        return {**ended.data, "finals": finals, "digits": dtmf}


@contextlib.asynccontextmanager
async def running_bridge(*, read_batching: bool = False) -> AsyncIterator[Bridge]:
    """A bridge on the tones engine. The parser's tests read frames as the client wrote
    them, so read batching (test_read_batching.py) is off unless asked for."""
    got = Collector()
    app = BridgeApp(settings(read_batching=read_batching), sinks=[CallbackSink(got)])
    await app.start()
    try:
        yield Bridge(app, got)
    finally:
        await app.stop()


@pytest.fixture(
    autouse=True,
    params=["compiled", "python"] if wsfast.AVAILABLE else ["python"],
)
def scanner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test with the compiled frame scanner (wsfast) and with the pure-Python one."""
    if request.param == "python":
        monkeypatch.setattr(wsfast, "AVAILABLE", False)
    return str(request.param)


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    async with running_bridge() as running:
        yield running


def pcm_frames() -> list[bytes]:
    """The script plus a second of silence, as 20 ms PCM16 frames."""
    pcm = synthesize_script(UTTERANCES) + bytes(16000)
    step = FRAME_BYTES * 2  # 20 ms of PCM16 at 8 kHz
    return [pcm[i : i + step].ljust(step, b"\0") for i in range(0, len(pcm), step)]


def media(enc: TwilioStreamEncoder, frames: list[bytes]) -> list[str]:
    return [str(enc.audio(f, "inbound")[0]) for f in frames]


def call_messages() -> tuple[TwilioStreamEncoder, list[str]]:
    """A whole Twilio call but its stop: opening, then the script's media."""
    enc = TwilioStreamEncoder()
    return enc, [*map(str, enc.opening()), *media(enc, pcm_frames())]


def comparable(ended: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on how the bytes arrived."""
    wire = ended["wire"]
    return {
        "finals": ended["finals"],
        "reason": ended["reason"],
        "audio_ms_received": ended["audio_ms_received"],
        "wire": {k: wire[k] for k in ("messages", "media_frames", "media_bytes")},
        "anomalies": {k: v for k, v in wire.items() if k.startswith("sequence_") and v},
    }


async def normal_call(bridge: Bridge) -> dict[str, Any]:
    """The reference: one frame per write."""
    enc, messages = call_messages()
    client = await WireClient.connect(bridge.app)
    conn = await bridge.connection()
    for m in [*messages, enc.stop()]:
        await client.write(text(m))
    assert await client.finish() == 1000
    ended = await bridge.ended()
    assert ended["finals"] == TEXTS and ended["reason"] == "stop"
    assert conn.fast_frames == len(messages) + 1  # every frame took the fast path
    return comparable(ended)


# A plain call's outcome, computed once (each mode gets a fresh bridge; results must match).
_REFERENCE: dict[str, Any] = {}


async def reference() -> dict[str, Any]:
    if not _REFERENCE:
        async with running_bridge() as other:
            _REFERENCE.update(await normal_call(other))
    return _REFERENCE


async def test_a_plain_call_takes_the_fast_path(bridge: Bridge) -> None:
    outcome = await normal_call(bridge)
    assert outcome["anomalies"] == {}


@pytest.mark.parametrize("mode", ["bytewise", "coalesced"])
async def test_split_or_coalesced_frames_give_the_same_call(bridge: Bridge, mode: str) -> None:
    want = await reference()
    enc, messages = call_messages()
    wire = b"".join(text(m) for m in [*messages, enc.stop()])
    client = await WireClient.connect(bridge.app)
    conn = await bridge.connection()
    reads = count_reads(conn)
    if mode == "bytewise":
        await client.bytewise(wire)
    else:
        await client.write(wire)  # one write: the bridge reads many frames per chunk
    assert await client.finish() == 1000
    assert comparable(await bridge.ended()) == want
    assert conn.fast_frames == len(messages) + 1
    if mode == "bytewise":
        assert len(reads) > len(wire) // 2  # the bridge really read the frames apart
    else:
        assert len(reads) < len(messages) // 4  # ... or many frames at a time


def count_reads(conn: MediaConnection) -> list[int]:
    """The sizes of the chunks the transport hands ``conn`` from now on."""
    reads: list[int] = []
    original = conn.data_received

    def counting(data: bytes) -> None:
        reads.append(len(data))
        original(data)

    conn.data_received = counting  # type: ignore[method-assign]
    return reads


async def test_a_fragmented_message_in_the_middle_of_media_arrives_once_in_order(
    bridge: Bridge,
) -> None:
    enc = TwilioStreamEncoder()
    frames = pcm_frames()
    half = len(frames) // 2
    before = [*map(str, enc.opening()), *media(enc, frames[:half])]
    dtmf = enc.dtmf("5").encode()
    fragmented_media = media(enc, frames[half : half + 1])[0].encode()
    after = [enc.dtmf("7"), *media(enc, frames[half + 1 :]), enc.stop()]
    parts = [dtmf[:10], dtmf[10:25], dtmf[25:]]
    fragmented = (
        wire_frame(OP_TEXT, parts[0], fin=False)
        + wire_frame(OP_PING, b"between")  # control frames may sit between fragments
        + wire_frame(OP_CONT, parts[1], fin=False)
        + wire_frame(OP_CONT, parts[2])
        + wire_frame(OP_TEXT, fragmented_media[:100], fin=False)
        + wire_frame(OP_CONT, fragmented_media[100:])
    )
    client = await WireClient.connect(bridge.app)
    conn = await bridge.connection()
    for m in before:
        await client.write(text(m))
    await client.write(fragmented)
    for m in after:
        await client.write(text(m))
    assert await client.finish() == 1000
    ended = await bridge.ended()
    assert ended["digits"] == ["5", "7"]
    assert ended["finals"] == TEXTS
    wire = ended["wire"]
    sent = len(before) + 2 + len(after)
    assert wire["messages"] == sent and wire["media_frames"] == len(frames)
    assert wire["sequence_duplicates"] == wire["sequence_reorders"] == wire["sequence_gaps"] == 0
    assert client.pongs == [b"between"]
    assert conn.fast_frames == sent - 2  # the two fragmented messages went to websockets


async def test_pings_between_media_are_answered_and_change_nothing(bridge: Bridge) -> None:
    want = await reference()
    enc, messages = call_messages()
    client = await WireClient.connect(bridge.app)
    conn = await bridge.connection()
    pings = []
    for i, m in enumerate([*messages, enc.stop()]):
        if i % 10 == 5:
            pings.append(f"ping-{i}".encode())
            await client.write(wire_frame(OP_PING, pings[-1]) + text(m))  # in one write
        else:
            await client.write(text(m))
    assert await client.finish() == 1000
    assert comparable(await bridge.ended()) == want
    assert client.pongs == pings
    assert conn.fast_frames == len(messages) + 1


async def test_a_frame_with_a_64_bit_length_hands_the_stream_to_websockets(bridge: Bridge) -> None:
    """A length the fast path does not size (legal, if not minimal): websockets parses the
    rest of the connection, and the call is the same."""
    want = await reference()
    enc, messages = call_messages()
    client = await WireClient.connect(bridge.app)
    conn = await bridge.connection()
    at = len(messages) // 3
    for i, m in enumerate([*messages, enc.stop()]):
        await client.write(wire_frame(OP_TEXT, m.encode(), long_length=i == at))
    assert await client.finish() == 1000
    assert comparable(await bridge.ended()) == want
    assert conn.fast_frames == at


async def started_client(bridge: Bridge) -> tuple[WireClient, MediaConnection]:
    """A client whose call has started and sent a little media."""
    enc, messages = call_messages()
    client = await WireClient.connect(bridge.app)
    conn = await bridge.connection()
    for m in messages[:10]:
        await client.write(text(m))
    return client, conn


BAD_FRAMES = {
    "oversize": (wire_frame(OP_TEXT, b"x" * (MAX_MESSAGE + 1)), 1009, "too_big"),
    "oversize, 64-bit length": (wire_frame(OP_TEXT, b"x" * 70_000), 1009, "too_big"),
    "oversize in fragments": (
        wire_frame(OP_TEXT, b"x" * 3000, fin=False) + wire_frame(OP_CONT, b"x" * 3000),
        1009,
        "too_big",
    ),
    "invalid utf-8": (wire_frame(OP_TEXT, b'{"event": "\xff\xfe"}'), 1007, "invalid_utf8"),
    "invalid utf-8 in fragments": (
        wire_frame(OP_TEXT, b'{"event": "\xc3', fin=False) + wire_frame(OP_CONT, b'(x"}'),
        1007,
        "invalid_utf8",
    ),
    "unmasked": (wire_frame(OP_TEXT, b'{"event":"x"}', masked=False), 1002, "protocol_error"),
    "rsv bits": (wire_frame(OP_TEXT, b'{"event":"x"}', rsv=0b100), 1002, "protocol_error"),
    "unknown opcode": (wire_frame(0x3, b"{}"), 1002, "protocol_error"),
    "continuation out of the blue": (wire_frame(OP_CONT, b"{}"), 1002, "protocol_error"),
    "a whole message inside a fragmented one": (
        wire_frame(OP_TEXT, b'{"ev', fin=False) + wire_frame(OP_TEXT, b'{"event":"x"}'),
        1002,
        "protocol_error",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES))
async def test_bad_frames_close_with_websockets_own_codes(bridge: Bridge, case: str) -> None:
    bad, code, reason = BAD_FRAMES[case]
    client, conn = await started_client(bridge)
    await client.write(bad)
    assert await client.finish() == code
    ended = await bridge.ended()
    assert ended["reason"] == reason
    assert ended["wire"]["messages"] == 10  # nothing of the bad frame reached the call


@pytest.mark.parametrize("when", ["with the upgrade request", "right after the upgrade"])
async def test_messages_before_the_call_attaches_arrive_in_order(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """The opening frames and the first media arrive before the call is reading: in the same
    TCP write as the upgrade request, or in one write the moment the 101 is in."""
    want = await reference()
    pending_at_attach: list[int] = []
    attached = asyncio.Event()
    attach = MediaConnection.attach

    def late_attach(
        self: MediaConnection, consumer: Any, hint: Any = None, runs: Any = None
    ) -> None:
        # The call starts reading only once the early frames are all in (a slow call start),
        # so they wait in the connection's early list whatever the scheduling.
        if len(self._early or ()) < 40 and self.protocol.state is State.OPEN:
            asyncio.get_running_loop().call_later(0.005, late_attach, self, consumer, hint, runs)
            return
        pending_at_attach.append(len(self._early or ()))
        attach(self, consumer, hint, runs)
        attached.set()

    monkeypatch.setattr(MediaConnection, "attach", late_attach)
    enc, messages = call_messages()
    early = b"".join(text(m) for m in messages[:40])
    if when == "with the upgrade request":
        client = await WireClient.connect(bridge.app, pipelined=early)
    else:
        client = await WireClient.connect(bridge.app)
        await client.write(early)
    await asyncio.wait_for(attached.wait(), 10)  # the rest once the call reads
    for m in [*messages[40:], enc.stop()]:
        await client.write(text(m))
    assert await client.finish() == 1000
    assert comparable(await bridge.ended()) == want
    assert pending_at_attach == [40]


async def test_audiohook_goodbye_is_read_after_the_call_detaches(bridge: Bridge) -> None:
    """The bridge ends an AudioHook session (shutdown): it sends ``disconnect`` and reads the
    client's ``close`` with recv(), after the push path has detached, then answers ``closed``
    and closes with AudioHook's own code."""
    client = AudioHookClient()
    frames = pcm_frames()[:25]
    async with connect(bridge.app.url("/audiohook"), compression=None) as ws:
        conn = await bridge.connection()
        await ws.send(client.open())
        while not client.state.opened:
            client.receive(str(await asyncio.wait_for(ws.recv(), 10)))
        for pcm in frames:
            audio = client.audio(pcm)
            assert audio is not None
            await ws.send(audio)
        while conn.fast_frames < 1 + len(frames):  # all of it read by the bridge
            await asyncio.sleep(0.005)
        stopping = asyncio.create_task(bridge.app.stop(drain_timeout_s=0.0))
        with contextlib.suppress(ConnectionClosed):
            while True:
                client.receive(str(await asyncio.wait_for(ws.recv(), 10)))
                for answer in client.data_to_send():  # `close`, in answer to `disconnect`
                    await ws.send(answer)
        await asyncio.wait_for(stopping, 30)
        assert ws.close_code == 1000
    assert client.state.disconnect_reason != ""
    assert client.state.closed  # the bridge read our close and answered it
    assert conn.fast_frames == 1 + len(frames)  # the goodbye's close went through recv()
    ended = await bridge.ended()
    assert ended["reason"] == "shutdown"


async def test_early_messages_past_the_limit_are_dropped_counted_and_logged(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ivr_bridge.media_connection.EARLY_LIMIT", 30)
    enc, messages = call_messages()
    early = b"".join(text(m) for m in messages[:40])  # parsed with the request: 10 too many
    with structlog.testing.capture_logs() as logs:
        client = await WireClient.connect(bridge.app, pipelined=early)
        conn = await bridge.connection()
        for m in [*messages[40:], enc.stop()]:
            await client.write(text(m))
        assert await client.finish() == 1000
    ended = await bridge.ended()
    assert conn.early_dropped == 10
    assert ended["wire"]["sequence_missing"] == 10  # the call saw the hole
    dropped = [e for e in logs if e["event"] == "early_messages_dropped"]
    assert [(e["dropped"], e["limit"]) for e in dropped] == [(10, 30)]


async def test_a_message_split_across_the_detach_reaches_recv(bridge: Bridge) -> None:
    """The client's ``close`` is in flight as fragments when the bridge ends the session: the
    first fragment arrives while the call is attached, the last after it detached. recv()
    must still get the whole message (the part already in is handed to websockets)."""
    client = AudioHookClient()
    async with connect(bridge.app.url("/audiohook"), compression=None) as ws:
        conn = await bridge.connection()
        await ws.send(client.open())
        while not client.state.opened:
            client.receive(str(await asyncio.wait_for(ws.recv(), 10)))
        for pcm in pcm_frames()[:10]:
            audio = client.audio(pcm)
            assert audio is not None
            await ws.send(audio)
        goodbye = client.close("end")
        disconnected = asyncio.Event()

        async def fragments() -> AsyncIterator[str]:
            yield goodbye[:20]
            await disconnected.wait()  # the bridge has detached by the time it says goodbye
            yield goodbye[20:]

        sending = asyncio.create_task(ws.send(fragments()))
        while conn._fragments is None:  # the first fragment is in, waiting for the rest
            await asyncio.sleep(0.005)
        stopping = asyncio.create_task(bridge.app.stop(drain_timeout_s=0.0))
        with contextlib.suppress(ConnectionClosed):
            while True:
                message = client.receive(str(await asyncio.wait_for(ws.recv(), 10)))
                client.data_to_send()  # our close is already on its way
                if message.type == "disconnect":
                    disconnected.set()
        await asyncio.wait_for(asyncio.gather(sending, stopping), 30)
        assert ws.close_code == 1000
    assert client.state.closed  # the bridge read the whole close and answered it
    assert (await bridge.ended())["reason"] == "shutdown"
