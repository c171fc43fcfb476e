"""The AudioSocket front door: a TCP listener that runs one Call per Asterisk connection.

AudioSocket is plain TCP (see ``dialects/audiosocket.py``), so it cannot share the websocket
server. This module adapts an asyncio stream to ``call.MessageStream`` — ``recv`` returns
whatever bytes the socket had (the dialect reassembles packets), ``send`` queues packets,
``close`` hangs up — and gives every connection the same ``Call`` the websocket dialects get.

Two duties fall to the transport because the dialect is sans-I/O:

* pacing: Asterisk plays AudioSocket audio as it arrives, without re-timing, so playback
  packets leave one per 20 ms from a bounded queue on the injected clock (overflow counted);
* admission: the protocol has no authentication at all. Bind to loopback or a private address,
  and set ``allowed_addresses`` to the PBXs' addresses; anything else is closed unread.

Wiring (app.py): construct with the recognizer, bus and CallOptions the websocket server uses,
``await start()`` when ``server.audiosocket_port`` is non-zero, ``await drain(timeout)`` on stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Final

import structlog

from ivr_bridge.call import Call, CallOptions
from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.dialects.audiosocket import AUDIO_RATES, HEADER, AudioSocketDialect
from ivr_bridge.events.bus import EventBus
from ivr_bridge.metrics import Metrics
from ivr_bridge.recognition.base import Recognizer

log = structlog.get_logger(__name__)

READ_SIZE: Final = 4096


def parse_allow_list(
    entries: Iterable[str],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Addresses or networks ("10.0.0.5", "10.1.0.0/16", "::1"); raises ValueError on a typo."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def peer_allowed(
    peer: str, allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    """Whether ``peer`` is on the allow-list (an empty list allows everyone).

    A dual-stack listener sees IPv4 peers as ``::ffff:a.b.c.d``; they match IPv4 entries.
    """
    if not allowed:
        return True
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allowed)


class PacedStream:
    """call.MessageStream over an asyncio TCP connection, with paced, bounded playback.

    ``send`` never blocks the caller: audio packets go to a queue of at most ``max_queued``
    packets (the rest are counted in ``playback_dropped``) that a writer task releases one
    packet-duration apart; other packets (hang-up) keep their place in the same queue.
    ``close`` lets queued playback finish for up to ``linger_s`` (not at all once the peer
    closed its side), then closes the socket.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        clock: Clock = SYSTEM_CLOCK,
        max_queued: int = 3000,
        linger_s: float = 2.0,
        read_size: int = READ_SIZE,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._clock = clock
        self._max_queued = max(1, max_queued)
        self._linger_s = linger_s
        self._read_size = read_size
        self._queue: deque[bytes] = deque()
        self._queued_audio = 0
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._pacer: asyncio.Task[None] | None = None
        self._closed = False
        self._peer_gone = False
        self.playback_sent = 0
        self.playback_dropped = 0

    async def recv(self) -> str | bytes | None:
        if self._closed:
            return None
        try:
            data = await self._reader.read(self._read_size)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self._peer_gone = True
            return None
        return data

    async def send(self, message: str | bytes) -> None:
        if self._closed:
            return
        data = message.encode() if isinstance(message, str) else message
        if _packet_seconds(data) > 0:
            if self._queued_audio >= self._max_queued:
                self.playback_dropped += 1
                return
            self._queued_audio += 1
        self._queue.append(data)
        self._idle.clear()
        self._wakeup.set()
        if self._pacer is None:
            self._pacer = asyncio.create_task(self._pace(), name="audiosocket-pacer")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closed:
            return
        if self._queue and not self._peer_gone:  # nobody to play to once Asterisk hung up
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_for(self._idle.wait(), self._linger_s)
        self._closed = True
        if self._pacer is not None:
            self._pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pacer
        # Whatever playback is left is cut short; control packets (hang-up) still go out.
        for data in self._queue:
            if _packet_seconds(data) > 0:
                self.playback_dropped += 1
            else:
                self._write(data)
        self._queue.clear()
        with contextlib.suppress(ConnectionError, OSError):
            self._writer.close()
            await self._writer.wait_closed()

    async def _pace(self) -> None:
        due = self._clock.now()
        while True:
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                due = max(due, self._clock.now())
                continue
            data = self._queue.popleft()
            seconds = _packet_seconds(data)
            if seconds > 0:
                self._queued_audio -= 1
                self.playback_sent += 1
            self._write(data)
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.drain()
            if seconds > 0:
                due += seconds
                delay = due - self._clock.now()
                if delay > 0:
                    await self._clock.sleep(delay)

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            self._writer.write(data)


def _packet_seconds(data: bytes) -> float:
    """Playing time of one audio packet (0 for anything else)."""
    if len(data) < HEADER.size:
        return 0.0
    kind, length = HEADER.unpack_from(data)
    rate = AUDIO_RATES.get(kind)
    return length / 2 / rate if rate else 0.0


class AudioSocketServer:
    """Accepts Asterisk AudioSocket connections on TCP and runs a Call for each.

    After ``await start()`` (returns the bound port; 0 picks a free one), every accepted
    connection from an allowed address becomes a ``Call`` with an ``AudioSocketDialect``.
    ``await drain(timeout_s)`` stops accepting, lets live calls end for up to ``timeout_s``,
    then ends the rest politely (hang-up packet, then close).
    """

    def __init__(
        self,
        *,
        recognizer: Recognizer,
        bus: EventBus,
        options: CallOptions,
        host: str = "127.0.0.1",
        port: int = 0,
        allowed_addresses: Iterable[str] = (),
        max_calls: int = 500,
        playback_queue_packets: int = 3000,
        clock: Clock = SYSTEM_CLOCK,
        metrics: Metrics | None = None,
    ) -> None:
        self._recognizer = recognizer
        self._bus = bus
        self._options = options
        self._host = host
        self._port = port
        self._allowed = parse_allow_list(allowed_addresses)
        self._max_calls = max_calls
        self._playback_queue = playback_queue_packets
        self._clock = clock
        self.metrics = metrics
        self._server: asyncio.Server | None = None
        self._calls: set[Call] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False
        self.calls_total = 0
        self.connections_refused = 0  # not on the allow-list
        self.calls_rejected = 0  # draining or at max_calls
        self.playback_dropped = 0

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    def counters(self) -> dict[str, int]:
        """Gauges and totals for /metrics: refusals by reason, calls, dropped playback."""
        return {
            "audiosocket_active_calls": len(self._calls),
            "audiosocket_calls_total": self.calls_total,
            "audiosocket_connections_refused": self.connections_refused,
            "audiosocket_calls_rejected": self.calls_rejected,
            "audiosocket_playback_dropped": self.playback_dropped,
        }

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        log.info(
            "audiosocket_listening",
            host=self._host,
            port=self.port,
            allow_list=len(self._allowed),
            auth="none on the wire: keep this port private",
        )
        return self.port

    def _allowed_peer(self, peer: str) -> bool:
        if not self._allowed:
            return True
        return peer_allowed(peer, self._allowed)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) and peername else ""
        if not self._allowed_peer(peer):
            self.connections_refused += 1
            log.warning("audiosocket_refused", reason="address not allowed", peer=peer)
            await _abort(writer)
            return
        if self._draining or len(self._calls) >= self._max_calls:
            self.calls_rejected += 1
            log.warning("audiosocket_refused", reason="not accepting calls")
            await _abort(writer)
            return
        stream = PacedStream(reader, writer, clock=self._clock, max_queued=self._playback_queue)
        call = Call(
            call_id="call_" + uuid.uuid4().hex[:20],
            dialect=AudioSocketDialect(remote_address=peer),
            stream=stream,
            recognizer=self._recognizer,
            options=self._options,
            bus=self._bus,
            clock=self._clock,
            metrics=self.metrics,
        )
        self._calls.add(call)
        self._idle.clear()
        self.calls_total += 1
        try:
            await call.run()
        finally:
            await stream.close()
            self.playback_dropped += stream.playback_dropped
            self._calls.discard(call)
            if not self._calls:
                self._idle.set()

    async def drain(self, timeout_s: float) -> None:
        """Stop accepting, let calls finish for ``timeout_s``, end the rest, close."""
        self._draining = True
        if self._server is not None:
            self._server.close()
        if self._calls:
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_for(self._idle.wait(), timeout_s)
        for call in list(self._calls):
            call.request_stop()
        await self._idle.wait()
        await self.stop()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


async def _abort(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        writer.close()
        await writer.wait_closed()
