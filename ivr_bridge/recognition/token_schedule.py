"""When an IAM token is usable, when to renew it and when to retry: pure functions of ``now``.

The service-account credentials (``credentials.py``) do the HTTP exchange and the locking;
every decision about time lives here, so it can be tested with plain numbers. All instants are
on the injected monotonic clock (a wall-clock jump can neither expire nor immortalise a token);
only the token's ``expiresAt`` arrives as wall time and is turned into a lifetime at once.

* Due for renewal at ``issue + min(refresh_after_s, lifetime / 2)``: hourly for a 12 h token, as
  the IAM docs recommend, and at half its life for a short-lived one.
* Usable until ``expiresAt - min(60 s, lifetime / 10)``, so a call never starts with a token that
  expires during its handshake.
* After a failed exchange, the next try waits for the shared backoff schedule
  (``ivr_bridge.backoff``: 1 s doubling to 30 s by default).
* A forced renewal (after UNAUTHENTICATED) is shared by every caller refused within 5 s of it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ivr_bridge.backoff import backoff_delay


@dataclass(frozen=True, slots=True)
class TokenTiming:
    """The schedule's knobs; the defaults follow the IAM documentation."""

    refresh_after_s: float = 3600.0
    expiry_margin_s: float = 60.0
    fallback_lifetime_s: float = 300.0  # when expiresAt is missing or already past
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    forced_coalesce_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("refresh_after_s", "fallback_lifetime_s", "backoff_initial_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        if self.expiry_margin_s < 0 or self.forced_coalesce_s < 0:
            raise ValueError("margins must not be negative")


class ExpirySource(enum.Enum):
    """Where a token's lifetime came from; anything but ``ANSWER`` is worth a warning."""

    ANSWER = "answer"  # IAM's expiresAt
    MISSING = "missing"  # no (parsable) expiresAt: assume the fallback lifetime
    PAST = "past"  # expiresAt is already past by our wall clock: check the clock


@dataclass(frozen=True, slots=True)
class TokenWindow:
    """The instants (monotonic) that govern one issued token."""

    obtained: float
    refresh_at: float
    usable_until: float
    lifetime_s: float
    source: ExpirySource
    forced: bool = False


def window_for(
    *,
    now: float,
    wall: float,
    expires_wall: float | None,
    forced: bool = False,
    timing: TokenTiming = TokenTiming(),
) -> TokenWindow:
    """The schedule of a token obtained at ``now`` (monotonic) / ``wall`` (epoch)."""
    source = ExpirySource.ANSWER
    lifetime = timing.fallback_lifetime_s
    if expires_wall is None:
        source = ExpirySource.MISSING
    elif expires_wall - wall <= 0:
        source = ExpirySource.PAST
    else:
        lifetime = expires_wall - wall
    return TokenWindow(
        obtained=now,
        refresh_at=now + min(timing.refresh_after_s, lifetime / 2),
        usable_until=now + lifetime - min(timing.expiry_margin_s, lifetime / 10),
        lifetime_s=lifetime,
        source=source,
        forced=forced,
    )


def is_usable(window: TokenWindow | None, now: float) -> bool:
    """True while a token may still be sent with a new call."""
    return window is not None and now < window.usable_until


def retry_at(now: float, consecutive_failures: int, timing: TokenTiming = TokenTiming()) -> float:
    """When the next exchange may be tried after ``consecutive_failures`` (>= 1) in a row."""
    delay = backoff_delay(
        max(0, consecutive_failures - 1),
        initial_s=timing.backoff_initial_s,
        max_s=timing.backoff_max_s,
    )
    return now + delay


def recently_forced(
    window: TokenWindow | None, now: float, timing: TokenTiming = TokenTiming()
) -> bool:
    """A forced renewal this recent already answers another caller's UNAUTHENTICATED."""
    return window is not None and window.forced and now - window.obtained < timing.forced_coalesce_s


class Step(enum.Enum):
    """What a caller asking for a token must do next."""

    USE = "use"  # send the current token
    EXCHANGE = "exchange"  # get a new one (keep the current one if that fails and it is usable)
    FAIL_FAST = "fail_fast"  # no usable token and backing off: re-raise the last error


def next_step(window: TokenWindow | None, now: float, *, retry_at: float, failed: bool) -> Step:
    """Decide from the token's window, the backoff deadline and whether the last try failed."""
    if window is not None and is_usable(window, now):
        if now < window.refresh_at or now < retry_at:
            return Step.USE
        return Step.EXCHANGE
    if failed and now < retry_at:
        return Step.FAIL_FAST
    return Step.EXCHANGE
