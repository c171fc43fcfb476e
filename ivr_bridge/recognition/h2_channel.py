"""A pool of HTTP/2 connections to one gRPC endpoint: where :class:`H2Call`\\ s are opened.

A call goes on the open connection with the most room under the server's
MAX_CONCURRENT_STREAMS (capped by ``max_streams``); when every connection is full a new one
is opened, so a thousand calls never queue behind a server's stream limit. Concurrent opens
share one connection attempt, and after a failed one, calls fail fast (UNAVAILABLE) until
its backoff (1 s, doubling up to 8 s) is over. The state names match gRPC's connectivity
states, which is what /healthz reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable

import structlog

from ivr_bridge.recognition.h2_grpc import DEFAULT_MAX_RECEIVE, H2Call, H2Connection, RpcError

log = structlog.get_logger(__name__)

_BACKOFF_FIRST_S = 1.0
# The same cap as the channels' own retries (PolicyConfig.backoff_max_s): once the endpoint
# is back, a call reaches it within that.
_BACKOFF_MAX_S = 8.0


def split_endpoint(endpoint: str, *, tls: bool) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or a bare host (443 with TLS, 80 without); a gRPC
    ``dns:///`` prefix is accepted."""
    target = endpoint.removeprefix("dns:///").removeprefix("dns:")
    default_port = 443 if tls else 80
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port else default_port
    if target.count(":") == 1:
        host, port = target.split(":")
        return host, int(port)
    return target, default_port


def tls_context(root_certificates: bytes | None) -> ssl.SSLContext:
    if root_certificates:
        ctx = ssl.create_default_context(cadata=root_certificates.decode("ascii"))
    else:
        ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2"])
    return ctx


class H2Channel:
    """Connections to one endpoint, opened on demand and dropped when they end."""

    def __init__(
        self,
        endpoint: str,
        *,
        tls: bool = True,
        root_certificates: bytes | None = None,
        max_streams: int = 100,
        max_connections: int = 64,
        connect_timeout_s: float = 10.0,
        max_receive: int = DEFAULT_MAX_RECEIVE,
        keepalive_s: float = 10.0,
        keepalive_timeout_s: float = 5.0,
        coalesce_s: float = 0.0,
    ) -> None:
        self.endpoint = endpoint
        self._host, self._port = split_endpoint(endpoint, tls=tls)
        self._authority = endpoint.removeprefix("dns:///").removeprefix("dns:")
        self._ssl = tls_context(root_certificates) if tls else None
        self._scheme = "https" if tls else "http"
        self._max_streams = max_streams
        self._max_connections = max_connections
        self._connect_timeout_s = connect_timeout_s
        self._max_receive = max_receive
        self._keepalive = (keepalive_s, keepalive_timeout_s)
        self._coalesce_s = coalesce_s
        self._connections: list[H2Connection] = []
        self._connecting: asyncio.Task[H2Connection] | None = None
        self._failed = False  # the last connection attempt failed
        self._backoff_s = _BACKOFF_FIRST_S
        self._retry_at = 0.0
        self._last_error = ""  # the failed attempt's message, for calls refused meanwhile
        self._shut = False
        self.connections_opened = 0
        self.calls_refused_in_backoff = 0

    async def open_call(self, path: str, metadata: Iterable[tuple[str, str]]) -> H2Call:
        """Start a call on a connection with room, opening a connection if none has any."""
        while True:
            if self._shut:
                raise RpcError("UNAVAILABLE", "channel closed")
            conn = self._roomiest()
            if conn is not None:
                try:
                    return conn.open_call(path, metadata)
                except RpcError:
                    continue  # that connection now refuses calls (draining): another one

            if self._connecting is None:
                if len(self._connections) >= self._max_connections:
                    raise RpcError("UNAVAILABLE", f"{self.endpoint}: every connection is full")
                self._refuse_within_backoff()
                self._connecting = asyncio.create_task(self._connect())
            task = self._connecting
            try:
                fresh = await asyncio.shield(task)  # raises the attempt's RpcError to all
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if me is not None and me.cancelling():
                    raise  # this caller was cancelled
                continue  # close() cancelled the shared attempt: the loop says so
            if fresh.closed is not None:
                raise fresh.closed  # it ended as soon as it opened: no storm of new ones
            if fresh.limit <= 0:
                # MAX_CONCURRENT_STREAMS 0 (a server shedding load): more connections would
                # only be more of the same.
                raise RpcError("UNAVAILABLE", f"{self.endpoint} accepts no new calls now")

    def _refuse_within_backoff(self) -> None:
        """After a failed connect, calls fail fast until the backoff is over, as gRPC's do
        in TRANSIENT_FAILURE: during an outage a thousand calls each retrying on their own
        schedule would otherwise dial (and resolve, and handshake) the endpoint many times a
        second. The first call after the backoff makes the one next attempt."""
        if not self._failed:
            return
        wait = self._retry_at - asyncio.get_running_loop().time()
        if wait > 0:
            self.calls_refused_in_backoff += 1
            raise RpcError("UNAVAILABLE", f"{self._last_error} (next attempt in {wait:.1f} s)")

    def _roomiest(self) -> H2Connection | None:
        best: H2Connection | None = None
        room = 0
        for conn in self._connections:
            c = conn.capacity
            if c > room:
                best, room = conn, c
        return best

    async def _connect(self) -> H2Connection:
        loop = asyncio.get_running_loop()
        transport: asyncio.BaseTransport | None = None
        connected = False
        try:
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    transport, conn = await loop.create_connection(
                        self._protocol,
                        self._host,
                        self._port,
                        ssl=self._ssl,
                        server_hostname=self._host if self._ssl is not None else None,
                    )
                    tls = transport.get_extra_info("ssl_object")
                    if tls is not None and tls.selected_alpn_protocol() != "h2":
                        raise RpcError("UNAVAILABLE", f"{self.endpoint} did not agree to HTTP/2")
                    await conn.ready  # the server's SETTINGS: its stream limit is known
                if conn.capacity <= 0:  # MAX_CONCURRENT_STREAMS 0, or a GOAWAY already
                    # Closed here rather than kept: each retry would add another useless one.
                    raise RpcError("UNAVAILABLE", f"{self.endpoint} accepts no new calls now")
            except TimeoutError:
                raise RpcError("UNAVAILABLE", f"connect to {self.endpoint} timed out") from None
            except ssl.SSLError as exc:
                raise RpcError("UNAVAILABLE", f"TLS with {self.endpoint}: {exc.reason}") from None
            except OSError as exc:
                why = exc.strerror or type(exc).__name__
                raise RpcError("UNAVAILABLE", f"cannot connect to {self.endpoint}: {why}") from None
        except RpcError as exc:
            self._failed = True
            self._last_error = exc.message
            self._retry_at = loop.time() + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, _BACKOFF_MAX_S)
            raise
        else:
            connected = True
        finally:
            self._connecting = None
            if transport is not None and not connected:
                transport.close()  # a socket up but no usable connection: not left open
        self._failed = False
        self._backoff_s = _BACKOFF_FIRST_S
        self._connections.append(conn)
        self.connections_opened += 1
        return conn

    def _protocol(self) -> H2Connection:
        keepalive_s, keepalive_timeout_s = self._keepalive
        return H2Connection(
            self._authority,
            self._scheme,
            max_streams=self._max_streams,
            max_receive=self._max_receive,
            keepalive_s=keepalive_s,
            keepalive_timeout_s=keepalive_timeout_s,
            coalesce_s=self._coalesce_s,
            on_closed=self._dropped,
        )

    def _dropped(self, conn: H2Connection) -> None:
        with contextlib.suppress(ValueError):
            self._connections.remove(conn)
        keepalive_s, keepalive_timeout_s = self._keepalive
        if conn.keepalive_s > keepalive_s:  # "too many pings": the next connection slows too
            self._keepalive = (conn.keepalive_s, keepalive_timeout_s)

    def connectivity(self, try_to_connect: bool = True) -> str:
        """READY, CONNECTING, TRANSIENT_FAILURE, IDLE or SHUTDOWN (gRPC's names).

        With ``try_to_connect`` an idle or failed channel starts a connection attempt (after
        a failure, no sooner than its backoff allows), as gRPC's ``get_state`` does.
        """
        if self._shut:
            return "SHUTDOWN"
        if any(conn.closed is None for conn in self._connections):
            return "READY"
        if self._connecting is not None:
            return "CONNECTING"
        state = "TRANSIENT_FAILURE" if self._failed else "IDLE"
        if try_to_connect:
            loop = asyncio.get_running_loop()
            if not self._failed or loop.time() >= self._retry_at:
                self._connecting = loop.create_task(self._connect())
                self._connecting.add_done_callback(_consume_result)
                return "CONNECTING"
        return state

    async def close(self) -> None:
        self._shut = True
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, RpcError):
                await self._connecting
        for conn in list(self._connections):
            conn.close()
        self._connections.clear()


def _consume_result(task: asyncio.Task[H2Connection]) -> None:
    """A background attempt's failure is the state it leaves, not an unhandled exception."""
    if not task.cancelled():
        task.exception()
