"""The websocket front door: route by path to a dialect, authenticate, health, limits, drain.

The only module that imports websockets (the simulator aside, which is a client tool). It
knows no dialect: the routes (path -> :class:`~ivr_bridge.dialects.registry.Route`) come
from the caller. On each upgrade, before the websocket handshake completes, it refuses a
browser ``Origin`` the route does not allow, builds an :class:`UpgradeRequest` and lets the
dialect's factory authenticate it, so a refused upgrade is an HTTP 400/401/403 and never
reaches call.py or opens a recognition session.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import socket
import ssl
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from http import HTTPStatus
from typing import Any

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from ivr_bridge import __version__
from ivr_bridge.call import Call, CallOptions
from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.dialects.base import Dialect, UpgradeRefused, UpgradeRequest
from ivr_bridge.dialects.registry import Route
from ivr_bridge.events.bus import EventBus
from ivr_bridge.events_api import PATH as EVENTS_PATH
from ivr_bridge.events_api import EventsApi
from ivr_bridge.limits import AddressSlots, CloseFrame, RateLimitedLog, close_reason
from ivr_bridge.media_connection import MediaConnection, MediaRuns
from ivr_bridge.metrics import Metrics
from ivr_bridge.overload import AdmissionPolicy, LoadMonitor, OverloadLimits
from ivr_bridge.recognition.base import Recognizer
from ivr_bridge.workers import WorkerPeers

log = structlog.get_logger(__name__)


def _end_reason(closed: ConnectionClosed) -> str | None:
    sent = CloseFrame(closed.sent.code, closed.sent.reason) if closed.sent else None
    rcvd = CloseFrame(closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else None
    # Only a close our side sent first says what went wrong on the wire.
    first = sent if sent is not None and not closed.rcvd_then_sent else None
    return close_reason(first, rcvd)


class _WebsocketStream:
    """Adapts a websockets connection to call.MessageStream (and, for a media connection,
    to call.PushStream: messages delivered straight from the transport)."""

    def __init__(self, ws: ServerConnection) -> None:
        self._ws = ws
        self.end_reason: str | None = None  # set when the transport ended it (call.py reads it)

    async def recv(self) -> str | bytes | None:
        try:
            return await self._ws.recv()
        except ConnectionClosed as closed:
            self.end_reason = _end_reason(closed)
            return None

    async def send(self, message: str | bytes) -> None:
        try:
            await self._ws.send(message)
        except ConnectionClosed:
            log.debug("send_after_close")

    async def close(self, code: int, reason: str) -> None:
        # Discard what the peer still sends during the close handshake: with the receive queue
        # full, websockets stops reading, and a flooding peer's close frame then went unread
        # until close_timeout (the socket held 5 s longer).
        discard = asyncio.create_task(self._discard_incoming())
        try:
            await self._ws.close(code, reason)
        finally:
            discard.cancel()

    async def _discard_incoming(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self._ws.recv()


class _MediaStream(_WebsocketStream):
    """A media connection's stream: the call is handed every message as it is parsed."""

    def __init__(self, ws: MediaConnection) -> None:
        super().__init__(ws)
        self._media = ws

    def attach(
        self,
        consumer: Callable[[str | bytes], None],
        hint: Callable[[], tuple[int, float] | None] | None = None,
        runs: MediaRuns | None = None,
    ) -> None:
        self._media.attach(consumer, hint, runs)

    def detach(self) -> None:
        self._media.detach()

    async def wait_closed(self) -> None:
        await self._media.wait_closed()
        self.end_reason = _end_reason(self._media.protocol.close_exc)


def upgrade_request(
    request: Request, *, remote_address: str, public_url: str, now: float
) -> UpgradeRequest:
    """The upgrade as a dialect factory sees it; ``url`` is what the platform called (and
    signed): ``public_url`` (or ws:// and the Host header) plus the path and query as sent."""
    path, _, query = request.path.partition("?")
    pairs = tuple((name.lower(), value) for name, value in request.headers.raw_items())
    headers: dict[str, str] = {}
    for name, value in pairs:
        headers.setdefault(name, value)
    base = public_url.rstrip("/") if public_url else "ws://" + headers.get("host", "localhost")
    return UpgradeRequest(
        path=path,
        query_string=query,
        headers=headers,
        header_list=pairs,
        url=base + request.path,
        remote_address=remote_address,
        now=now,
    )


class BridgeServer:
    """Serves one websocket per call on the given routes; GET /healthz, /readyz, /metrics.

    ``start()`` listens; ``drain()`` stops taking calls and ends the live ones politely.
    """

    def __init__(
        self,
        *,
        routes: Mapping[str, Route],
        recognizer: Recognizer,
        bus: EventBus,
        options: CallOptions,
        host: str = "127.0.0.1",
        port: int = 0,
        max_message_bytes: int = 64 * 1024,
        ping_interval_s: float = 10.0,
        ping_timeout_s: float = 10.0,
        open_timeout_s: float = 10.0,
        max_calls: int = 500,
        recognizer_label: str = "",
        clock: Clock = SYSTEM_CLOCK,
        public_url: str = "",
        events_api: EventsApi | None = None,
        max_connections_per_ip: int = 0,
        tls: ssl.SSLContext | None = None,
        health_probe: Callable[[], tuple[dict[str, Any], bool]] | None = None,
        overload: OverloadLimits | None = None,
        sock: socket.socket | None = None,
        peers: WorkerPeers | None = None,
    ) -> None:
        self._routes = dict(routes)
        self._addresses = AddressSlots(max_connections_per_ip)
        self._address_watch: set[asyncio.Task[None]] = set()
        self._tls = tls
        # (components for /healthz, ready?) from the app: recognizer reachability, sinks.
        self._health_probe = health_probe
        self._fd_log = RateLimitedLog(10.0)
        self._previous_handler: Any = None
        self._handler_installed = False
        self._events_api = events_api  # GET /events, when a token is configured
        self._public_url = public_url
        # The dialect a factory built in process_request, for the handler of that connection.
        self._accepted: weakref.WeakKeyDictionary[ServerConnection, tuple[Route, Dialect]] = (
            weakref.WeakKeyDictionary()
        )
        # A refusal to hold back before answering (the factory's ``refusal_delay_s``).
        self._refusal_delay: weakref.WeakKeyDictionary[ServerConnection, float] = (
            weakref.WeakKeyDictionary()
        )
        self._recognizer = recognizer
        self._bus = bus
        self._options = options
        self._host = host
        self._port = port
        self._max_size = max_message_bytes
        self._ping_interval = ping_interval_s
        self._ping_timeout = ping_timeout_s
        self._open_timeout = open_timeout_s
        self._max_calls = max_calls
        self._recognizer_label = recognizer_label
        self._clock = clock
        self._server: Server | None = None
        self._calls: set[Call] = set()
        self._draining = False
        self._idle = asyncio.Event()
        self.calls_total = 0
        self.calls_rejected = 0
        self.metrics = Metrics()
        limits = overload or OverloadLimits(max_calls=max_calls, max_loop_lag_ms=0.0)
        self.admission = AdmissionPolicy(limits)
        self._monitor = LoadMonitor(self.admission, self._fd_pressure)
        # One worker of several (workers.py): accept on the shared socket, answer health and
        # metrics for the whole service.
        self._sock = sock
        self._peers = peers
        self._metrics_sources: list[Callable[[], Mapping[str, int]]] = []

    def add_metrics_source(self, source: Callable[[], Mapping[str, int]]) -> None:
        """More gauges and totals for /metrics (the AudioSocket listener's, for one)."""
        self._metrics_sources.append(source)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        sock = next(iter(self._server.sockets))
        return int(sock.getsockname()[1])

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._loop_exception)
        self._handler_installed = True
        where: dict[str, Any] = (
            {"sock": self._sock} if self._sock else {"host": self._host, "port": self._port}
        )
        self._server = await serve(
            self._handle,
            **where,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            max_size=self._max_size,
            max_queue=32,
            compression=None,
            server_header=None,
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_timeout,
            open_timeout=self._open_timeout,
            close_timeout=5,
            ssl=self._tls,
            create_connection=MediaConnection,
        )
        self._monitor.start()
        if self._peers is not None:
            self._peers.start(lambda: (self._health(), self._metrics_text()))
        log.info(
            "bridge_listening",
            host=self._host,
            port=self.port,
            paths={path: route.auth for path, route in sorted(self._routes.items())},
        )
        for route in self._routes.values():
            if route.auth == "none":
                log.info("dialect_unauthenticated", dialect=route.name, path=route.path)
        return self.port

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Out of file descriptors, asyncio's accept() reports every failure with a traceback;
        say it once per 10 s instead (pending connections wait in the backlog meanwhile)."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            self.metrics.connection_refused("fd_limit")
            self._log_fd_limit(errno.errorcode.get(exc.errno or 0, "?"))
            return
        if self._previous_handler is not None:
            self._previous_handler(loop, context)
        else:
            loop.default_exception_handler(context)

    def _fd_pressure(self) -> None:
        """The load monitor found descriptors near the limit: the same line, whichever event
        loop runs (uvloop accepts and drops connections past the limit without a word)."""
        self._log_fd_limit("near_limit")

    def _log_fd_limit(self, error: str) -> None:
        if self._fd_log.should_log(self._clock.now()):
            log.error(
                "fd_limit_reached",
                error=error,
                open_fds=self.admission.fds,
                limit=self.admission.fd_limit,
                suppressed=self._fd_log.take_suppressed(),
                active_calls=len(self._calls),
            )

    # ---- HTTP side: health and routing before the upgrade ------------------------------

    def _json(self, status: HTTPStatus, body: dict[str, object]) -> Response:
        data = (json.dumps(body) + "\n").encode()
        headers = Headers(
            [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return Response(status.value, status.phrase, headers, data)

    def _health(self) -> dict[str, Any]:
        components, _ = self._health_probe() if self._health_probe else ({}, True)
        degraded = any(c.get("status") != "ok" for c in components.values())
        return {
            "status": "degraded" if degraded else "ok",
            "version": __version__,
            "active_calls": len(self._calls),
            "calls_total": self.calls_total,
            "recognizer": self._recognizer_label,
            "draining": self._draining,
            "components": components,
        }

    def _metrics_text(self) -> str:
        return self.metrics.render(
            {
                "active_calls": len(self._calls),
                "calls_rejected": self.calls_rejected,
                "draining": float(self._draining),
                "events_published": self._bus.published,
                "event_loop_lag_ms": self.admission.loop_lag_ms,
                "process_cpu": self.admission.cpu,
                **{k: v for source in self._metrics_sources for k, v in source().items()},
            },
            {name: asdict(st) for name, st in self._bus.stats().items()},
            factories=self._factory_counters(),
        )

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """Answer HTTP requests and refused upgrades; a refusal may be held back a while
        (AudioHook: slows down guessing). Each handshake runs in its own task, so the
        wait delays only that peer, never another connection."""
        response = self._route_request(connection, request)
        delay = self._refusal_delay.pop(connection, 0.0)
        if response is not None and delay > 0:
            await self._clock.sleep(delay)
        return response

    def _select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        """The first subprotocol the client offered that its route's platform uses."""
        accepted = self._accepted.get(connection)
        if accepted is None:
            return None
        route = accepted[0]
        return next((p for p in offered if p in route.subprotocols), None)

    def _route_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path in ("/healthz", "/livez"):
            body = self._health()
            if self._peers is not None:
                body = self._peers.health(body)
            # Liveness stays 200: a restart cures neither an outage nor a full disk.
            return self._json(HTTPStatus.OK, body)
        if path == "/metrics":
            text = self._metrics_text()
            if self._peers is not None:
                text = self._peers.metrics(text)
            data = text.encode()
            headers = Headers(
                [("Content-Type", "text/plain; version=0.0.4"), ("Content-Length", str(len(data)))]
            )
            return Response(200, "OK", headers, data)
        if path == EVENTS_PATH and self._events_api is not None:
            return self._events_api.accept(connection, request)
        if path == "/readyz":
            _, recognizer_ok = self._health_probe() if self._health_probe else ({}, True)
            ready = recognizer_ok and not self._draining
            status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
            why = "draining" if self._draining else "" if ready else "recognizer unreachable"
            return self._json(status, {"ready": ready, **({"why": why} if why else {})})
        route = self._routes.get(path.rstrip("/"))
        if route is None:
            return self._json(HTTPStatus.NOT_FOUND, {"error": "unknown path"})
        if self._draining:
            self.calls_rejected += 1
            return self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "not accepting calls"})
        refusal = self.admission.check(len(self._calls))
        if refusal is not None:
            # Overloaded: refuse this call so the ones in progress stay real time.
            self.calls_rejected += 1
            log.warning("call_refused", reason=refusal.reason, detail=refusal.detail)
            busy = self._json(
                HTTPStatus.SERVICE_UNAVAILABLE,
                {"error": "overloaded", "reason": refusal.reason, "detail": refusal.detail},
            )
            busy.headers["Retry-After"] = "1"
            return busy
        address = str(connection.remote_address[0]) if connection.remote_address else ""
        if not self._addresses.acquire(address):
            self.metrics.connection_refused("per_address_cap")
            log.warning("connection_refused", reason="per_address_cap", remote=address)
            return self._json(HTTPStatus.TOO_MANY_REQUESTS, {"error": "too many connections"})
        response = self._open_dialect(connection, request, route)
        # The slot is held until the TCP connection is gone, however the websocket ends.
        task = asyncio.create_task(self._release_address(connection, address))
        self._address_watch.add(task)
        task.add_done_callback(self._address_watch.discard)
        return response

    async def _release_address(self, connection: ServerConnection, address: str) -> None:
        try:
            await connection.wait_closed()
        finally:
            self._addresses.release(address)

    def _factory_counters(self) -> dict[str, Mapping[str, int]]:
        """Each dialect factory's own counters (AudioHook: signature checks, replays...)."""
        out: dict[str, Mapping[str, int]] = {}
        for route in self._routes.values():
            counters = getattr(route.factory, "counters", None)
            if callable(counters):
                out[route.name] = counters()
        return out

    def _open_dialect(
        self, connection: ServerConnection, request: Request, route: Route
    ) -> Response | None:
        """Origin check, then the factory's authentication; None lets the handshake go on."""
        remote = connection.remote_address
        address = str(remote[0]) if remote else ""
        origin = request.headers.get("Origin")
        try:
            if origin is not None and origin not in route.allowed_origins:
                # Platforms send no Origin; a browser does (cross-site websocket hijacking).
                raise UpgradeRefused(403, "origin not allowed")
            upgrade = upgrade_request(
                request, remote_address=address, public_url=self._public_url, now=self._clock.wall()
            )
            dialect = route.factory.open(upgrade)
        except UpgradeRefused as refused:
            self.metrics.upgrade_refused(route.name, refused.reason)
            self._refusal_delay[connection] = float(getattr(route.factory, "refusal_delay_s", 0.0))
            log.warning(
                "upgrade_refused",
                dialect=route.name,
                status=refused.status,
                reason=refused.reason,
                remote=address,
            )
            status = HTTPStatus(refused.status)
            return self._json(status, {"error": refused.reason})
        except Exception:
            # A bug in one factory refuses that upgrade; the server and other calls go on.
            log.exception("dialect_factory_failed", dialect=route.name)
            self.metrics.upgrade_refused(route.name, "internal error")
            return self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})
        self._accepted[connection] = (route, dialect)
        if isinstance(connection, MediaConnection):
            connection.expect_media()
        return None

    # ---- one websocket = one call -------------------------------------------------------

    def find_call(self, call_id: str) -> Call | None:
        """The live call with this id, if this bridge owns it (commands are routed here)."""
        return next((call for call in self._calls if call.call_id == call_id), None)

    async def _handle(self, ws: ServerConnection) -> None:
        if self._events_api is not None and self._events_api.owns(ws):
            await self._events_api.serve(ws)
            return
        accepted = self._accepted.pop(ws, None)
        if accepted is None:  # process_request refused or never ran: nothing to serve
            await ws.close(1008, "unknown path")
            return
        _, dialect = accepted
        call = Call(
            call_id="call_" + uuid.uuid4().hex[:20],
            dialect=dialect,
            stream=_MediaStream(ws) if isinstance(ws, MediaConnection) else _WebsocketStream(ws),
            recognizer=self._recognizer,
            options=self._options,
            bus=self._bus,
            clock=self._clock,
            metrics=self.metrics,
        )
        self._calls.add(call)
        self.calls_total += 1
        try:
            await call.run()
        finally:
            self._calls.discard(call)
            if not self._calls:
                self._idle.set()

    # ---- shutdown -------------------------------------------------------------------

    async def drain(self, timeout_s: float) -> None:
        """Stop taking calls, let live ones finish for up to ``timeout_s``, then end them."""
        self._draining = True
        log.info("drain_started", active_calls=len(self._calls), timeout_s=timeout_s)
        if self._calls:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_for(self._idle.wait(), timeout_s)
        for call in list(self._calls):
            call.request_stop()
        if self._calls:
            await self._idle.wait()
        await self.stop()

    async def stop(self) -> None:
        await self._monitor.stop()
        if self._peers is not None:
            await self._peers.stop()
        if self._server is not None:
            self._server.close(close_connections=True, code=1001, reason="bridge shutting down")
            await self._server.wait_closed()
            self._server = None
        if self._address_watch:
            await asyncio.gather(*self._address_watch, return_exceptions=True)
        if self._handler_installed:
            self._handler_installed = False
            asyncio.get_running_loop().set_exception_handler(self._previous_handler)
