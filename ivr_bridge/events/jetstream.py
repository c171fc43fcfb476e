"""NATS JetStream: events out to a stream for a fleet of bot workers, commands back in.

Events: each is published to ``<prefix>.<call_id>.<type>`` (the stream holds one subject per
event type, so the commands subject below is never stored), with the event id as
``Nats-Msg-Id``, so JetStream's duplicate window turns our retries into exactly-once storage.
Every publish waits for the stream's ack; failures are retried with the shared backoff until
``retry_total_s`` (kept inside the duplicate window), then refused so the bus dead-letters
the event. The bus gives this sink the same bounded per-call lanes as every sink: one call's
events in order, up to ``max_in_flight`` calls at once. The stream is created when missing.

Commands: while a call is live here (from its call_started to its call_ended event), this
bridge subscribes to ``<prefix>.<call_id>.commands``; each message is a JSON object whose
``type`` is play, mark, clear or hangup, handed to ``on_command(call_id, command)``. A
request (a message with a reply subject) is answered ``{"ok": true}`` or
``{"ok": false, "error": ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StreamConfig

from ivr_bridge.backoff import backoff_delay
from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.errors import BridgeError, ConfigError, SinkError
from ivr_bridge.events.types import EVENT_TYPES
from ivr_bridge.model import UtteranceEvent, event_json

log = structlog.get_logger(__name__)

COMMAND_TYPES = frozenset({"play", "mark", "clear", "hangup"})
CommandHandler = Callable[[str, dict[str, Any]], Awaitable[None] | None]
_UNSAFE_TOKEN = re.compile(r"[\s.*>]")
_MAX_COMMAND_BYTES = 1024 * 1024


def subject_token(value: str) -> str:
    """A call id or event type as one NATS subject token (no dots, wildcards or spaces)."""
    return _UNSAFE_TOKEN.sub("_", value) or "_"


class NatsSink:
    """``await start()`` (connects, creates the stream), then add to an EventBus."""

    name = "nats"

    def __init__(
        self,
        url: str,
        *,
        subject_prefix: str = "ivr.calls",
        stream: str = "IVR_CALLS",
        retention: str = "limits",
        max_age_s: float = 86400.0,
        duplicate_window_s: float = 120.0,
        max_in_flight: int = 64,
        ack_timeout_s: float = 5.0,
        retry_total_s: float = 60.0,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        on_command: CommandHandler | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        try:
            self._retention = RetentionPolicy(retention)
        except ValueError as exc:
            raise ConfigError(
                "events.nats_retention", "expected limits, interest or workqueue"
            ) from exc
        self.url = url
        self.prefix = subject_prefix.rstrip(".")
        self.stream = stream
        self.concurrency = max(1, max_in_flight)
        self._max_age = max_age_s
        self._duplicate_window = duplicate_window_s
        self._ack_timeout = ack_timeout_s
        self._retry_total = min(retry_total_s, duplicate_window_s)
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._on_command = on_command
        self._clock = clock
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._command_subs: dict[str, Subscription] = {}
        self.duplicates = 0
        self.retries = 0
        self.commands = 0
        self.commands_rejected = 0

    def subject(self, event: UtteranceEvent) -> str:
        return f"{self.prefix}.{subject_token(event.call_id)}.{subject_token(event.type)}"

    def commands_subject(self, call_id: str) -> str:
        return f"{self.prefix}.{subject_token(call_id)}.commands"

    async def start(self) -> None:
        """Connect and make sure the stream exists. Raises SinkError naming the server."""
        nc = Client()
        self._nc = nc
        try:
            # The first connection is bounded; once up, the client reconnects forever while
            # publishes retry (and then dead-letter) on their own deadlines.
            await self._clock.wait_for(
                nc.connect(
                    self.url,
                    connect_timeout=max(1, round(self._ack_timeout)),
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    allow_reconnect=True,
                    error_cb=self._on_error,
                ),
                self._ack_timeout * 2,
            )
            self._js = nc.jetstream(timeout=self._ack_timeout)
            await self._ensure_stream()
        except (OSError, nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            await self._close_connection()
            raise SinkError(
                f"cannot start NATS sink at {self._host()}: {type(exc).__name__}"
            ) from exc

    def _host(self) -> str:
        return self.url.rsplit("@", 1)[-1]  # never log credentials in the URL

    def stream_subjects(self) -> list[str]:
        """One subject pattern per event type, so ``<prefix>.<call>.commands`` stays out."""
        return [f"{self.prefix}.*.{subject_token(t)}" for t in sorted(EVENT_TYPES)]

    async def _ensure_stream(self) -> None:
        assert self._js is not None
        wanted = self.stream_subjects()
        try:
            info = await self._js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            await self._js.add_stream(
                StreamConfig(
                    name=self.stream,
                    subjects=wanted,
                    retention=self._retention,
                    max_age=self._max_age,
                    duplicate_window=self._duplicate_window,
                )
            )
            log.info("nats_stream_created", stream=self.stream, retention=self._retention.value)
            return
        have = list(info.config.subjects or [])
        missing = [s for s in wanted if s not in have]
        if missing:  # a newer bridge with more event types: add their subjects
            await self._js.update_stream(replace(info.config, subjects=have + missing))
            log.info("nats_stream_subjects_added", stream=self.stream, added=len(missing))

    async def _on_error(self, exc: Exception) -> None:
        log.warning("nats_client_error", error=type(exc).__name__)

    def health(self) -> dict[str, Any]:
        connected = self._nc is not None and self._nc.is_connected
        return {
            "state": "connected" if connected else "disconnected",
            "live_calls": len(self._command_subs),
            "retries": self.retries,
            "commands": self.commands,
        }

    # ---- events out --------------------------------------------------------------------

    async def deliver(self, event: UtteranceEvent) -> None:
        if self._js is None:
            raise SinkError("NATS sink not started")
        if event.type not in EVENT_TYPES:
            raise SinkError(f"no stream subject for event type {event.type!r}")
        if event.type == "call_started":
            await self._subscribe_commands(event.call_id)
        body = event_json(event)
        subject = self.subject(event)
        deadline = self._clock.now() + self._retry_total
        attempt = 0
        while True:
            try:
                ack = await self._js.publish(
                    subject, body, timeout=self._ack_timeout, headers={"Nats-Msg-Id": event.id}
                )
            except (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError) as exc:
                delay = backoff_delay(
                    attempt, initial_s=self._backoff_initial, max_s=self._backoff_max, jitter=0.2
                )
                attempt += 1
                if self._clock.now() + delay > deadline:
                    raise SinkError(
                        f"NATS publish gave up after {attempt} attempts: {type(exc).__name__}"
                    ) from exc
                self.retries += 1
                await self._clock.sleep(delay)
                continue
            if ack.duplicate:
                self.duplicates += 1
            break
        if event.type == "call_ended":
            await self._unsubscribe_commands(event.call_id)

    # ---- commands in -------------------------------------------------------------------

    async def _subscribe_commands(self, call_id: str) -> None:
        if self._on_command is None or self._nc is None or call_id in self._command_subs:
            return

        async def handle(msg: Msg) -> None:
            await self._handle_command(call_id, msg)

        try:
            self._command_subs[call_id] = await self._nc.subscribe(
                self.commands_subject(call_id), cb=handle, pending_msgs_limit=100
            )
        except nats.errors.Error as exc:
            log.warning("nats_command_subscribe_failed", call_id=call_id, error=type(exc).__name__)

    async def _unsubscribe_commands(self, call_id: str) -> None:
        sub = self._command_subs.pop(call_id, None)
        if sub is not None:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await sub.unsubscribe()
                if self._nc is not None:
                    await self._nc.flush(timeout=2)  # the server has it before call_ended goes

    async def _handle_command(self, call_id: str, msg: Msg) -> None:
        error = ""
        command: Any = None
        if len(msg.data) > _MAX_COMMAND_BYTES:
            error = "command too large"
        else:
            try:
                command = json.loads(msg.data)
            except (ValueError, UnicodeDecodeError):
                error = "not JSON"
        if not error and not (isinstance(command, dict) and command.get("type") in COMMAND_TYPES):
            error = "expected an object whose type is play, mark, clear or hangup"
        if not error and self._on_command is not None:
            try:
                result = self._on_command(call_id, command)
                if inspect.isawaitable(result):
                    await result
            except BridgeError as exc:  # malformed, unknown call, platform cannot: say why
                error = str(exc)
            except Exception as exc:
                log.exception("nats_command_failed", call_id=call_id)
                error = f"command failed: {type(exc).__name__}"
        if error:
            self.commands_rejected += 1
            log.warning("nats_command_rejected", call_id=call_id, error=error)
        else:
            self.commands += 1
        if msg.reply:
            answer = {"ok": not error, **({"error": error} if error else {})}
            with contextlib.suppress(nats.errors.Error):
                await msg.respond(json.dumps(answer).encode())

    # ---- shutdown ----------------------------------------------------------------------

    async def _close_connection(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                await nc.drain()

    async def aclose(self) -> None:
        self._command_subs.clear()
        await self._close_connection()
