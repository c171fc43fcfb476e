"""The h2 gRPC client against real gRPC servers: grpc.aio with raw-bytes handlers, and the
embedded SpeechKit recognizer (tones engine) through the bridge's own v3 client.

What a real server does in the ordinary course (stream limits, aborts with encoded messages,
big messages, cancellation, graceful shutdown) must work exactly, on real sockets.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
import pytest

from ivr_bridge.local.server import EmbeddedServerConfig, EmbeddedSpeechKitServer
from ivr_bridge.local.tones import VOCABULARY, synthesize_words
from ivr_bridge.model import FinalResult
from ivr_bridge.recognition.base import SessionConfig
from ivr_bridge.recognition.h2_channel import H2Channel
from ivr_bridge.recognition.h2_grpc import H2Call, RpcError
from ivr_bridge.recognition.speechkit_v3 import SpeechKitV3Recognizer

BOUND_S = 20.0  # an upper bound on waits, so a bug fails the test instead of hanging it
ABORT_MESSAGE = "плохой запрос: 100% {не} так"  # non-ASCII and '%': percent-encoded on the wire


class Handlers:
    """Raw-bytes methods of the service ``test.Raw``."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()

    async def echo(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for message in requests:
            yield message

    async def sized(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        """Each request is a decimal size; the answer is that many patterned bytes."""
        async for message in requests:
            yield pattern(int(message))

    async def digest(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        """One answer at the end: how many messages came and a hash over them, in order."""
        count, h = 0, hashlib.sha256()
        async for message in requests:
            count += 1
            h.update(len(message).to_bytes(8, "big") + message)
        yield f"{count}:{h.hexdigest()}".encode()

    async def abort(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for _ in requests:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, ABORT_MESSAGE)
        yield b""  # never reached: makes this an async generator

    async def hold(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        """Echoes, then waits for good: it ends only by being torn down, and notes that.

        (On a client's RST_STREAM grpc.aio first ends the request stream as if the client had
        half-closed, then cancels the handler; only the cancellation tells the two apart.)
        """
        try:
            async for message in requests:
                yield message
            await asyncio.Event().wait()
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled.set()
            raise


def pattern(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def digest_of(messages: Sequence[bytes]) -> bytes:
    h = hashlib.sha256()
    for message in messages:
        h.update(len(message).to_bytes(8, "big") + message)
    return f"{len(messages)}:{h.hexdigest()}".encode()


class RawServer:
    def __init__(self, options: Sequence[tuple[str, Any]] = ()) -> None:
        self.handlers = Handlers()
        self.server = grpc.aio.server(options=list(options))
        methods = {
            name: grpc.stream_stream_rpc_method_handler(getattr(self.handlers, name))
            for name in ("echo", "sized", "digest", "abort", "hold")
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Raw", methods),)
        )
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"


class Harness:
    def __init__(self) -> None:
        self.servers: list[RawServer] = []
        self.channels: list[H2Channel] = []

    async def server(self, options: Sequence[tuple[str, Any]] = ()) -> RawServer:
        server = RawServer(options)
        await server.server.start()
        self.servers.append(server)
        return server

    def channel(self, server: RawServer, **kw: Any) -> H2Channel:
        channel = H2Channel(server.address, tls=False, **kw)
        self.channels.append(channel)
        return channel


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    yield h
    for channel in h.channels:
        await channel.close()
    for server in h.servers:
        await server.server.stop(grace=None)


async def within(aw: Any) -> Any:
    return await asyncio.wait_for(aw, BOUND_S)


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


async def read_all(call: H2Call) -> list[bytes]:
    return [m async for m in call]


async def exchange(channel: H2Channel, method: str, messages: Sequence[bytes]) -> list[bytes]:
    call = await channel.open_call(f"/test.Raw/{method}", [])
    reader = asyncio.create_task(read_all(call))
    for message in messages:
        await call.write(message)
    await call.done_writing()
    result: list[bytes] = await within(reader)
    return result


async def test_many_concurrent_calls_share_one_connection(harness: Harness) -> None:
    server = await harness.server()
    channel = harness.channel(server)
    batches = [[f"{c}-{i}".encode() for i in range(20)] for c in range(50)]
    results = await within(asyncio.gather(*(exchange(channel, "echo", b) for b in batches)))
    assert results == batches
    assert channel.connections_opened == 1
    assert channel.connectivity(try_to_connect=False) == "READY"


async def test_a_server_stream_limit_opens_more_connections(harness: Harness) -> None:
    server = await harness.server([("grpc.max_concurrent_streams", 2)])
    channel = harness.channel(server)
    calls = [await within(channel.open_call("/test.Raw/echo", [])) for _ in range(7)]
    assert channel.connections_opened == 4  # two calls per connection
    for n, call in enumerate(calls):
        await call.write(f"call {n}".encode())
        await call.done_writing()
    assert [await within(read_all(c)) for c in calls] == [[f"call {n}".encode()] for n in range(7)]


async def test_an_abort_arrives_with_its_status_and_decoded_message(harness: Harness) -> None:
    server = await harness.server()
    channel = harness.channel(server)
    with pytest.raises(RpcError) as raised:
        await exchange(channel, "abort", [b"anything"])
    assert raised.value.status == "INVALID_ARGUMENT"
    assert raised.value.message == ABORT_MESSAGE


async def test_ok_trailers_end_reads_with_none(harness: Harness) -> None:
    server = await harness.server()
    channel = harness.channel(server)
    call = await channel.open_call("/test.Raw/echo", [])
    await call.write(b"one")
    await call.done_writing()
    assert await within(call.read()) == b"one"
    assert await within(call.read()) is None
    assert await call.read() is None


async def test_a_five_megabyte_response_arrives_whole(harness: Harness) -> None:
    """Larger than the client's 4 MB stream window: credit must flow mid-message."""
    server = await harness.server()
    channel = harness.channel(server)
    assert await exchange(channel, "sized", [b"5000000", b"7"]) == [
        pattern(5_000_000),
        pattern(7),
    ]


async def test_a_response_over_max_receive_is_resource_exhausted(harness: Harness) -> None:
    server = await harness.server()
    channel = harness.channel(server, max_receive=1_000_000)
    with pytest.raises(RpcError) as raised:
        await exchange(channel, "sized", [b"1000001"])
    assert raised.value.status == "RESOURCE_EXHAUSTED"
    # The connection is unharmed: the next call on it works.
    assert await exchange(channel, "sized", [b"1000000"]) == [pattern(1_000_000)]
    assert channel.connections_opened == 1


async def test_writes_larger_than_the_server_window_arrive_intact(harness: Harness) -> None:
    server = await harness.server()
    channel = harness.channel(server)
    messages = [pattern(1_048_576), b"small", pattern(3_000_000)[::-1], b""]
    assert await exchange(channel, "digest", messages) == [digest_of(messages)]


async def test_cancel_is_seen_by_the_server(harness: Harness) -> None:
    server = await harness.server()
    channel = harness.channel(server)
    call = await channel.open_call("/test.Raw/hold", [])
    await call.write(b"hi")
    assert await within(call.read()) == b"hi"
    call.cancel()
    await within(server.handlers.cancelled.wait())
    with pytest.raises(RpcError) as raised:
        await call.read()
    assert raised.value.status == "CANCELLED"


async def test_closing_the_channel_ends_its_calls(harness: Harness) -> None:
    server = await harness.server()
    channel = harness.channel(server)
    call = await channel.open_call("/test.Raw/hold", [])
    await call.write(b"hi")
    assert await within(call.read()) == b"hi"
    reader = asyncio.create_task(call.read())
    await channel.close()
    with pytest.raises(RpcError) as raised:
        await within(reader)
    assert raised.value.status == "UNAVAILABLE"
    assert channel.connectivity() == "SHUTDOWN"
    with pytest.raises(RpcError):
        await channel.open_call("/test.Raw/echo", [])


@pytest.mark.parametrize("coalesce_s", [0.0, 0.005])
async def test_every_message_arrives_in_order_with_and_without_coalescing(
    harness: Harness, coalesce_s: float
) -> None:
    server = await harness.server()
    channel = harness.channel(server, coalesce_s=coalesce_s)
    batches = [[f"{c}:{i}".encode() * (i % 5) for i in range(200)] for c in range(5)]
    results = await within(asyncio.gather(*(exchange(channel, "echo", b) for b in batches)))
    assert results == batches


async def test_calls_in_flight_finish_through_a_graceful_server_stop(harness: Harness) -> None:
    """grpc-core's graceful shutdown: GOAWAY, PING, GOAWAY; the calls it had keep going."""
    server = await harness.server()
    channel = harness.channel(server)
    call = await channel.open_call("/test.Raw/echo", [])
    await call.write(b"before")
    assert await within(call.read()) == b"before"
    conn = channel._connections[0]
    stopping = asyncio.create_task(server.server.stop(grace=BOUND_S))
    await within(until(lambda: conn.draining))  # the server's GOAWAY has arrived
    await call.write(b"after")
    assert await within(call.read()) == b"after"
    await call.done_writing()
    assert await within(call.read()) is None
    await within(stopping)
    with pytest.raises(RpcError) as raised:
        await within(channel.open_call("/test.Raw/echo", []))
    assert raised.value.status == "UNAVAILABLE"


# ---- the embedded recognizer, through the bridge's v3 client ---------------------------------


@pytest.fixture
async def recognizer() -> AsyncIterator[EmbeddedSpeechKitServer]:
    rec = EmbeddedSpeechKitServer(EmbeddedServerConfig(port=0, engine="tones"))
    await rec.start()
    yield rec
    await rec.stop(grace=0.5)


async def test_concurrent_recognitions_on_the_h2_transport(
    recognizer: EmbeddedSpeechKitServer,
) -> None:
    client = SpeechKitV3Recognizer(recognizer.address, tls=False, transport="h2", coalesce_ms=5)
    phrases = [[VOCABULARY[(n + k) % len(VOCABULARY)] for k in range(3)] for n in range(24)]

    async def recognize(n: int, words: list[str]) -> str:
        stream = await client.open_stream(SessionConfig(sample_rate=8000), request_id=f"r{n}")
        pcm = synthesize_words(words)
        for off in range(0, len(pcm), 1600):
            await stream.send_audio(pcm[off : off + 1600])
        await stream.send_silence(1000)
        await stream.finish()
        finals = [u.hypothesis.text async for u in stream.updates() if isinstance(u, FinalResult)]
        return " ".join(finals)

    try:
        texts = await within(asyncio.gather(*(recognize(n, w) for n, w in enumerate(phrases))))
    finally:
        await client.close()
    assert texts == [" ".join(words) for words in phrases]
