"""POST each event as JSON to a URL, signed the Standard Webhooks way when a secret is set.

Delivery is at-least-once and in per-call order (one worker per sink, events sent one at a
time). ``webhook-id`` is the event id, stable across retries, so receivers can de-duplicate.
Retries: connection errors, 429 and 5xx, with exponential backoff honouring Retry-After.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import httpx
import structlog

from ivr_bridge.errors import SinkError
from ivr_bridge.model import UtteranceEvent

log = structlog.get_logger(__name__)

_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks v1 signature: base64 HMAC-SHA256 over "id.timestamp.body"."""
    key = secret.removeprefix("whsec_")
    try:
        raw_key = base64.b64decode(key, validate=True)
    except ValueError:
        raw_key = key.encode()
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(raw_key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookSink:
    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        secret: str = "",
        timeout_s: float = 5.0,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self._secret = secret
        self._max_attempts = max_attempts
        self._backoff = backoff_s
        self._max_backoff = max_backoff_s
        self._client = client or httpx.AsyncClient(
            timeout=timeout_s, follow_redirects=False, headers={"user-agent": "ivr-bridge"}
        )
        self._own_client = client is None

    def __repr__(self) -> str:
        return f"WebhookSink(url=<{httpx.URL(self.url).host}>, signed={bool(self._secret)})"

    async def deliver(self, event: UtteranceEvent) -> None:
        body = json.dumps(event.to_json(), ensure_ascii=False).encode()
        delay = self._backoff
        last = ""
        for attempt in range(1, self._max_attempts + 1):
            ts = int(time.time())
            headers = {
                "content-type": "application/json",
                "webhook-id": event.id,
                "webhook-timestamp": str(ts),
            }
            if self._secret:
                headers["webhook-signature"] = sign(self._secret, event.id, ts, body)
            try:
                resp = await self._client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            else:
                if resp.status_code < 300:
                    return
                last = f"HTTP {resp.status_code}"
                if resp.status_code == 410 or resp.status_code not in _RETRY_STATUS:
                    raise SinkError(f"webhook refused event: {last}")
                retry_after = resp.headers.get("retry-after", "")
                if retry_after.isdigit():
                    delay = min(self._max_backoff, float(retry_after))
            if attempt < self._max_attempts:
                await asyncio.sleep(delay)
                delay = min(self._max_backoff, delay * 2)
        raise SinkError(f"webhook gave up after {self._max_attempts} attempts: {last}")

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()
