"""POST each event as JSON to a URL, signed the Standard Webhooks way when a secret is set.

Delivery is at-least-once and in per-call order: the bus hands this sink one event per call
at a time and up to ``max_in_flight`` calls at once, over pooled keep-alive connections
(ivr_bridge/events/http.py).
``webhook-id`` is the event id, stable across retries, so a receiver de-duplicates by it.

Failures: connection errors, timeouts, 408/425/429 and 5xx are retried with the shared
backoff schedule (honouring Retry-After) until ``retry_total_s`` has passed since the first
attempt; then the event is refused (SinkError) and the bus dead-letters it. A circuit breaker
per endpoint stops the retry storm while it is down: one probe per cool-down, everyone else
waits. HTTP 410 Gone disables the endpoint for the life of the process (logged once); any
other 4xx refuses that one event. All waits use the injected Clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from ivr_bridge.backoff import backoff_delay
from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.errors import SinkError
from ivr_bridge.events.breaker import BreakerConfig, BreakerState, CircuitBreaker
from ivr_bridge.events.http import HttpError, HttpPool
from ivr_bridge.model import UtteranceEvent, event_json

log = structlog.get_logger(__name__)

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks v1 signature: base64 HMAC-SHA256 over "id.timestamp.body".

    The secret is ``whsec_`` + base64 of the key bytes; a secret that is not base64 is used
    as raw bytes.
    """
    key = secret.removeprefix("whsec_")
    try:
        raw_key = base64.b64decode(key, validate=True)
    except ValueError:
        raw_key = key.encode()
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(raw_key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class _Outcome:
    ok: bool = False
    retry: bool = False
    status: int | None = None
    retry_after_s: float | None = None
    error: str = ""


class WebhookSink:
    """One endpoint. Add it to an EventBus; ``aclose`` (the bus calls it) closes the client."""

    def __init__(
        self,
        url: str,
        *,
        secret: str = "",
        name: str = "webhook",
        timeout_s: float = 5.0,
        max_in_flight: int = 64,
        retry_total_s: float = 300.0,
        max_attempts: int = 0,  # 0: bounded by retry_total_s only
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        breaker: BreakerConfig | None = None,
        clock: Clock = SYSTEM_CLOCK,
        timestamp: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.name = name
        self.concurrency = max(1, max_in_flight)
        # Keep-alive connections, one per call in delivery at most.
        self._pool = HttpPool(
            url, size=self.concurrency, timeout_s=timeout_s, user_agent="ivr-bridge"
        )
        self._host = self._pool.host
        self._secret = secret
        self._retry_total = retry_total_s
        self._max_attempts = max_attempts
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._breaker = CircuitBreaker(breaker)
        self._changed = asyncio.Event()
        self._clock = clock
        # Receivers check webhook-timestamp against their own wall clock: always real time.
        self._timestamp = timestamp
        self.disabled = False
        self.retries = 0

    def __repr__(self) -> str:
        return f"WebhookSink(url=<{self._host}>, signed={bool(self._secret)})"

    def health(self) -> dict[str, Any]:
        return {
            "state": "disabled" if self.disabled else self._breaker.state.value,
            "consecutive_failures": self._breaker.failures,
            "circuit_opened": self._breaker.opened_total,
            "retries": self.retries,
        }

    async def deliver(self, event: UtteranceEvent) -> None:
        body = event_json(event)
        deadline = self._clock.now() + self._retry_total
        attempt = 0
        while True:
            if self.disabled:
                raise SinkError("webhook endpoint disabled after HTTP 410")
            await self._admit(deadline)
            outcome = await self._post(event.id, body)
            attempt += 1
            if outcome.ok:
                self._report(success=True)
                return
            if outcome.status == 410:
                self._disable()
                raise SinkError("webhook endpoint gone (HTTP 410)")
            if not outcome.retry:
                self._report(success=True)  # the endpoint is up; it refused this event
                raise SinkError(f"webhook refused event: {outcome.error}")
            self._report(success=False)
            delay = backoff_delay(
                attempt - 1,
                initial_s=self._backoff_initial,
                max_s=self._backoff_max,
                jitter=0.2,
            )
            if outcome.retry_after_s is not None:
                delay = max(delay, min(outcome.retry_after_s, self._backoff_max))
            out_of_time = self._clock.now() + delay > deadline
            if out_of_time or (self._max_attempts and attempt >= self._max_attempts):
                raise SinkError(f"webhook gave up after {attempt} attempts: {outcome.error}")
            self.retries += 1
            await self._clock.sleep(delay)

    async def _admit(self, deadline: float) -> None:
        """Wait until the breaker lets a request out, or refuse once the deadline passes."""
        while True:
            now = self._clock.now()
            wait = self._breaker.admit(now)
            if wait <= 0:
                return
            if now >= deadline:
                raise SinkError("webhook gave up: endpoint circuit open")
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_for(changed.wait(), min(wait, deadline - now))

    async def _post(self, event_id: str, body: bytes) -> _Outcome:
        ts = int(self._timestamp())
        headers = {
            "content-type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(ts),
        }
        if self._secret:
            headers["webhook-signature"] = sign(self._secret, event_id, ts, body)
        try:
            resp = await self._pool.post(body, list(headers.items()))
        except HttpError as exc:
            return _Outcome(retry=True, error=str(exc) or "connection failed")
        status = resp.status
        if 200 <= status < 300:
            return _Outcome(ok=True, status=status)
        retry_after = resp.headers.get("retry-after", "")
        return _Outcome(
            retry=status in _RETRY_STATUS,
            status=status,
            retry_after_s=float(retry_after) if retry_after.isdigit() else None,
            error=f"HTTP {status}",
        )

    def _report(self, *, success: bool) -> None:
        before = self._breaker.state
        if success:
            self._breaker.success()
        else:
            self._breaker.failure(self._clock.now())
        after = self._breaker.state
        if after is not before:
            if after is BreakerState.OPEN:
                log.warning("webhook_circuit_open", sink=self.name, host=self._host)
            elif after is BreakerState.CLOSED:
                log.info("webhook_circuit_closed", sink=self.name, host=self._host)
        # Wake everyone waiting on the breaker: the state (or the probe) has moved on.
        self._changed.set()
        self._changed = asyncio.Event()

    def _disable(self) -> None:
        if not self.disabled:
            self.disabled = True
            log.error(
                "webhook_endpoint_disabled",
                sink=self.name,
                host=self._host,
                why="HTTP 410 Gone: the receiver asked for no more events",
            )
        self._changed.set()

    async def aclose(self) -> None:
        await self._pool.aclose()
