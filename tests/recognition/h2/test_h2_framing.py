"""The h2 client's framing, sans-I/O: the client connection and h2's server side joined by a
byte buffer, so any split of messages into DATA frames and of frames into socket reads can be
tried quickly (Hypothesis), and any frame a broken server might send can be thrown at it."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import h2.config
import h2.connection
import h2.events
import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from ivr_bridge.recognition.h2_grpc import H2Call, H2Connection, RpcError
from tests.recognition.h2.peer import GRPC_HEADERS, framed

PATH = "/test.Framing/Call"


class FakeTransport(asyncio.Transport):
    """Collects what the client writes."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closing = False

    def write(self, data: Any) -> None:
        self.out += data

    def take(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing


class Wire:
    """A client H2Connection and a server h2 state machine, handshake done."""

    def __init__(self) -> None:
        self.client = H2Connection("test", "http", keepalive_s=0)
        self.transport = FakeTransport()
        self.client.connection_made(self.transport)
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.server = h2.connection.H2Connection(config)
        self.server.initiate_connection()
        self.server.receive_data(self.transport.take())
        self.client.data_received(self.server.data_to_send())
        self.server.receive_data(self.transport.take())

    def open(self) -> H2Call:
        call = self.client.open_call(PATH, [])
        self.server.receive_data(self.transport.take())
        self.server.send_headers(call.stream_id, list(GRPC_HEADERS))
        return call

    def deliver(self, reads: list[int]) -> None:
        """What the server queued, to the client in socket reads of the given sizes."""
        data = self.server.data_to_send()
        pos = 0
        for size in reads:
            if pos >= len(data):
                break
            self.client.data_received(data[pos : pos + size])
            pos += size
        if pos < len(data):
            self.client.data_received(data[pos:])
        self.server.receive_data(self.transport.take())  # window updates, acks


async def read_all(call: H2Call) -> list[bytes]:
    messages = []
    while (message := await call.read()) is not None:
        messages.append(message)
    return messages


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(0, 70_000), min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 500_000), max_size=30),
    reads=st.lists(st.integers(1, 30_000), max_size=30),
)
def test_any_split_of_messages_reassembles_exactly(
    sizes: list[int], cuts: list[int], reads: list[int]
) -> None:
    """Messages of any size, cut into DATA frames anywhere (inside a length prefix too),
    and the frames into socket reads anywhere, come out whole and in order."""
    expected = [bytes([i % 251]) * size for i, size in enumerate(sizes)]

    async def scenario() -> list[bytes]:
        wire = Wire()
        call = wire.open()
        stream = b"".join(framed(m) for m in expected)
        bounds = sorted({c % len(stream) for c in cuts} | {0, len(stream)})
        for turn, (start, end) in enumerate(itertools.pairwise(bounds)):
            for pos in range(start, end, 16_384):  # the client's largest frame
                wire.server.send_data(call.stream_id, stream[pos : min(end, pos + 16_384)])
            if turn % 3 == 2:  # sometimes the client reads before the server sends on
                wire.deliver(reads)
        wire.server.send_headers(call.stream_id, [(b"grpc-status", b"0")], end_stream=True)
        wire.deliver(reads)
        return await read_all(call)

    assert asyncio.run(scenario()) == expected


FRAME_TYPES = st.integers(0, 10)  # DATA .. CONTINUATION, and one unknown type


@st.composite
def raw_frames(draw: st.DrawFn) -> bytes:
    """Frames with valid headers and arbitrary contents, on streams the client knows."""
    out = b""
    for _ in range(draw(st.integers(1, 4))):
        payload = draw(st.binary(max_size=40))
        kind = draw(FRAME_TYPES)
        flags = draw(st.integers(0, 255))
        stream = draw(st.sampled_from([0, 1, 2, 3, 2**31 - 1]))
        out += len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big")
        out += payload
    return out


@settings(max_examples=300, deadline=None)
@given(garbage=raw_frames(), split=st.integers(1, 200))
def test_no_frame_from_the_server_raises_out_of_the_protocol(garbage: bytes, split: int) -> None:
    """Whatever arrives, data_received returns; a protocol error fails every call with a
    status and closes the socket."""

    async def scenario() -> None:
        wire = Wire()
        call = wire.open()
        wire.deliver([])
        for pos in range(0, len(garbage), split):
            wire.client.data_received(garbage[pos : pos + split])
        if wire.client.closed is not None:
            assert wire.transport.closing
            assert call.ended and isinstance(call.outcome, RpcError)
            assert not wire.client.calls

    asyncio.run(scenario())


def test_write_then_trailers_round_trip_on_the_wire() -> None:
    """The sans-I/O pair itself: a message each way and OK trailers."""

    async def scenario() -> tuple[bytes, list[bytes]]:
        wire = Wire()
        call = wire.open()
        await call.write(b"ping")
        await call.done_writing()
        events = wire.server.receive_data(wire.transport.take())
        sent = b"".join(getattr(e, "data", b"") for e in events)
        wire.server.send_data(call.stream_id, framed(b"pong"))
        wire.server.send_headers(call.stream_id, [(b"grpc-status", b"0")], end_stream=True)
        wire.deliver([])
        return sent, await read_all(call)

    assert asyncio.run(scenario()) == (framed(b"ping"), [b"pong"])


def test_frames_after_a_goaway_in_the_same_read_are_still_served() -> None:
    """grpc-core's graceful shutdown arrives as GOAWAY, PING and the kept call's responses,
    often in one socket read; h2 alone would call everything after the GOAWAY an error."""

    async def scenario() -> tuple[list[bytes], bool, bytes]:
        wire = Wire()
        kept = wire.open()
        wire.deliver([])
        wire.server.close_connection(last_stream_id=kept.stream_id)
        wire.server.state_machine.state = h2.connection.ConnectionState.SERVER_OPEN
        wire.server.ping(b"shutdown")
        wire.server.send_data(kept.stream_id, framed(b"answer"))
        wire.server.send_headers(kept.stream_id, [(b"grpc-status", b"0")], end_stream=True)
        wire.client.data_received(wire.server.data_to_send())  # one read, all of it
        draining = wire.client.draining
        events = wire.server.receive_data(wire.transport.take())
        acked = b"".join(e.ping_data for e in events if isinstance(e, h2.events.PingAckReceived))
        return await read_all(kept), draining, acked

    assert asyncio.run(scenario()) == ([b"answer"], True, b"shutdown")
