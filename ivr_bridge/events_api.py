"""GET /events: a live event stream for out-of-process dialog logic, and its commands back.

A client opens a websocket on the bridge's own port with ``Authorization: Bearer <token>``
(``events.api_token`` may subscribe and command; ``events.api_read_token`` only subscribe)
and picks what it wants with query parameters:

- ``call_id=ID``: one call (from the start of what the bridge still keeps of it); without it,
  every call, live from now;
- ``types=final,dtmf``: only these event types (default all);
- ``after_seq=N`` (with ``call_id``) or ``after=ID:N,ID:N``: resume after a reconnect, from
  the events after seq N of each call.

Each call's events are kept in a bounded ring (``events.api_ring_size``) until
``events.api_ring_keep_s`` after it ended, so a client that reconnects within that time misses
nothing; when the ring no longer holds what it asks for, a ``gap`` notice says which seqs are
gone. Messages to the client are event envelopes (events.schema.json) and notices
``{"op": "ack"|"error"|"dropped"|"gap", ...}``. The client may send commands::

    {"op": "command", "id": "42", "call_id": "call_...", "command": {"type": "clear"}}

(command shapes in ivr_bridge/commands.py), answered ``{"op": "ack", "id": "42"}`` or
``{"op": "error", "id": "42", "error": "..."}``. Every queue is bounded: a client that reads
too slowly loses its oldest undelivered events, counted in a ``dropped`` notice, and can
re-fetch them by seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs

import structlog
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.commands import CommandError, parse_command
from ivr_bridge.dialects.base import OutboundRequest, UnsupportedRequest
from ivr_bridge.events.types import EVENT_TYPES
from ivr_bridge.model import UtteranceEvent

log = structlog.get_logger(__name__)

PATH = "/events"
_ALL_TYPES = frozenset(EVENT_TYPES)


class CommandTarget(Protocol):
    """A live call as commands see it (ivr_bridge.call.Call)."""

    async def send(self, request: OutboundRequest) -> None: ...


CallFinder = Callable[[str], CommandTarget | None]


# ---- rings and subscriptions: in-memory, no sockets ------------------------------------


@dataclass(slots=True)
class _Ring:
    events: deque[UtteranceEvent]
    ended_at: float | None = None


@dataclass(slots=True, eq=False)  # compared and hashed by identity: a set member
class Subscription:
    """One client's filter and its bounded outbox of events and notices."""

    call_id: str | None
    types: frozenset[str]
    limit: int
    outbox: deque[dict[str, Any]] = field(default_factory=deque)
    dropped: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, event: UtteranceEvent) -> bool:
        return (self.call_id is None or event.call_id == self.call_id) and (
            event.type in self.types
        )

    def put(self, message: dict[str, Any]) -> None:
        if len(self.outbox) >= self.limit:
            self.outbox.popleft()
            self.dropped += 1
        self.outbox.append(message)
        self.ready.set()

    def take(self) -> list[dict[str, Any]]:
        """Everything queued, a ``dropped`` notice first when some were lost since last time."""
        out = list(self.outbox)
        self.outbox.clear()
        self.ready.clear()
        if self.dropped:
            out.insert(0, {"op": "dropped", "count": self.dropped})
            self.dropped = 0
        return out


class EventHub:
    """A sink on the event bus: keeps each call's recent events and feeds subscribers."""

    name = "events_api"

    def __init__(
        self,
        *,
        ring_size: int = 500,
        keep_s: float = 300.0,
        max_ended_calls: int = 10_000,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._ring_size = ring_size
        self._keep_s = keep_s
        self._max_ended = max_ended_calls
        self._clock = clock
        self._rings: dict[str, _Ring] = {}
        self._ended: OrderedDict[str, float] = OrderedDict()  # call_id -> ended at, oldest first
        self._subs: set[Subscription] = set()

    @property
    def calls_kept(self) -> int:
        return len(self._rings)

    async def deliver(self, event: UtteranceEvent) -> None:
        self.record(event)

    def record(self, event: UtteranceEvent) -> None:
        ring = self._rings.get(event.call_id)
        if ring is None:
            ring = self._rings[event.call_id] = _Ring(deque(maxlen=self._ring_size))
        ring.events.append(event)
        if event.type == "call_ended":
            ring.ended_at = self._clock.now()
            self._ended[event.call_id] = ring.ended_at
        self._expire()
        doc: dict[str, Any] | None = None
        for sub in self._subs:
            if sub.wants(event):
                doc = doc or event.to_json()
                sub.put(doc)

    def _expire(self) -> None:
        now = self._clock.now()
        while self._ended:
            call_id, ended_at = next(iter(self._ended.items()))
            if now - ended_at < self._keep_s and len(self._ended) <= self._max_ended:
                break
            del self._ended[call_id]
            self._rings.pop(call_id, None)

    def subscribe(
        self,
        *,
        call_id: str | None,
        types: frozenset[str] = _ALL_TYPES,
        after: Mapping[str, int] | None = None,
        limit: int = 1000,
    ) -> Subscription:
        """A new subscriber: first what it asks to resume from the rings, then live events.
        No await between the two, so nothing falls in between."""
        self._expire()
        sub = Subscription(call_id, types, limit)
        resume = dict(after or {})
        if call_id is not None:
            resume.setdefault(call_id, 0)
        for cid, seq in resume.items():
            if call_id is not None and cid != call_id:
                continue
            self._replay(sub, cid, seq)
        self._subs.add(sub)
        return sub

    def _replay(self, sub: Subscription, call_id: str, after_seq: int) -> None:
        ring = self._rings.get(call_id)
        kept = list(ring.events) if ring else []
        first = kept[0].seq if kept else None
        if (first is not None and first > after_seq + 1) or (first is None and after_seq > 0):
            sub.put({"op": "gap", "call_id": call_id, "after_seq": after_seq, "first_seq": first})
        for event in kept:
            if event.seq > after_seq and sub.wants(event):
                sub.put(event.to_json())

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    async def aclose(self) -> None:
        for sub in self._subs:
            sub.ready.set()
        self._subs.clear()


# ---- the websocket route -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Accepted:
    may_command: bool
    call_id: str | None
    types: frozenset[str]
    after: Mapping[str, int]


class BadQuery(ValueError):
    pass


def parse_query(query: str) -> tuple[str | None, frozenset[str], dict[str, int]]:
    """``call_id``, ``types`` and the resume points of an /events URL's query string."""
    params = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - {"call_id", "types", "after_seq", "after"})
    if unknown:
        raise BadQuery(f"unknown parameter(s): {', '.join(unknown)}")
    call_id = params.get("call_id", [None])[-1] or None
    types = _ALL_TYPES
    if "types" in params:
        types = frozenset(t.strip() for t in ",".join(params["types"]).split(",") if t.strip())
        bad = sorted(types - _ALL_TYPES)
        if bad or not types:
            raise BadQuery(f"unknown event type(s): {', '.join(bad) or '(none given)'}")
    after: dict[str, int] = {}
    try:
        if "after_seq" in params:
            if call_id is None:
                raise BadQuery("after_seq needs call_id (or use after=CALL:SEQ,...)")
            after[call_id] = int(params["after_seq"][-1])
        for item in ",".join(params.get("after", [])).split(","):
            if item.strip():
                cid, _, seq = item.strip().rpartition(":")
                if not cid:
                    raise BadQuery("after is a list of CALL_ID:SEQ")
                after[cid] = int(seq)
    except ValueError as exc:
        if isinstance(exc, BadQuery):
            raise
        raise BadQuery("seq values must be integers") from None
    if any(seq < 0 for seq in after.values()):
        raise BadQuery("seq values must be >= 0")
    return call_id, types, after


def _json_response(status: HTTPStatus, body: dict[str, object]) -> Response:
    data = (json.dumps(body) + "\n").encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    if status == HTTPStatus.UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Bearer realm="ivr-bridge events"'
    return Response(status.value, status.phrase, headers, data)


class EventsApi:
    """Authenticates /events upgrades and serves the accepted connections."""

    def __init__(
        self,
        hub: EventHub,
        *,
        token: str,
        read_token: str = "",
        find_call: CallFinder,
        subscriber_queue: int = 1000,
    ) -> None:
        self.hub = hub
        self._token = token
        self._read_token = read_token
        self._find_call = find_call
        self._queue = subscriber_queue
        self._accepted: weakref.WeakKeyDictionary[ServerConnection, _Accepted] = (
            weakref.WeakKeyDictionary()
        )
        self.commands_ok = 0
        self.commands_refused = 0

    def _role(self, request: Request) -> str | None:
        """ "control", "read" or None, from the bearer token (compared in constant time)."""
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        given = presented.strip().encode()
        if self._token and hmac.compare_digest(given, self._token.encode()):
            return "control"
        if self._read_token and hmac.compare_digest(given, self._read_token.encode()):
            return "read"
        return None

    def accept(self, connection: ServerConnection, request: Request) -> Response | None:
        """process_request for /events: a refusal, or None to let the handshake go on."""
        role = self._role(request)
        remote = connection.remote_address
        address = str(remote[0]) if remote else ""
        if role is None:
            log.warning("events_api_refused", status=401, remote=address)
            return _json_response(HTTPStatus.UNAUTHORIZED, {"error": "bearer token required"})
        try:
            call_id, types, after = parse_query(request.path.partition("?")[2])
        except BadQuery as exc:
            return _json_response(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        self._accepted[connection] = _Accepted(role == "control", call_id, types, after)
        return None

    def owns(self, connection: ServerConnection) -> bool:
        return connection in self._accepted

    async def serve(self, ws: ServerConnection) -> None:
        accepted = self._accepted.pop(ws)
        sub = self.hub.subscribe(
            call_id=accepted.call_id,
            types=accepted.types,
            after=accepted.after,
            limit=self._queue,
        )
        log.info("events_api_connected", call_filter=accepted.call_id is not None)
        writer = asyncio.create_task(self._write(ws, sub))
        reader = asyncio.create_task(self._read(ws, sub, accepted.may_command))
        try:
            await asyncio.wait([writer, reader], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.hub.unsubscribe(sub)
            for task in (writer, reader):
                task.cancel()
            await asyncio.wait([writer, reader])
            log.info("events_api_disconnected")

    async def _write(self, ws: ServerConnection, sub: Subscription) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await sub.ready.wait()
                for message in sub.take():
                    await ws.send(json.dumps(message, separators=(",", ":")))

    async def _read(self, ws: ServerConnection, sub: Subscription, may_command: bool) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                sub.put(await self.command(raw, may_command))

    async def command(self, raw: str | bytes, may_command: bool) -> dict[str, Any]:
        """One client message -> its ack or error (never raises)."""
        msg_id: Any = None
        try:
            try:
                message = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise CommandError("not JSON") from None
            if not isinstance(message, dict):
                raise CommandError("a message is a JSON object")
            msg_id = message.get("id")
            if message.get("op") != "command":
                raise CommandError('op must be "command"')
            if not may_command:
                raise CommandError("this token may only subscribe")
            call_id = message.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise CommandError("call_id is required")
            request = parse_command(message.get("command"))
            call = self._find_call(call_id)
            if call is None:
                raise CommandError("no such live call on this bridge")
            try:
                await call.send(request)
            except UnsupportedRequest as exc:
                raise CommandError(f"the call's platform cannot do that: {exc}") from None
        except CommandError as exc:
            self.commands_refused += 1
            log.info("events_api_command_refused", error=str(exc))
            return {"op": "error", "id": msg_id, "error": str(exc)}
        except Exception as exc:
            self.commands_refused += 1
            log.exception("events_api_command_failed")
            return {"op": "error", "id": msg_id, "error": f"command failed: {type(exc).__name__}"}
        self.commands_ok += 1
        return {"op": "ack", "id": msg_id}
