"""A small real HTTP/1.1 webhook receiver on a loopback port, for the sink tests and the
webhook benchmark: keep-alive, Content-Length bodies, a per-request answer chosen by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Answer = Callable[["Received"], Awaitable[int] | int]


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # wall time (time.time()) when the body was read, comparable across processes

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """``answer`` returns the status for each request (may be async, e.g. to sleep first).
    ``refuse`` True closes every new request's connection without an answer (a dead host)."""

    answer: Answer = lambda _r: 204
    refuse: bool = False
    delay_s: float = 0.0
    keep: bool = True  # keep what was received in ``got``
    got: list[Received] = field(default_factory=list)
    requests: int = 0
    _server: asyncio.Server | None = None
    _conns: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self, port: int = 0) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._conns):
                w.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if self.refuse:
                    return
                rec = Received(headers, body, time.time())
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                status = self.answer(rec)
                if not isinstance(status, int):
                    status = await status
                if 200 <= status < 300 and self.keep:
                    self.got.append(rec)
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._conns.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
