"""What the call simulator needs from a platform's side of a dialect: a client encoder.

An encoder produces what one platform sends for one call, sans-I/O: the upgrade (URL and
headers, with the platform's authentication), the opening frames, one audio frame at a time,
DTMF, a pause in media, the closing frames, and replies to what the bridge sends (AudioHook's
client must answer ``opened``, ``pong`` and ``closed``, for example). ``simulate.py`` owns the
socket and the pacing; a new dialect plugs in by writing an encoder and listing it there.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

Frame = str | bytes


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """How the simulated platform authenticates: the bridge's ``auth`` scheme and secrets."""

    scheme: str = "none"  # "none" | "signature" | "token" | "basic" | a dialect's own
    secrets: Mapping[str, str] = field(default_factory=dict)

    def basic_header(self) -> str:
        pair = f"{self.secrets.get('username', '')}:{self.secrets.get('password', '')}"
        return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


class ClientEncoder(Protocol):
    """One simulated call on one platform. Frames are returned, never sent."""

    dialect: str
    tracks: tuple[str, ...]  # "inbound" (the caller) and optionally "outbound"
    sample_rate: int  # rate of the PCM16 that ``audio`` takes
    frame_ms: int  # the platform's frame length

    @property
    def call_id(self) -> str: ...

    @property
    def stream_id(self) -> str: ...

    def upgrade(self, url: str) -> tuple[str, dict[str, str]]:
        """The URL to dial and the headers to send, authenticated as the platform does."""
        ...

    def opening(self) -> list[Frame]:
        """Frames sent right after the upgrade (connected, start, open...)."""
        ...

    def audio(self, pcm: bytes, track: str) -> tuple[Frame, int]:
        """One frame carrying ``pcm`` (PCM16 at ``sample_rate``); also its payload size."""
        ...

    def skip(self, ms: float) -> None:
        """Time passes with no media (a gap or hold); timestamps move on."""
        ...

    def digit(self, digit: str) -> list[Frame]:
        """A DTMF key press."""
        ...

    def closing(self) -> list[Frame]:
        """The platform's goodbye (stop, close...)."""
        ...

    def on_server_frame(self, frame: Frame) -> list[Frame]:
        """Replies due to a frame from the bridge (most platforms: none)."""
        ...
