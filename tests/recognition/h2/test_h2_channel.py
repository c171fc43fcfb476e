"""H2Channel: connecting (refused, silent, non-HTTP/2, TLS with and without ALPN h2),
backoff and connectivity states, shared connect attempts, and endpoint parsing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import h2.settings
import pytest

from ivr_bridge.recognition.h2_channel import H2Channel, split_endpoint
from ivr_bridge.recognition.h2_grpc import RpcError
from tests.recognition.h2.peer import ScriptedServer, server_tls
from tests.tls import self_signed

PATH = "/test.Channel/Call"
BOUND_S = 10.0


async def within(aw: Any) -> Any:
    return await asyncio.wait_for(aw, BOUND_S)


async def refused(channel: H2Channel) -> RpcError:
    """Opening a call on ``channel`` fails UNAVAILABLE; the error, for more checks."""
    with pytest.raises(RpcError) as raised:
        await within(channel.open_call(PATH, []))
    assert raised.value.status == "UNAVAILABLE"
    return raised.value


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


class Listener(asyncio.Protocol):
    """A TCP (or TLS) server that accepts and then does only what ``reply`` says."""

    def __init__(self, reply: bytes = b"", *, close_after_reply: bool = False) -> None:
        self.reply = reply
        self.close_after_reply = close_after_reply
        self.accepted = 0
        self.closed = asyncio.Event()
        self.transports: list[asyncio.BaseTransport] = []

    def __call__(self) -> Listener:
        return self  # one protocol object serves every connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.accepted += 1
        self.transports.append(transport)
        if self.reply:
            writer = cast(asyncio.WriteTransport, transport)  # uvloop's are only alike
            writer.write(self.reply)
            if self.close_after_reply:
                writer.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


@pytest.fixture
async def listen() -> AsyncIterator[Callable[..., Any]]:
    servers: list[tuple[asyncio.Server, Listener]] = []

    async def start(listener: Listener, ssl_context: Any = None) -> str:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(listener, "127.0.0.1", 0, ssl=ssl_context)
        servers.append((server, listener))
        return f"127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server, listener in servers:
        for transport in listener.transports:
            transport.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port bound but not listening: connections to it are refused, and no one else can
    take it while the test runs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path, bytes]:
    return self_signed(tmp_path)


# ---- connect failures and backoff ------------------------------------------------------------


async def test_nothing_listening_is_unavailable_and_backs_off(refusing_port: int) -> None:
    channel = H2Channel(f"127.0.0.1:{refusing_port}", tls=False)
    try:
        assert channel.connectivity(try_to_connect=False) == "IDLE"
        assert "cannot connect" in (await refused(channel)).message
        # Within the backoff (a second at first), asking starts no other attempt...
        assert channel.connectivity() == "TRANSIENT_FAILURE"
        assert channel.connectivity() == "TRANSIENT_FAILURE"
        # ...once it is over (rewound here rather than waited for), asking does; that attempt
        # fails in the background, quietly, and the next backoff is longer.
        first_backoff = channel._retry_at - asyncio.get_running_loop().time()
        channel._retry_at = 0.0
        assert channel.connectivity() == "CONNECTING"
        await within(until(lambda: channel.connectivity(try_to_connect=False) != "CONNECTING"))
        assert channel.connectivity(try_to_connect=False) == "TRANSIENT_FAILURE"
        second_backoff = channel._retry_at - asyncio.get_running_loop().time()
        assert second_backoff > first_backoff
    finally:
        await channel.close()
    assert channel.connectivity() == "SHUTDOWN"


async def test_a_silent_server_times_out_and_its_socket_is_closed(
    listen: Callable[..., Any],
) -> None:
    listener = Listener()  # accepts, never sends SETTINGS
    address = await listen(listener)
    channel = H2Channel(address, tls=False, connect_timeout_s=0.2)
    try:
        assert "timed out" in (await refused(channel)).message
        await within(listener.closed.wait())  # the client hung up, not just gave up
    finally:
        await channel.close()


async def test_an_http1_server_is_unavailable(listen: Callable[..., Any]) -> None:
    listener = Listener(b"HTTP/1.1 400 Bad Request\r\n\r\n", close_after_reply=True)
    channel = H2Channel(await listen(listener), tls=False)
    try:
        await refused(channel)
        assert channel.connectivity(try_to_connect=False) == "TRANSIENT_FAILURE"
    finally:
        await channel.close()


async def test_calls_fail_fast_within_the_backoff_and_the_first_after_it_dials_once(
    listen: Callable[..., Any],
) -> None:
    """An outage must not become a connection storm: after a failed attempt, calls fail at
    once with the reason until the backoff is over, without dialing; then one attempt, shared
    by the calls that arrive together, and a longer backoff when it fails too."""
    listener = Listener(b"HTTP/1.1 503 Service Unavailable\r\n\r\n", close_after_reply=True)
    channel = H2Channel(await listen(listener), tls=False)
    try:
        first = await refused(channel)
        assert listener.accepted == 1 and "did not answer in HTTP/2" in first.message
        for _ in range(20):  # twenty calls retrying within the second: no new connection
            error = await refused(channel)
            assert first.message in error.message and "next attempt in" in error.message
        assert listener.accepted == 1 and channel.calls_refused_in_backoff == 20
        first_backoff = channel._retry_at - asyncio.get_running_loop().time()
        channel._retry_at = 0.0  # the backoff is over (rewound rather than waited for)
        errors = await asyncio.gather(
            *(channel.open_call(PATH, []) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(e, RpcError) and e.status == "UNAVAILABLE" for e in errors)
        assert listener.accepted == 2  # one attempt for the five
        assert channel._retry_at - asyncio.get_running_loop().time() > first_backoff
    finally:
        await channel.close()


async def test_an_http1_answer_on_an_open_socket_fails_at_once(
    listen: Callable[..., Any],
) -> None:
    """Not an HTTP/2 server, and it keeps the socket open: known from its first bytes, not
    from the connect timeout."""
    listener = Listener(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    channel = H2Channel(await listen(listener), tls=False, connect_timeout_s=60)
    try:
        assert "did not answer in HTTP/2" in (await refused(channel)).message
        await within(listener.closed.wait())
    finally:
        await channel.close()


async def test_closing_the_channel_during_a_connect_fails_the_waiting_calls(
    listen: Callable[..., Any],
) -> None:
    listener = Listener()
    channel = H2Channel(await listen(listener), tls=False, connect_timeout_s=BOUND_S)
    waiting = [asyncio.create_task(channel.open_call(PATH, [])) for _ in range(3)]
    await within(until(lambda: listener.accepted == 1))
    await channel.close()
    for task in waiting:
        with pytest.raises(RpcError) as raised:
            await within(task)
        assert raised.value.status == "UNAVAILABLE"
    await within(listener.closed.wait())


async def test_a_cancelled_caller_is_cancelled_and_the_attempt_goes_on() -> None:
    server = ScriptedServer()
    address = await server.start()
    channel = H2Channel(address, tls=False)
    try:
        first = asyncio.create_task(channel.open_call(PATH, []))
        second = asyncio.create_task(channel.open_call(PATH, []))
        await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        call = await within(second)
        assert channel.connections_opened == 1
        call.cancel()
    finally:
        await channel.close()
        await server.close()


async def test_concurrent_calls_share_one_connect() -> None:
    server = ScriptedServer()
    address = await server.start()
    channel = H2Channel(address, tls=False)
    try:
        calls = await within(asyncio.gather(*(channel.open_call(PATH, []) for _ in range(10))))
        assert channel.connections_opened == 1 and len(server.accepted) == 1
        assert sorted(c.stream_id for c in calls) == list(range(1, 20, 2))
        for call in calls:
            call.cancel()
    finally:
        await channel.close()
        await server.close()


async def test_a_server_allowing_no_streams_fails_calls_without_a_connection_storm() -> None:
    server = ScriptedServer(settings={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 0})
    address = await server.start()
    channel = H2Channel(address, tls=False)
    try:
        assert "no new calls" in (await refused(channel)).message
        assert len(server.accepted) == 1
        await within(server.accepted[0].lost)  # not kept open for nothing
    finally:
        await channel.close()
        await server.close()


async def test_max_streams_caps_calls_per_connection() -> None:
    server = ScriptedServer()
    address = await server.start()
    channel = H2Channel(address, tls=False, max_streams=3)
    try:
        calls = [await within(channel.open_call(PATH, [])) for _ in range(7)]
        assert channel.connections_opened == 3
        calls[0].cancel()  # room again on the first connection
        await within(channel.open_call(PATH, []))
        assert channel.connections_opened == 3
    finally:
        await channel.close()
        await server.close()


# ---- TLS -----------------------------------------------------------------------------------


async def test_tls_without_alpn_h2_is_refused(
    listen: Callable[..., Any], tls_files: tuple[Path, Path, bytes]
) -> None:
    cert, key, pem = tls_files
    listener = Listener()
    address = await listen(listener, server_tls(cert, key, alpn=[]))
    channel = H2Channel(address, tls=True, root_certificates=pem)
    try:
        assert "did not agree to HTTP/2" in (await refused(channel)).message
        await within(listener.closed.wait())
    finally:
        await channel.close()


async def test_tls_with_alpn_h2_and_our_root_carries_a_call(
    tls_files: tuple[Path, Path, bytes],
) -> None:
    cert, key, pem = tls_files
    server = ScriptedServer()
    address = await server.start(server_tls(cert, key, alpn=["h2"]))
    channel = H2Channel(address, tls=True, root_certificates=pem)
    try:
        call = await within(channel.open_call(PATH, []))
        peer = await within(server.peer())
        request = await within(peer.request())
        assert dict(request.headers)[b":scheme"] == b"https"
        await call.write(b"secret audio")
        peer.respond(request.stream_id)
        peer.message(request.stream_id, b"ok")
        peer.trailers(request.stream_id)
        assert await within(call.read()) == b"ok"
        assert await within(call.read()) is None
    finally:
        await channel.close()
        await server.close()


async def test_tls_with_an_unknown_certificate_is_unavailable(
    tls_files: tuple[Path, Path, bytes],
) -> None:
    cert, key, _ = tls_files
    server = ScriptedServer()
    address = await server.start(server_tls(cert, key, alpn=["h2"]))
    channel = H2Channel(address, tls=True)  # the system's roots do not know this certificate
    try:
        assert "TLS" in (await refused(channel)).message
    finally:
        await channel.close()
        await server.close()


# ---- endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "tls", "expected"),
    [
        ("stt.api.cloud.yandex.net:443", True, ("stt.api.cloud.yandex.net", 443)),
        ("stt.api.cloud.yandex.net", True, ("stt.api.cloud.yandex.net", 443)),
        ("localhost", False, ("localhost", 80)),
        ("dns:///recognizer:50051", False, ("recognizer", 50051)),
        ("[::1]:50051", False, ("::1", 50051)),
        ("[::1]", True, ("::1", 443)),
        ("::1", False, ("::1", 80)),
    ],
)
def test_split_endpoint(endpoint: str, tls: bool, expected: tuple[str, int]) -> None:
    assert split_endpoint(endpoint, tls=tls) == expected
