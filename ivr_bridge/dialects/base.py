"""What every dialect offers call.py. No asyncio, no sockets, no clock."""

from __future__ import annotations

from typing import Protocol

from ivr_bridge.model import DialectEvent


class Dialect(Protocol):
    name: str

    def receive_text(self, text: str) -> list[DialectEvent]:
        """Feed one text frame. Raises DialectError when the PBX breaks the protocol."""
        ...

    def receive_bytes(self, data: bytes) -> list[DialectEvent]:
        """Feed one binary frame. Raises DialectError when the PBX breaks the protocol."""
        ...

    def data_to_send(self) -> list[str | bytes]:
        """Replies queued for the PBX (acks, pongs, back-channel), drained by the caller."""
        ...
