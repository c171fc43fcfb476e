"""The mounted form: your own websocket server accepts the call, the bridge runs it.

    bridge = BridgeApp(settings, listen=False)   # no listener of its own
    await bridge.start()

    async def on_connect(ws):                    # websockets.asyncio.server handler
        await bridge.handle(WebsocketsStream(ws), "twilio")

Any other server works through a small object with ``recv``/``send``/``close``
(:class:`ivr_bridge.call.MessageStream`); this adapter is the one for ``websockets``.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from websockets.exceptions import ConnectionClosed


class _Connection(Protocol):
    async def recv(self) -> str | bytes: ...

    async def send(self, message: str | bytes) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class WebsocketsStream:
    """A ``websockets`` connection (server or client side) as a call's MessageStream."""

    def __init__(self, connection: _Connection) -> None:
        self._ws = connection

    async def recv(self) -> str | bytes | None:
        try:
            return await self._ws.recv()
        except ConnectionClosed:
            return None

    async def send(self, message: str | bytes) -> None:
        # The platform hung up: the reader sees the end next.
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(message)

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)
