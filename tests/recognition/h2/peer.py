"""A scripted HTTP/2 server for the h2 client's tests, and the pieces those tests share.

A real gRPC server rarely sends a 503, a compressed message, garbage or a GOAWAY in the
middle of a call; this one does whatever the test tells it. Each accepted connection is a
:class:`Peer`: h2's server-side state machine on an asyncio server on port 0, whose events
the test awaits and whose frames the test writes one by one.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar, cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

E = TypeVar("E", bound=h2.events.Event)

GRPC_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b":status", b"200"),
    (b"content-type", b"application/grpc"),
)


def framed(payload: bytes, *, compressed: bool = False) -> bytes:
    """One gRPC length-prefixed message."""
    return bytes([1 if compressed else 0]) + len(payload).to_bytes(4, "big") + payload


class Peer(asyncio.Protocol):
    """One client connection to the scripted server, driven by the test."""

    def __init__(self, server: ScriptedServer) -> None:
        self._server = server
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config)
        self.events: asyncio.Queue[h2.events.Event] = asyncio.Queue()
        self.received: dict[int, bytearray] = collections.defaultdict(bytearray)
        self.auto_ack = server.auto_ack
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.protocol_errors = 0
        self._window_opened = asyncio.Event()

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self._server.settings:
            self.h2.local_settings = h2.settings.Settings(
                client=False, initial_values=dict(self._server.settings)
            )
        self.h2.initiate_connection()
        self.flush()
        self._server.peers.put_nowait(self)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.protocol_errors += 1
            return
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self.received[event.stream_id] += event.data
                if self.auto_ack and event.flow_controlled_length:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                self._window_opened.set()
            self.events.put_nowait(event)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    # -- what the test does ---------------------------------------------------------------

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def next(self, kind: type[E], stream_id: int | None = None) -> E:
        """The next event of ``kind`` (on ``stream_id`` if given); others are passed over."""
        while True:
            event = await self.events.get()
            if isinstance(event, kind) and (
                stream_id is None or getattr(event, "stream_id", None) == stream_id
            ):
                return event

    async def request(self) -> h2.events.RequestReceived:
        return await self.next(h2.events.RequestReceived)

    def respond(
        self,
        stream_id: int,
        headers: Iterable[tuple[bytes, bytes]] = GRPC_HEADERS,
        *,
        end: bool = False,
    ) -> None:
        self.h2.send_headers(stream_id, list(headers), end_stream=end)
        self.flush()

    def data(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        """Raw DATA now, in frames the size the client allows (the window must allow it)."""
        size = self.h2.max_outbound_frame_size
        for off in range(0, len(data), size):
            last = off + size >= len(data)
            self.h2.send_data(stream_id, data[off : off + size], end_stream=end and last)
        if not data and end:
            self.h2.end_stream(stream_id)
        self.flush()

    async def send(self, stream_id: int, data: bytes) -> None:
        """Raw DATA as the client's flow-control windows allow, waiting for credit."""
        view = memoryview(data)
        while view:
            room = min(self.h2.local_flow_control_window(stream_id), len(view))
            if room <= 0:
                self._window_opened.clear()
                await self._window_opened.wait()
                continue
            self.data(stream_id, bytes(view[:room]))
            view = view[room:]

    def message(self, stream_id: int, payload: bytes) -> None:
        self.data(stream_id, framed(payload))

    def trailers(self, stream_id: int, code: int = 0, message: bytes = b"") -> None:
        fields = [(b"grpc-status", str(code).encode())]
        if message:
            fields.append((b"grpc-message", message))
        self.h2.send_headers(stream_id, fields, end_stream=True)
        self.flush()

    def reset(self, stream_id: int, code: int) -> None:
        self.h2.reset_stream(stream_id, code)
        self.flush()

    def goaway(self, last_stream_id: int, code: int = 0) -> None:
        self.h2.close_connection(code, last_stream_id=last_stream_id)
        self.flush()
        # h2 would refuse to serve the streams below last_stream_id after its own GOAWAY
        # (python-hyper/h2#1181); a real server goes on with them, so this one does too.
        self.h2.state_machine.state = h2.connection.ConnectionState.SERVER_OPEN

    async def sync(self) -> None:
        """Return once the client has processed everything sent so far (a PING's answer
        comes after the frames before it)."""
        self.h2.ping(b"syncsync")
        self.flush()
        await self.next(h2.events.PingAckReceived)

    def freeze(self) -> None:
        """Stop reading: the server hangs (PINGs go unanswered)."""
        assert self.transport is not None
        self.transport.pause_reading()


class ScriptedServer:
    """An asyncio server on 127.0.0.1 port 0 whose connections are :class:`Peer`\\ s."""

    def __init__(
        self, *, settings: dict[h2.settings.SettingCodes, int] | None = None, auto_ack: bool = True
    ) -> None:
        self.settings = settings or {}
        self.auto_ack = auto_ack
        self.peers: asyncio.Queue[Peer] = asyncio.Queue()
        self.accepted: list[Peer] = []
        self._server: asyncio.Server | None = None
        self.address = ""

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> str:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._peer, "127.0.0.1", 0, ssl=ssl_context)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        return self.address

    def _peer(self) -> Peer:
        peer = Peer(self)
        self.accepted.append(peer)
        return peer

    async def peer(self) -> Peer:
        return await self.peers.get()

    async def close(self) -> None:
        for peer in self.accepted:
            if peer.transport is not None:
                peer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def server_tls(cert_file: Path, key_file: Path, *, alpn: list[str]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx
