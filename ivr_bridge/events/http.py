"""A small keep-alive HTTP/1.1 client for the webhook sink: one origin, pooled connections.

Why not httpx here: with dozens of connections in flight its pool does work proportional to
connections x waiting requests on every request, and the webhook sink must keep thousands
of events a second moving on a shared core. This client does only what a webhook needs (a
POST with a small body, status and headers back) on asyncio streams with h11 parsing the
protocol, reusing an idle connection whenever the last exchange ended cleanly.

The caller bounds concurrency (the bus runs at most ``size`` deliveries per sink); the pool
keeps at most ``size`` idle connections. A request that fails on a reused connection before
any answer arrived (the server closed it while idle) is retried once on a fresh connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11


class HttpError(Exception):
    """The request did not get an answer: connection refused or reset, timeout, bad HTTP."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str]


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    h11: h11.Connection

    def close(self) -> None:
        self.writer.close()


class HttpPool:
    """POSTs to one URL over reused connections. ``aclose`` when done."""

    def __init__(self, url: str, *, size: int, timeout_s: float, user_agent: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http(s) URL")
        self.host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = self._port == (443 if self._tls else 80)
        self._authority = self.host if default_port else f"{self.host}:{self._port}"
        self._size = max(1, size)
        self._timeout = timeout_s
        self._user_agent = user_agent
        self._idle: list[_Connection] = []
        self.opened = 0

    async def post(self, body: bytes, headers: list[tuple[str, str]]) -> HttpResponse:
        conn = self._idle.pop() if self._idle else None
        if conn is not None:
            try:
                return await self._exchange(conn, body, headers)
            except _NoAnswer:
                pass  # closed by the server while idle: once more on a fresh connection
        try:
            conn = await asyncio.wait_for(self._connect(), self._timeout)
        except (OSError, TimeoutError) as exc:
            raise HttpError(type(exc).__name__) from exc
        try:
            return await self._exchange(conn, body, headers)
        except _NoAnswer as exc:
            raise HttpError(str(exc)) from exc

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(
            self.host, self._port, ssl=self._tls, server_hostname=self.host if self._tls else None
        )
        self.opened += 1
        return _Connection(reader, writer, h11.Connection(our_role=h11.CLIENT))

    async def _exchange(
        self, conn: _Connection, body: bytes, headers: list[tuple[str, str]]
    ) -> HttpResponse:
        answered = False
        try:
            async with asyncio.timeout(self._timeout):
                request = h11.Request(
                    method="POST",
                    target=self._target,
                    headers=[
                        ("host", self._authority),
                        ("user-agent", self._user_agent),
                        ("content-length", str(len(body))),
                        *headers,
                    ],
                )
                p = conn.h11
                conn.writer.write(
                    p.send(request) + p.send(h11.Data(data=body)) + p.send(h11.EndOfMessage())
                )
                await conn.writer.drain()
                response: h11.Response | None = None
                while True:
                    event = p.next_event()
                    if event is h11.NEED_DATA:
                        p.receive_data(await conn.reader.read(65536))
                    elif isinstance(event, h11.Response):
                        response, answered = event, True
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
                        raise ConnectionResetError("closed before the answer")
        except BaseException as exc:
            conn.close()
            if isinstance(exc, OSError | h11.ProtocolError) and not answered:
                raise _NoAnswer(type(exc).__name__) from exc
            if isinstance(exc, OSError | h11.ProtocolError | TimeoutError):
                raise HttpError(type(exc).__name__) from exc
            raise
        assert response is not None
        if p.our_state is h11.DONE and p.their_state is h11.DONE and len(self._idle) < self._size:
            p.start_next_cycle()
            self._idle.append(conn)
        else:
            conn.close()
        return HttpResponse(
            response.status_code,
            {k.decode("latin-1"): v.decode("latin-1") for k, v in response.headers},
        )

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()


class _NoAnswer(HttpError):
    """Failed before any answer: safe to try again on a new connection."""
