"""The IAM token schedule as plain numbers: no HTTP, no event loop, no clock reads."""

from __future__ import annotations

import pytest

from ivr_bridge.recognition.token_schedule import (
    ExpirySource,
    Step,
    TokenTiming,
    is_usable,
    next_step,
    recently_forced,
    retry_at,
    window_for,
)

NOW = 1000.0
WALL = 1_750_000_000.0


def test_twelve_hour_token_renews_hourly_and_stays_usable_almost_to_expiry() -> None:
    w = window_for(now=NOW, wall=WALL, expires_wall=WALL + 12 * 3600)
    assert w.source is ExpirySource.ANSWER
    assert w.lifetime_s == 12 * 3600
    assert w.refresh_at == NOW + 3600
    assert w.usable_until == NOW + 12 * 3600 - 60


def test_short_token_renews_at_half_life_with_a_tenth_as_margin() -> None:
    w = window_for(now=NOW, wall=WALL, expires_wall=WALL + 300)
    assert w.refresh_at == NOW + 150
    assert w.usable_until == NOW + 300 - 30


@pytest.mark.parametrize(
    ("expires", "source"),
    [(None, ExpirySource.MISSING), (WALL - 5, ExpirySource.PAST), (WALL, ExpirySource.PAST)],
)
def test_missing_or_past_expiry_assumes_the_fallback_lifetime(
    expires: float | None, source: ExpirySource
) -> None:
    w = window_for(now=NOW, wall=WALL, expires_wall=expires, timing=TokenTiming())
    assert w.source is source
    assert w.lifetime_s == 300
    assert w.refresh_at == NOW + 150


def test_usable_is_strictly_before_the_margin() -> None:
    w = window_for(now=NOW, wall=WALL, expires_wall=WALL + 1000)
    assert is_usable(w, w.usable_until - 0.001)
    assert not is_usable(w, w.usable_until)
    assert not is_usable(None, NOW)


def test_retry_follows_the_shared_backoff_and_is_capped() -> None:
    delays = [retry_at(NOW, n) - NOW for n in range(1, 8)]
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert retry_at(NOW, 10_000) - NOW == 30  # capped before computing: no overflow
    timing = TokenTiming(backoff_initial_s=0.5, backoff_max_s=2)
    assert [retry_at(0, n, timing) for n in (1, 2, 3, 4)] == [0.5, 1, 2, 2]


def test_forced_renewal_is_shared_for_a_few_seconds() -> None:
    forced = window_for(now=NOW, wall=WALL, expires_wall=WALL + 3600, forced=True)
    proactive = window_for(now=NOW, wall=WALL, expires_wall=WALL + 3600)
    assert recently_forced(forced, NOW + 4.9)
    assert not recently_forced(forced, NOW + 5)
    assert not recently_forced(proactive, NOW + 1)
    assert not recently_forced(None, NOW)


def test_next_step_decisions() -> None:
    w = window_for(now=NOW, wall=WALL, expires_wall=WALL + 12 * 3600)
    never = float("-inf")
    # Fresh token: use it.
    assert next_step(w, NOW + 10, retry_at=never, failed=False) is Step.USE
    # Due for renewal: exchange (the caller keeps the old one if that fails).
    assert next_step(w, w.refresh_at, retry_at=never, failed=False) is Step.EXCHANGE
    # Due, but the last renewal failed and the backoff runs: keep using the old token.
    assert next_step(w, w.refresh_at + 1, retry_at=w.refresh_at + 2, failed=True) is Step.USE
    # No token at all: exchange; after a failure, fail fast until the backoff ends.
    assert next_step(None, NOW, retry_at=never, failed=False) is Step.EXCHANGE
    assert next_step(None, NOW, retry_at=NOW + 1, failed=True) is Step.FAIL_FAST
    assert next_step(None, NOW + 1, retry_at=NOW + 1, failed=True) is Step.EXCHANGE
    # A token past its margin counts as none.
    assert next_step(w, w.usable_until, retry_at=w.usable_until + 5, failed=True) is (
        Step.FAIL_FAST
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"refresh_after_s": 0},
        {"fallback_lifetime_s": -1},
        {"backoff_initial_s": 0},
        {"backoff_initial_s": 5, "backoff_max_s": 1},
        {"expiry_margin_s": -1},
        {"forced_coalesce_s": -1},
    ],
)
def test_timing_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TokenTiming(**kwargs)
