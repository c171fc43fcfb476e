"""What every dialect offers call.py and server.py. No asyncio, no sockets, no clock reads.

A dialect is a sans-I/O state machine for one PBX media protocol, one instance per connection:

* server.py builds it through the dialect's ``DialectFactory`` from the websocket upgrade
  (``UpgradeRequest``): the factory authenticates the request and may refuse it
  (``UpgradeRefused``) before any recognition session exists;
* call.py feeds it every inbound frame (``receive_text`` / ``receive_bytes``) and gets model
  events back; then, *after every call into the dialect*, it sends ``data_to_send()`` to the
  PBX and, if ``close_to_send()`` returns a code, closes the socket with it;
* the dialog logic's commands (play, mark, clear, send an event, hang up) reach the dialect as
  typed ``OutboundRequest`` values through ``send``; the replies are again in ``data_to_send``;
* ``receive_eof`` tells it the socket dropped, ``close`` that the bridge is ending the call, so
  it can say goodbye in its own protocol (AudioHook ``disconnect``, Twilio a plain close).

Any exception other than DialectError (or UnsupportedRequest from ``send``) is a bug.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import parse_qs

from ivr_bridge.errors import BridgeError
from ivr_bridge.model import DialectEvent


def _frozen(items: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(items or {}))


# ---- the upgrade -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """The HTTP upgrade as a dialect factory sees it (server.py fills it in).

    ``headers`` keys are lower-case; a repeated header keeps its first value (``header_list``
    keeps them all). ``url`` is the URL the platform called, as it would sign it: the configured
    public base URL (or scheme and Host header) plus the path and query, exactly as received.
    """

    path: str
    query_string: str = ""
    headers: Mapping[str, str] = field(default_factory=_frozen)
    header_list: tuple[tuple[str, str], ...] = ()
    url: str = ""
    remote_address: str = ""
    now: float = 0.0  # wall-clock seconds, for signature freshness checks

    @property
    def query(self) -> Mapping[str, list[str]]:
        return parse_qs(self.query_string, keep_blank_values=True)

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class UpgradeRefused(BridgeError):
    """The upgrade is refused with an HTTP status (401, 403, 400). ``reason`` is safe to show:
    it never quotes a credential."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DialectSettings:
    """One dialect's configuration (``[dialects.NAME]`` in the TOML file).

    ``auth`` is "none" (local use), or the dialect's own scheme ("signature" for Twilio's
    X-Twilio-Signature, "audiohook" for X-API-KEY plus message signatures, "token" for a shared
    secret in a header or query parameter). ``secrets`` holds what the scheme needs (auth token,
    API key -> client secret, shared tokens). ``options`` carries dialect-specific settings.
    """

    enabled: bool = True
    path: str = ""
    auth: str = "none"
    secrets: Mapping[str, str] = field(default_factory=_frozen, repr=False)  # never in logs
    allowed_origins: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=_frozen)


class DialectFactory(Protocol):
    """Builds one dialect instance per connection. Pure: no I/O, no clock reads."""

    name: str

    def open(self, request: UpgradeRequest) -> Dialect:
        """Authenticate and negotiate; return a fresh dialect or raise UpgradeRefused."""
        ...


@dataclass(frozen=True, slots=True)
class DialectSpec:
    """A registry entry: the dialect's name, its default path and how to build its factory.

    ``subprotocols`` are the websocket subprotocols the platform asks for on the upgrade
    (jambonz ``audio.jambonz.org``); server.py echoes the first one offered that is listed.
    """

    name: str
    default_path: str
    make_factory: Callable[[DialectSettings], DialectFactory]
    description: str = ""
    subprotocols: tuple[str, ...] = ()


# ---- outbound requests (dialog logic -> PBX) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlayAudio:
    """Play PCM16 (little-endian, mono) to the caller; the dialect resamples and encodes it."""

    pcm: bytes
    sample_rate: int


@dataclass(frozen=True, slots=True)
class SendMark:
    """Ask the PBX to echo ``name`` once everything queued before it has played."""

    name: str


@dataclass(frozen=True, slots=True)
class ClearAudio:
    """Drop audio queued for playback (barge-in)."""


@dataclass(frozen=True, slots=True)
class SendEvent:
    """A transcript or custom event message, on platforms whose protocol carries one."""

    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Disconnect:
    """End the call from the bridge's side, with a reason the platform understands."""

    reason: str = "completed"
    info: str = ""


OutboundRequest = PlayAudio | SendMark | ClearAudio | SendEvent | Disconnect


class UnsupportedRequest(BridgeError):
    """The platform has no way to carry this request (e.g. playback on a listen-only stream)."""


# ---- the dialect -----------------------------------------------------------------------------


class Dialect(Protocol):
    """One connection's protocol state. See the module docstring for the calling sequence."""

    name: str

    @property
    def capabilities(self) -> frozenset[str]:
        """Outbound request kinds this connection accepts: "play", "mark", "clear", "event",
        "disconnect". May change once the call started (e.g. Twilio's bidirectional flag)."""
        ...

    def receive_text(self, text: str) -> list[DialectEvent]:
        """Feed one text frame. Raises DialectError when the PBX breaks the protocol.
        Then send ``data_to_send()`` and check ``close_to_send()``."""
        ...

    def receive_bytes(self, data: bytes) -> list[DialectEvent]:
        """Feed one binary frame. Raises DialectError when the PBX breaks the protocol.
        Then send ``data_to_send()`` and check ``close_to_send()``."""
        ...

    def receive_eof(self) -> list[DialectEvent]:
        """The socket dropped without the protocol's goodbye. Returns the final events
        (usually CallEnded); nothing more can be sent."""
        ...

    def send(self, request: OutboundRequest) -> None:
        """Queue a request for the PBX; raises UnsupportedRequest if this call cannot carry it.
        Then send ``data_to_send()``."""
        ...

    def close(self, reason: str) -> None:
        """The bridge is ending the call (shutdown, timeout, error): queue the protocol's
        goodbye. Then send ``data_to_send()`` and close with ``close_to_send()``, or with the
        bridge's own code when that is None (a protocol whose goodbye is the close itself).
        call.py calls it at most once, and not when the dialect already asked to close."""
        ...

    def data_to_send(self) -> list[str | bytes]:
        """Frames queued for the PBX, in order; drained by the caller."""
        ...

    def close_to_send(self) -> tuple[int, str] | None:
        """A websocket close (code, reason) the dialect wants now, or None. Called after
        ``data_to_send``; once it returns a value the caller closes the socket."""
        ...


class QueuedOutput:
    """The output half every dialect shares: frames queued for the PBX, and the close it wants.

    A dialect inherits it, appends frames to ``self._outbox`` and sets ``self._close``; this
    class answers ``data_to_send`` and ``close_to_send`` for it.
    """

    _outbox: list[str | bytes]
    _close: tuple[int, str] | None

    def data_to_send(self) -> list[str | bytes]:
        out, self._outbox = self._outbox, []
        return out

    def close_to_send(self) -> tuple[int, str] | None:
        return self._close
