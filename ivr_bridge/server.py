"""The websocket front door: route by path to a dialect, health checks, limits, drain.

The only module that imports websockets (the simulator aside, which is a client tool).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from dataclasses import asdict
from http import HTTPStatus

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ivr_bridge import __version__
from ivr_bridge.call import Call, CallOptions
from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.dialects.base import Dialect
from ivr_bridge.dialects.twilio import TwilioDialect
from ivr_bridge.events.bus import EventBus
from ivr_bridge.metrics import Metrics
from ivr_bridge.recognition.base import Recognizer

log = structlog.get_logger(__name__)

DIALECTS: dict[str, Callable[[], Dialect]] = {
    "/twilio": TwilioDialect,
}


class _WebsocketStream:
    """Adapts a websockets connection to call.MessageStream."""

    def __init__(self, ws: ServerConnection) -> None:
        self._ws = ws

    async def recv(self) -> str | bytes | None:
        try:
            return await self._ws.recv()
        except ConnectionClosed:
            return None

    async def send(self, message: str | bytes) -> None:
        try:
            await self._ws.send(message)
        except ConnectionClosed:
            log.debug("send_after_close")

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)


class BridgeServer:
    """The websocket listener: one :class:`~ivr_bridge.call.Call` per connection, plus health.

    Await :meth:`start` (returns the bound port), then at shutdown await :meth:`drain` with the
    drain timeout, which stops taking calls, lets live ones finish, ends the rest and closes
    the listener. :meth:`stop` closes at once without waiting for calls.
    """

    def __init__(
        self,
        *,
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
    ) -> None:
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
        self._server = await serve(
            self._handle,
            self._host,
            self._port,
            process_request=self._process_request,
            max_size=self._max_size,
            max_queue=32,
            compression=None,
            server_header=None,
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_timeout,
            open_timeout=self._open_timeout,
            close_timeout=5,
        )
        log.info("bridge_listening", host=self._host, port=self.port, paths=sorted(DIALECTS))
        return self.port

    # ---- HTTP side: health and routing before the upgrade ------------------------------

    def _json(self, status: HTTPStatus, body: dict[str, object]) -> Response:
        data = (json.dumps(body) + "\n").encode()
        headers = Headers(
            [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return Response(status.value, status.phrase, headers, data)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path in ("/healthz", "/livez"):
            return self._json(
                HTTPStatus.OK,
                {
                    "status": "ok",
                    "version": __version__,
                    "active_calls": len(self._calls),
                    "calls_total": self.calls_total,
                    "recognizer": self._recognizer_label,
                    "draining": self._draining,
                },
            )
        if path == "/metrics":
            body = self.metrics.render(
                {
                    "active_calls": len(self._calls),
                    "calls_rejected": self.calls_rejected,
                    "draining": float(self._draining),
                    "events_published": self._bus.published,
                },
                {name: asdict(st) for name, st in self._bus.stats().items()},
            ).encode()
            headers = Headers(
                [("Content-Type", "text/plain; version=0.0.4"), ("Content-Length", str(len(body)))]
            )
            return Response(200, "OK", headers, body)
        if path == "/readyz":
            status = HTTPStatus.SERVICE_UNAVAILABLE if self._draining else HTTPStatus.OK
            return self._json(status, {"ready": not self._draining})
        if path.rstrip("/") not in DIALECTS:
            return self._json(HTTPStatus.NOT_FOUND, {"error": "unknown path"})
        if "?" in request.path and path.rstrip("/") == "/twilio":
            # Twilio never sends a query string; refusing one keeps tokens out of URLs and logs.
            return self._json(HTTPStatus.BAD_REQUEST, {"error": "query strings are not accepted"})
        if self._draining or len(self._calls) >= self._max_calls:
            self.calls_rejected += 1
            return self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "not accepting calls"})
        return None

    # ---- one websocket = one call -------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path.split("?", 1)[0].rstrip("/") if ws.request else ""
        factory = DIALECTS.get(path)
        if factory is None:
            await ws.close(1008, "unknown path")
            return
        call = Call(
            call_id="call_" + uuid.uuid4().hex[:20],
            dialect=factory(),
            stream=_WebsocketStream(ws),
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
        if self._server is not None:
            self._server.close(close_connections=True, code=1001, reason="bridge shutting down")
            await self._server.wait_closed()
            self._server = None
