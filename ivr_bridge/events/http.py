"""A small keep-alive HTTP/1.1 client for the webhook sink: one origin, pooled connections.

Why not httpx here: with dozens of connections in flight its pool does work proportional to
connections x waiting requests on every request, and the webhook sink must keep thousands
of events a second moving on a shared core. This client does only what a webhook needs: a
POST with a small body, and the answer's status and headers back (its body is read and
dropped). Requests are formatted here; answers are parsed by ``read_response`` (status line,
headers, then a Content-Length, chunked or no body), strictly and with size limits.

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

_MAX_HEAD = 64 * 1024
_MAX_BODY = 1024 * 1024
_NO_BODY = frozenset({204, 304})


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

    def close(self) -> None:
        self.writer.close()


class ProtocolViolation(Exception):
    """The server's answer is not HTTP/1.1 as we read it."""


async def read_response(reader: asyncio.StreamReader) -> tuple[HttpResponse, bool]:
    """Read one answer; returns it and whether the connection may be reused."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise ProtocolViolation("header too large") from exc
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolViolation("bad status line")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolViolation("bad header line")
        headers[name.lower()] = value.strip()
    if 100 <= status < 200:
        return await read_response(reader)  # 100 Continue and friends: the real answer follows
    reusable = parts[0] == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if status in _NO_BODY:
        return HttpResponse(status, headers), reusable
    if "chunked" in headers.get("transfer-encoding", "").lower():
        await _skip_chunked(reader)
    elif "content-length" in headers:
        length = headers["content-length"]
        if not length.isdigit() or int(length) > _MAX_BODY:
            raise ProtocolViolation("bad content-length")
        await reader.readexactly(int(length))
    else:
        return HttpResponse(status, headers), False  # body runs to the close: not reusable
    return HttpResponse(status, headers), reusable


async def _skip_chunked(reader: asyncio.StreamReader) -> None:
    total = 0
    while True:
        size_line = (await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError as exc:
            raise ProtocolViolation("bad chunk size") from exc
        total += size
        if size < 0 or total > _MAX_BODY:
            raise ProtocolViolation("body too large")
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return
        await reader.readexactly(size + 2)


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
        return _Connection(reader, writer)

    async def _exchange(
        self, conn: _Connection, body: bytes, headers: list[tuple[str, str]]
    ) -> HttpResponse:
        head = [
            f"POST {self._target} HTTP/1.1",
            f"host: {self._authority}",
            f"user-agent: {self._user_agent}",
            f"content-length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers),
        ]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        try:
            async with asyncio.timeout(self._timeout):
                conn.writer.write(request)
                await conn.writer.drain()
                response, reusable = await read_response(conn.reader)
        except BaseException as exc:
            conn.close()
            failure = OSError | asyncio.IncompleteReadError | ProtocolViolation
            if isinstance(exc, failure):
                raise _NoAnswer(type(exc).__name__) from exc
            if isinstance(exc, TimeoutError):
                raise HttpError(type(exc).__name__) from exc
            raise
        if reusable and len(self._idle) < self._size:
            self._idle.append(conn)
        else:
            conn.close()
        return response

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()


class _NoAnswer(HttpError):
    """Failed before any answer: safe to try again on a new connection."""
