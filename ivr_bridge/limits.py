"""Per-connection and per-address limits, sans-I/O: every decision takes ``now`` or a count.

- :class:`TokenBucket` caps the rate of a connection's non-media messages (marks, DTMF, pings,
  ``connected``...): a platform sends a few a second, a flood sends thousands.
- :class:`AddressSlots` caps the connections one remote address may hold at once, so one host
  cannot take every call slot.
- :class:`RateLimitedLog` lets a storm of identical failures (the fd limit) log once per
  interval with a count of what it left out, instead of a line per failure.
- :func:`close_reason` names why a websocket ended from the close frames sent and received,
  so call_ended says ``too_big`` or ``ping_timeout`` rather than ``hangup``.
"""

from __future__ import annotations

from dataclasses import dataclass


class TokenBucket:
    """``rate`` tokens a second refill a bucket of ``burst``; each message takes one."""

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate_per_s
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are enough; False means over the limit."""
        elapsed = max(0.0, now - self._at)  # a clock never runs back, but be safe
        self._at = max(self._at, now)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens < cost:
            return False
        self._tokens -= cost
        return True


class AddressSlots:
    """How many connections each remote address holds; ``acquire`` refuses past the cap."""

    def __init__(self, per_address: int) -> None:
        self.per_address = per_address  # 0: no cap
        self._held: dict[str, int] = {}
        self.refused = 0

    def acquire(self, address: str) -> bool:
        held = self._held.get(address, 0)
        if self.per_address and held >= self.per_address:
            self.refused += 1
            return False
        self._held[address] = held + 1
        return True

    def release(self, address: str) -> None:
        held = self._held.get(address, 0) - 1
        if held > 0:
            self._held[address] = held
        else:
            self._held.pop(address, None)

    def held(self, address: str) -> int:
        return self._held.get(address, 0)

    @property
    def total(self) -> int:
        return sum(self._held.values())


class RateLimitedLog:
    """Say something at most once per ``interval_s``; ``should_log`` counts the silent ones."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: float | None = None
        self.suppressed = 0  # since the last line written
        self.total = 0

    def should_log(self, now: float) -> bool:
        self.total += 1
        if self._last is not None and now - self._last < self.interval_s:
            self.suppressed += 1
            return False
        self._last = now
        return True

    def take_suppressed(self) -> int:
        """How many were left out since the last line (and reset that count)."""
        n, self.suppressed = self.suppressed, 0
        return n


@dataclass(frozen=True, slots=True)
class CloseFrame:
    code: int
    reason: str = ""


# Close codes the bridge's websocket library sends when it ends a connection itself.
_SENT_REASONS = {1002: "protocol_error", 1007: "invalid_utf8", 1009: "too_big"}


def close_reason(sent: CloseFrame | None, received: CloseFrame | None) -> str | None:
    """Why the transport ended a connection, or None for an ordinary hang-up.

    ``sent`` is the close frame the bridge's side sent first (its library detected the
    problem), ``received`` the peer's. A keepalive ping without a pong is a 1011 the library
    sends with "keepalive ping timeout"; a peer that reports a bad frame itself is named too.
    """
    if sent is not None:
        if sent.code in _SENT_REASONS:
            return _SENT_REASONS[sent.code]
        if sent.code == 1011 and "ping" in sent.reason.lower():
            return "ping_timeout"
    if received is not None and received.code in _SENT_REASONS:
        return _SENT_REASONS[received.code]
    return None
