"""The webhook's HTTP/1.1 client against scripted servers on loopback: bodies by length and
chunks, keep-alive reuse and its limits, a stale idle connection, and answers that are not
HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from ivr_bridge.events.http import HttpError, HttpPool

Script = Callable[[int], bytes | None]  # request number -> raw answer, or None to hang up


class Scripted:
    def __init__(self, script: Script, close_after_answer: bool = False) -> None:
        self.script = script
        self.close_after_answer = close_after_answer
        self.requests: list[bytes] = []
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.requests.append(head + await reader.readexactly(length))
                answer = self.script(len(self.requests))
                if answer is None:
                    return
                writer.write(answer)
                await writer.drain()
                if self.close_after_answer:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Scripted], asyncio.Future[str]]]:
    servers: list[asyncio.Server] = []

    async def start(s: Scripted) -> str:
        server = await asyncio.start_server(s.serve, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/in?x=1"

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()


def pool(url: str, timeout_s: float = 5.0) -> HttpPool:
    return HttpPool(url, size=4, timeout_s=timeout_s, user_agent="t")


async def test_bodies_by_length_and_chunks_keep_the_connection(serve: object) -> None:
    answers = {
        1: b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
        2: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        3: b"HTTP/1.1 429 Slow\r\nRetry-After: 7\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\n",
    }
    s = Scripted(lambda n: answers[n])
    url = await serve(s)  # type: ignore[operator]
    p = pool(url)
    got = [await p.post(b"{}", [("webhook-id", "evt_1")]) for _ in range(3)]
    await p.aclose()
    assert [r.status for r in got] == [200, 204, 429]
    assert got[2].headers["retry-after"] == "7"
    assert s.connections == 1 and p.opened == 1
    first = s.requests[0]
    assert first.startswith(b"POST /in?x=1 HTTP/1.1\r\n")
    assert b"webhook-id: evt_1\r\n" in first and first.endswith(b"\r\n\r\n{}")


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",  # no length: the body runs to the close
    ],
)
async def test_answers_that_end_the_connection_are_not_reused(serve: object, answer: bytes) -> None:
    s = Scripted(lambda _n: answer, close_after_answer=True)
    url = await serve(s)  # type: ignore[operator]
    p = pool(url)
    assert (await p.post(b"1", [])).status == 200
    assert (await p.post(b"2", [])).status == 200
    await p.aclose()
    assert s.connections == 2


async def test_a_stale_idle_connection_is_retried_once_on_a_new_one(serve: object) -> None:
    ok = b"HTTP/1.1 204 OK\r\n\r\n"
    s = Scripted(lambda n: ok if n != 2 else None)  # hangs up on the second request
    url = await serve(s)  # type: ignore[operator]
    p = pool(url)
    await p.post(b"a", [])
    assert (await p.post(b"b", [])).status == 204
    await p.aclose()
    assert s.connections == 2 and len(s.requests) == 3


@pytest.mark.parametrize(
    "answer",
    [
        b"SPDY/3 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",  # then the server hangs up
    ],
)
async def test_answers_that_are_not_http_are_errors(serve: object, answer: bytes) -> None:
    s = Scripted(lambda _n: answer, close_after_answer=True)
    url = await serve(s)  # type: ignore[operator]
    p = pool(url)
    with pytest.raises(HttpError):
        await p.post(b"{}", [])
    await p.aclose()


async def test_refused_and_silent_servers_are_errors(serve: object) -> None:
    with pytest.raises(HttpError):
        await pool("http://127.0.0.1:9/x").post(b"{}", [])
    silent = Scripted(lambda _n: b"")  # reads the request, never answers
    url = await serve(silent)  # type: ignore[operator]
    with pytest.raises(HttpError, match="TimeoutError"):
        await pool(url, timeout_s=0.2).post(b"{}", [])


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="http"):
        HttpPool("ftp://x/", size=1, timeout_s=1, user_agent="t")
    assert HttpPool("https://h.example/", size=1, timeout_s=1, user_agent="t").host == "h.example"
