"""The h2 gRPC client against a scripted HTTP/2 server: what a real server rarely does.

HTTP errors from a proxy, resets, GOAWAY, broken framing, a hung or vanished peer, tiny
windows, garbage. Each test drives the server frame by frame (tests/recognition/h2/peer.py)
and asserts the call's outcome, never a duration. Every test also checks that nothing
escaped to the event loop's exception handler and no task was left behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame
import pytest
from hpack import NeverIndexedHeaderTuple

from ivr_bridge.recognition import h2_grpc
from ivr_bridge.recognition.h2_channel import H2Channel
from ivr_bridge.recognition.h2_grpc import H2Call, RpcError
from tests.recognition.h2.peer import GRPC_HEADERS, Peer, ScriptedServer, framed

PATH = "/test.Scripted/Call"
BOUND_S = 10.0  # an upper bound on waits, so a bug fails the test instead of hanging it


class Harness:
    """Scripted servers and channels of one test, all closed at its end."""

    def __init__(self) -> None:
        self.servers: list[ScriptedServer] = []
        self.channels: list[H2Channel] = []
        self.loop_errors: list[dict[str, Any]] = []

    async def server(self, **kw: Any) -> ScriptedServer:
        server = ScriptedServer(**kw)
        await server.start()
        self.servers.append(server)
        return server

    def channel(self, server: ScriptedServer, **kw: Any) -> H2Channel:
        channel = H2Channel(server.address, tls=False, **kw)
        self.channels.append(channel)
        return channel

    async def call(
        self,
        channel: H2Channel,
        server: ScriptedServer,
        metadata: list[tuple[str, str]] | None = None,
    ) -> tuple[H2Call, Peer, int]:
        """A call and the server's side of it: (call, peer, stream id)."""
        opened = channel.connections_opened
        call = await channel.open_call(PATH, metadata or [])
        if channel.connections_opened > opened:
            self.current = await within(server.peer())
        request = await within(self.current.request())
        return call, self.current, request.stream_id

    current: Peer


async def within(aw: Any) -> Any:
    return await asyncio.wait_for(aw, BOUND_S)


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


async def outcome(call: H2Call) -> RpcError | None:
    """Read to the end: the error the call ended with, or None for OK."""
    try:
        while await within(call.read()) is not None:
            pass
    except RpcError as exc:
        return exc
    return None


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: h.loop_errors.append(context))
    try:
        yield h
        for channel in h.channels:
            await channel.close()
        for server in h.servers:
            await server.close()
        await asyncio.sleep(0)  # let transports deliver connection_lost
        me = asyncio.current_task()
        left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        assert left == [], left
        assert h.loop_errors == [], h.loop_errors
    finally:
        loop.set_exception_handler(None)


# ---- a normal call, and its metadata ------------------------------------------------------


async def test_a_call_round_trips_and_authorization_is_never_indexed(harness: Harness) -> None:
    server = await harness.server()
    channel = harness.channel(server)
    metadata = [
        ("authorization", "Api-Key not-a-real-key"),
        ("x-folder-id", "folder-1"),
        ("x-client-request-id", "req-42"),
    ]
    call = await channel.open_call(PATH, metadata)
    peer = await within(server.peer())
    request = await within(peer.request())
    sid = request.stream_id
    fields = {bytes(k): bytes(v) for k, v in request.headers}
    assert fields[b":path"] == PATH.encode() and fields[b":method"] == b"POST"
    assert fields[b"content-type"] == b"application/grpc" and fields[b"te"] == b"trailers"
    assert fields[b"x-folder-id"] == b"folder-1"
    assert fields[b"x-client-request-id"] == b"req-42"
    auth = [h for h in request.headers if h[0] == b"authorization"]
    assert len(auth) == 1 and isinstance(auth[0], NeverIndexedHeaderTuple)
    assert auth[0][1] == b"Api-Key not-a-real-key"

    await call.write(b"hello")
    await call.write(b"")  # an empty message is a message too
    await call.done_writing()
    await within(peer.next(h2.events.StreamEnded, sid))
    assert bytes(peer.received[sid]) == framed(b"hello") + framed(b"")
    peer.respond(sid)
    peer.message(sid, b"world")
    peer.trailers(sid)
    assert [m async for m in call] == [b"world"]
    assert await call.read() is None  # and stays at the end


# ---- HTTP statuses, content types, trailers-only -------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [(503, "UNAVAILABLE"), (401, "UNAUTHENTICATED"), (404, "UNIMPLEMENTED"), (418, "UNKNOWN")],
)
async def test_http_status_maps_to_grpc_status(
    harness: Harness, status: int, expected: str
) -> None:
    server = await harness.server()
    call, peer, sid = await harness.call(harness.channel(server), server)
    peer.respond(sid, [(b":status", str(status).encode()), (b"content-type", b"text/html")])
    peer.data(sid, b"<html>go away</html>", end=True)
    error = await outcome(call)
    assert error is not None and error.status == expected and str(status) in error.message


async def test_non_grpc_content_type_is_unknown(harness: Harness) -> None:
    server = await harness.server()
    call, peer, sid = await harness.call(harness.channel(server), server)
    peer.respond(sid, [(b":status", b"200"), (b"content-type", b"text/plain")])
    peer.data(sid, b"plain text", end=True)
    error = await outcome(call)
    assert error is not None and error.status == "UNKNOWN"


@pytest.mark.parametrize(
    ("headers", "expected", "message"),
    [
        # The usual trailers-only error: one HEADERS frame with END_STREAM.
        (
            [*GRPC_HEADERS, (b"grpc-status", b"7"), (b"grpc-message", b"no%20access")],
            "PERMISSION_DENIED",
            "no access",
        ),
        # Some proxies leave out the content type; grpc-status still decides.
        ([(b":status", b"200"), (b"grpc-status", b"8")], "RESOURCE_EXHAUSTED", ""),
        # grpc-status wins over the HTTP status when both are there (the gRPC spec).
        (
            [(b":status", b"429"), (b"content-type", b"application/grpc"), (b"grpc-status", b"8")],
            "RESOURCE_EXHAUSTED",
            "",
        ),
        ([*GRPC_HEADERS, (b"grpc-status", b"99")], "UNKNOWN", ""),
        ([*GRPC_HEADERS, (b"grpc-status", b"nope")], "UNKNOWN", "unparsable grpc-status"),
    ],
)
async def test_trailers_only_response(
    harness: Harness, headers: list[tuple[bytes, bytes]], expected: str, message: str
) -> None:
    server = await harness.server()
    call, peer, sid = await harness.call(harness.channel(server), server)
    peer.respond(sid, headers, end=True)
    error = await outcome(call)
    assert error is not None and (error.status, error.message) == (expected, message)


async def test_trailers_only_ok_ends_the_call_cleanly(harness: Harness) -> None:
    server = await harness.server()
    call, peer, sid = await harness.call(harness.channel(server), server)
    peer.respond(sid, [*GRPC_HEADERS, (b"grpc-status", b"0")], end=True)
    assert await outcome(call) is None


async def test_trailers_without_grpc_status_are_internal(harness: Harness) -> None:
    server = await harness.server()
    call, peer, sid = await harness.call(harness.channel(server), server)
    peer.respond(sid)
    peer.respond(sid, [(b"x-other", b"1")], end=True)
    error = await outcome(call)
    assert error is not None and error.status == "INTERNAL"


# ---- resets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (h2.errors.ErrorCodes.REFUSED_STREAM, "UNAVAILABLE"),
        (h2.errors.ErrorCodes.CANCEL, "CANCELLED"),
        (h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, "RESOURCE_EXHAUSTED"),
        (h2.errors.ErrorCodes.INTERNAL_ERROR, "INTERNAL"),
    ],
)
async def test_rst_stream_maps_to_status(
    harness: Harness, code: h2.errors.ErrorCodes, expected: str
) -> None:
    server = await harness.server()
    channel = harness.channel(server)
    call, peer, sid = await harness.call(channel, server)
    peer.respond(sid)
    peer.message(sid, b"first")
    peer.reset(sid, code)
    assert await within(call.read()) == b"first"  # what arrived before the reset is kept
    error = await outcome(call)
    assert error is not None and error.status == expected
    with pytest.raises(RpcError) as raised:
        await call.write(b"more")
    assert raised.value.status == expected
    # The connection is fine: the next call shares it.
    call2, _, sid2 = await harness.call(channel, server)
    assert sid2 > sid and channel.connections_opened == 1
    call2.cancel()


# ---- GOAWAY -------------------------------------------------------------------------------


async def test_goaway_fails_unseen_calls_and_lets_seen_ones_finish(harness: Harness) -> None:
    server = await harness.server()
    channel = harness.channel(server)
    seen, peer, sid_seen = await harness.call(channel, server)
    unseen, _, sid_unseen = await harness.call(channel, server)
    peer.respond(sid_seen)
    peer.goaway(last_stream_id=sid_seen)

    error = await outcome(unseen)
    assert error is not None and error.status == "UNAVAILABLE" and "GOAWAY" in error.message

    # The stream the server saw goes on both ways until its trailers.
    await seen.write(b"after goaway")
    await seen.done_writing()
    await within(peer.next(h2.events.StreamEnded, sid_seen))
    assert bytes(peer.received[sid_seen]) == framed(b"after goaway")
    peer.message(sid_seen, b"answer")
    peer.trailers(sid_seen)
    assert await within(seen.read()) == b"answer"
    assert await outcome(seen) is None

    # New calls go to a new connection; the old one closes once its last call is over.
    fresh, peer2, _ = await harness.call(channel, server)
    assert peer2 is not peer and channel.connections_opened == 2
    await within(peer.lost)
    fresh.cancel()


async def test_goaway_keeps_writes_that_were_waiting_for_coalescing(harness: Harness) -> None:
    """h2 drops its unsent output when a GOAWAY arrives; a coalesced write must survive."""
    server = await harness.server()
    channel = harness.channel(server, coalesce_s=0.05)
    call, peer, sid = await harness.call(channel, server)
    peer.respond(sid)
    await within(call.write(b"early"))
    await within(peer.next(h2.events.DataReceived, sid))
    await call.write(b"held for coalescing")  # queued: the flush timer is pending
    goaway = hyperframe.frame.GoAwayFrame(0)
    goaway.last_stream_id = sid
    channel._connections[0].data_received(goaway.serialize())  # arrives before the flush
    await call.done_writing()
    await within(peer.next(h2.events.StreamEnded, sid))
    assert bytes(peer.received[sid]) == framed(b"early") + framed(b"held for coalescing")
    peer.trailers(sid)
    assert await outcome(call) is None


async def test_goaway_with_error_fails_every_call(harness: Harness) -> None:
    server = await harness.server()
    channel = harness.channel(server)
    call, peer, sid = await harness.call(channel, server)
    peer.respond(sid)
    peer.goaway(last_stream_id=sid, code=h2.errors.ErrorCodes.INTERNAL_ERROR)
    error = await outcome(call)
    assert error is not None and error.status == "UNAVAILABLE"
    await within(peer.lost)


# ---- framing errors -----------------------------------------------------------------------


async def test_compressed_message_is_internal(harness: Harness) -> None:
    server = await harness.server()
    call, peer, sid = await harness.call(harness.channel(server), server)
    peer.respond(sid)
    peer.data(sid, framed(b"zzz", compressed=True))
    error = await outcome(call)
    assert error is not None and error.status == "INTERNAL" and "compress" in error.message
    await within(peer.next(h2.events.StreamReset, sid))  # the client gave up on the stream


@pytest.mark.parametrize("ending", ["end_stream", "ok_trailers"])
async def test_stream_ended_inside_a_message_is_internal(harness: Harness, ending: str) -> None:
    server = await harness.server()
    call, peer, sid = await harness.call(harness.channel(server), server)
    peer.respond(sid)
    whole = framed(b"a complete message")
    peer.data(sid, framed(b"ok") + whole[:9], end=ending == "end_stream")
    if ending == "ok_trailers":
        peer.trailers(sid)
    assert await within(call.read()) == b"ok"
    error = await outcome(call)
    assert error is not None and error.status == "INTERNAL"


async def test_message_over_the_receive_limit_is_resource_exhausted(harness: Harness) -> None:
    server = await harness.server()
    call, peer, sid = await harness.call(harness.channel(server, max_receive=100), server)
    peer.respond(sid)
    peer.message(sid, bytes(100))  # at the limit: fine
    peer.data(sid, framed(bytes(101))[:20])  # the prefix alone is enough to refuse it
    assert await within(call.read()) == bytes(100)
    error = await outcome(call)
    assert error is not None and error.status == "RESOURCE_EXHAUSTED"


# ---- flow control -------------------------------------------------------------------------


async def test_tiny_server_window_still_delivers_a_large_message_in_order(
    harness: Harness,
) -> None:
    server = await harness.server(settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100})
    call, peer, sid = await harness.call(harness.channel(server), server)
    big = bytes(range(256)) * 40  # 10 KB, a hundred windows' worth
    for message in (b"before", big, b"after"):
        await within(call.write(message))
    await within(call.done_writing())
    await within(peer.next(h2.events.StreamEnded, sid))
    assert bytes(peer.received[sid]) == framed(b"before") + framed(big) + framed(b"after")
    peer.respond(sid)
    peer.trailers(sid)
    assert await outcome(call) is None


@pytest.mark.parametrize("how", ["unread_messages", "over_the_limit"])
async def test_a_finished_call_gives_its_window_back(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Bytes a call received but nobody read are credited back when it ends; otherwise the
    connection's window shrinks with every such call until the connection stalls."""
    monkeypatch.setattr(h2_grpc, "_CONNECTION_WINDOW", 65536)
    monkeypatch.setattr(h2_grpc, "_RECEIVE_WINDOW", 65535)
    server = await harness.server()
    channel = harness.channel(server, max_receive=40_000)
    for _ in range(3):
        call, peer, sid = await harness.call(channel, server)
        peer.respond(sid)
        if how == "unread_messages":
            for _ in range(12):  # more than the client credits while they sit unread
                await within(peer.send(sid, framed(bytes(3000))))
            peer.trailers(sid)
        else:
            await within(peer.send(sid, framed(bytes(50_000))[:16_000]))
        await within(peer.sync())
        assert call.ended  # the client saw the end; its messages stay unread
    last, peer, sid = await harness.call(channel, server)
    peer.respond(sid)
    await within(peer.send(sid, framed(bytes(30_000))))
    peer.trailers(sid)
    assert await within(last.read()) == bytes(30_000)
    assert channel.connections_opened == 1


# ---- keepalive ----------------------------------------------------------------------------


async def test_server_that_stops_answering_pings_fails_the_call(harness: Harness) -> None:
    server = await harness.server()
    channel = harness.channel(server, keepalive_s=0.1, keepalive_timeout_s=0.1)
    call, peer, sid = await harness.call(channel, server)
    peer.respond(sid)
    peer.freeze()
    error = await outcome(call)
    assert error is not None and error.status == "UNAVAILABLE" and "keepalive" in error.message
    assert channel.connectivity(try_to_connect=False) == "IDLE"


async def test_quiet_server_that_answers_pings_keeps_the_call(harness: Harness) -> None:
    server = await harness.server()
    channel = harness.channel(server, keepalive_s=0.05, keepalive_timeout_s=5.0)
    call, peer, sid = await harness.call(channel, server)
    peer.respond(sid)
    for _ in range(3):  # three rounds of silence, each answered
        await within(peer.next(h2.events.PingReceived))
    assert not call.ended
    peer.message(sid, b"still here")
    peer.trailers(sid)
    assert await within(call.read()) == b"still here"
    assert await outcome(call) is None


# ---- a connection that breaks -------------------------------------------------------------


async def test_dropped_connection_fails_calls_and_a_new_call_reconnects(
    harness: Harness,
) -> None:
    server = await harness.server()
    channel = harness.channel(server)
    first, peer, sid = await harness.call(channel, server)
    second, _, _ = await harness.call(channel, server)
    peer.respond(sid)
    assert channel.connectivity() == "READY"
    assert peer.transport is not None
    peer.transport.abort()
    for call in (first, second):
        error = await outcome(call)
        assert error is not None and error.status == "UNAVAILABLE"
    assert channel.connectivity(try_to_connect=False) in {"IDLE", "TRANSIENT_FAILURE"}
    with pytest.raises(RpcError):
        await first.write(b"too late")

    again, peer2, sid2 = await harness.call(channel, server)
    peer2.respond(sid2)
    peer2.message(sid2, b"back")
    peer2.trailers(sid2)
    assert await within(again.read()) == b"back"
    assert channel.connectivity(try_to_connect=False) == "READY"
    assert channel.connections_opened == 2


GARBAGE = {
    "zero_window_update": b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + bytes(4),
    "data_on_stream_0": b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x",
    "hpack_nonsense": b"\x00\x00\x04\x01\x04\x00\x00\x00\x01\xde\xad\xbe\xef",
    "frame_over_max_size": b"\x00\x4e\x20\x00\x00\x00\x00\x00\x01" + bytes(20_000),
    "goaway_on_a_stream": b"\x00\x00\x08\x07\x00\x00\x00\x00\x01" + bytes(8),
    # A header announcing megabytes and nothing after it: refused at once, not when (never)
    # the rest arrives. Text where frames should be reads as such a header ("HTT": 4.7 MB).
    "header_of_an_overlong_frame_alone": b"\xff\xff\xff\x00\x00\x00\x00\x00\x01",
    "http1_text_mid_connection": b"HTTP/1.1 400 Bad Request\r\n\r\n",
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
async def test_garbage_from_the_server_ends_calls_cleanly(harness: Harness, garbage: bytes) -> None:
    server = await harness.server()
    channel = harness.channel(server)
    call, peer, sid = await harness.call(channel, server)
    other, _, _ = await harness.call(channel, server)
    peer.respond(sid)
    assert peer.transport is not None
    peer.transport.write(garbage)
    for c in (call, other):
        error = await outcome(c)
        assert error is not None and error.status in {"INTERNAL", "UNAVAILABLE"}
    await within(peer.lost)
    assert channel.connectivity(try_to_connect=False) == "IDLE"


async def test_cancel_resets_the_stream_and_reads_raise_cancelled(harness: Harness) -> None:
    server = await harness.server()
    call, peer, sid = await harness.call(harness.channel(server), server)
    peer.respond(sid)
    peer.message(sid, b"unread")
    await within(peer.sync())  # the client took the message in
    call.cancel()
    reset = await within(peer.next(h2.events.StreamReset, sid))
    assert reset.error_code == h2.errors.ErrorCodes.CANCEL
    with pytest.raises(RpcError) as raised:
        await call.read()  # the unread message is dropped, as grpc.aio does
    assert raised.value.status == "CANCELLED"
    with pytest.raises(RpcError):
        await call.write(b"x")
    await call.done_writing()  # a no-op once over
    call.cancel()  # and so is a second cancel


async def test_cancel_after_the_end_keeps_what_arrived(harness: Harness) -> None:
    server = await harness.server()
    call, peer, sid = await harness.call(harness.channel(server), server)
    peer.respond(sid)
    peer.message(sid, b"last words")
    peer.trailers(sid)
    await within(peer.sync())
    call.cancel()  # too late to cancel: the call is over, its messages stay readable
    assert await call.read() == b"last words"
    assert await call.read() is None


async def test_writes_after_done_writing_are_refused(harness: Harness) -> None:
    server = await harness.server(settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10})
    call, peer, sid = await harness.call(harness.channel(server), server)
    writer = asyncio.create_task(call.write(bytes(5000)))  # waits for window, a bit at a time
    await asyncio.sleep(0)
    await within(call.done_writing())  # after the write, not in the middle of it
    await within(writer)
    await call.done_writing()
    with pytest.raises(RpcError) as raised:
        await call.write(b"late")
    assert raised.value.status == "INTERNAL"
    await within(peer.next(h2.events.StreamEnded, sid))
    assert bytes(peer.received[sid]) == framed(bytes(5000))
    peer.respond(sid)
    peer.trailers(sid)
    assert await outcome(call) is None


async def test_a_writer_waiting_on_a_full_socket_is_released_by_cancel(harness: Harness) -> None:
    """The server stops reading with huge windows open: writes fill the socket's buffers and
    wait; cancelling the call must end that wait now, not when the connection dies."""
    huge = 2**31 - 1
    server = await harness.server(settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: huge})
    channel = harness.channel(server)
    call, peer, sid = await harness.call(channel, server)
    peer.h2.increment_flow_control_window(huge - 65535)
    await within(peer.sync())  # the client has the connection window too
    peer.freeze()
    conn = channel._connections[0]

    async def write_forever() -> None:
        while True:
            await call.write(bytes(1 << 20))

    writer = asyncio.create_task(write_forever())
    await within(until(lambda: conn._paused))  # a write waits for the socket
    call.cancel()
    with pytest.raises(RpcError) as raised:
        await within(writer)
    assert raised.value.status == "CANCELLED"
    assert channel.connectivity(try_to_connect=False) == "READY"  # only the call is over


async def test_writes_waiting_on_a_full_socket_go_on_when_it_drains(harness: Harness) -> None:
    huge = 2**31 - 1
    server = await harness.server(settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: huge})
    channel = harness.channel(server)
    call, peer, sid = await harness.call(channel, server)
    peer.h2.increment_flow_control_window(huge - 65535)
    await within(peer.sync())
    peer.freeze()
    conn = channel._connections[0]
    messages = [bytes([n]) * (1 << 20) for n in range(8)]

    async def write_all() -> None:
        for message in messages:
            await call.write(message)
        await call.done_writing()

    writer = asyncio.create_task(write_all())
    await within(until(lambda: conn._paused))
    assert not writer.done()
    assert peer.transport is not None
    peer.transport.resume_reading()
    await within(writer)
    await within(peer.next(h2.events.StreamEnded, sid))
    assert bytes(peer.received[sid]) == b"".join(framed(m) for m in messages)
    peer.respond(sid)
    peer.trailers(sid)
    assert await outcome(call) is None


async def test_too_many_pings_slows_keepalive_for_the_next_connections(harness: Harness) -> None:
    server = await harness.server()
    channel = harness.channel(server, keepalive_s=0.05)
    call, peer, sid = await harness.call(channel, server)
    peer.goaway(last_stream_id=sid, code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
    error = await outcome(call)
    assert error is not None and error.status == "UNAVAILABLE"
    again, peer2, _ = await harness.call(channel, server)
    assert peer2 is not peer
    assert channel._connections[0].keepalive_s == 0.1  # twice the configured interval
    again.cancel()


async def test_a_connection_out_of_stream_ids_drains_and_calls_move_on(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await harness.server()
    channel = harness.channel(server)
    first, peer, sid = await harness.call(channel, server)
    conn = channel._connections[0]

    def exhausted() -> int:
        raise h2.exceptions.NoAvailableStreamIDError("all 2**30 client stream ids used")

    monkeypatch.setattr(conn._h2, "get_next_available_stream_id", exhausted)
    second, peer2, sid2 = await harness.call(channel, server)
    assert peer2 is not peer and channel.connections_opened == 2 and conn.draining
    # The call already on the old connection finishes there; then that connection closes.
    peer.respond(sid)
    peer.trailers(sid)
    assert await outcome(first) is None
    await within(peer.lost)
    peer2.respond(sid2)
    peer2.trailers(sid2)
    assert await outcome(second) is None


async def test_an_unparsable_http_status_is_unknown(harness: Harness) -> None:
    server = await harness.server()
    call, peer, sid = await harness.call(harness.channel(server), server)
    peer.respond(sid, [(b":status", b"2xx"), (b"content-type", b"application/grpc")], end=True)
    error = await outcome(call)
    assert error is not None and error.status == "UNKNOWN"
