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
from urllib.parse import urlencode, urlsplit, urlunsplit

Frame = str | bytes


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """How the simulated platform authenticates: the bridge's ``auth`` scheme and secrets."""

    scheme: str = "none"  # "none" | "signature" | "token" | "basic" | a dialect's own
    secrets: Mapping[str, str] = field(default_factory=dict)

    def basic_header(self) -> str:
        return basic_authorization(
            self.secrets.get("username", ""), self.secrets.get("password", "")
        )


class ClientAuthLike(Protocol):
    """What a platform client needs of :class:`ClientAuth`: the scheme and the secrets."""

    @property
    def scheme(self) -> str: ...

    @property
    def secrets(self) -> Mapping[str, str]: ...


def basic_authorization(username: str, password: str) -> str:
    """An ``Authorization: Basic`` value, as a platform's websocket client sends it."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def authorization_headers(
    *, username: str | None = None, password: str | None = None, bearer: str | None = None
) -> list[tuple[str, str]]:
    """Basic credentials, or else a bearer token, as upgrade headers (none without either)."""
    if username is not None:
        return [("Authorization", basic_authorization(username, password or ""))]
    if bearer is not None:
        return [("Authorization", f"Bearer {bearer}")]
    return []


def with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` appended to its query string (tokens where headers cannot go)."""
    if not params:
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


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
