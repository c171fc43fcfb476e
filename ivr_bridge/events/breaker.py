"""A per-endpoint circuit breaker, sans-I/O: time is an argument, nothing here waits.

Closed: requests go out. After ``threshold`` consecutive failures the breaker opens and no
request goes out for a cool-down drawn from the shared backoff schedule (longer each time the
endpoint fails again). When the cool-down ends one probe is let through (half-open); its
success closes the breaker, its failure opens it again. So a dead endpoint costs one request
per cool-down instead of one per event and retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ivr_bridge.backoff import backoff_delay


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    threshold: int = 5  # consecutive failures that open the breaker
    cooldown_initial_s: float = 1.0
    cooldown_max_s: float = 30.0
    probe_timeout_s: float = 10.0  # a probe that never reports is assumed lost after this


class CircuitBreaker:
    def __init__(self, config: BreakerConfig | None = None) -> None:
        self.config = config or BreakerConfig()
        self.state = BreakerState.CLOSED
        self.failures = 0  # consecutive
        self.opened = 0  # times the breaker opened since it last closed
        self.opened_total = 0
        self._open_until = 0.0
        self._probe_since: float | None = None

    def admit(self, now: float) -> float:
        """0 when a request may go out now, else the seconds to wait before asking again."""
        if self.state is BreakerState.CLOSED:
            return 0.0
        if self.state is BreakerState.OPEN:
            if now < self._open_until:
                return self._open_until - now
            self.state = BreakerState.HALF_OPEN
            self._probe_since = None
        # Half-open: one probe at a time; the others wait for its result.
        if self._probe_since is None or now - self._probe_since >= self.config.probe_timeout_s:
            self._probe_since = now
            return 0.0
        return self._probe_since + self.config.probe_timeout_s - now

    def success(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened = 0
        self._probe_since = None

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.state is BreakerState.OPEN:
            return  # requests that were already out when it opened: no longer cool-down
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.config.threshold:
            self._open(now)

    def _open(self, now: float) -> None:
        cooldown = backoff_delay(
            self.opened,
            initial_s=self.config.cooldown_initial_s,
            max_s=self.config.cooldown_max_s,
        )
        self.opened += 1
        self.opened_total += 1
        self.state = BreakerState.OPEN
        self._open_until = now + cooldown
        self._probe_since = None
