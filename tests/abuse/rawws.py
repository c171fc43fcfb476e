"""A hand-rolled websocket client for what a polite library will not send: invalid UTF-8,
half an upgrade, silence in reply to pings. Frames are built by hand (RFC 6455 section 5)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
from urllib.parse import urlsplit

OP_TEXT = 0x1
OP_CLOSE = 0x8


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked (client-to-server) frame."""
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def upgrade_request(url: str) -> bytes:
    parts = urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def read_server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One frame from the server (unmasked): its opcode and payload."""
    head = await reader.readexactly(2)
    n = head[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    return head[0] & 0x0F, await reader.readexactly(n)


class RawClient:
    """A TCP connection from ``local_host`` that speaks just enough websocket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, url: str, local_host: str) -> RawClient:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(
            parts.hostname, parts.port, local_addr=(local_host, 0)
        )
        return cls(reader, writer)

    async def upgrade(self, url: str) -> None:
        self.writer.write(upgrade_request(url))
        await self.writer.drain()
        status = await self.reader.readuntil(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status[:40]

    async def send(self, opcode: int, payload: bytes) -> None:
        self.writer.write(frame(opcode, payload))
        await self.writer.drain()

    async def close_code(self) -> int | None:
        """Read frames until the server's close frame; its code, or None if the TCP
        connection ended without one. Pings are read and left unanswered."""
        while True:
            try:
                opcode, payload = await read_server_frame(self.reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            if opcode == OP_CLOSE:
                return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else 1005

    async def eof(self) -> bool:
        """True once the server has closed the TCP connection."""
        try:
            while await self.reader.read(4096):
                pass
        except ConnectionError:
            pass
        return True

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
