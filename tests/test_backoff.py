"""The one retry schedule: capped before it is computed, jittered, never negative."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from ivr_bridge.backoff import backoff, backoff_delay
from ivr_bridge.recognition.policy import PolicyConfig, RecoveryPolicy, Retry


def test_grows_then_stays_at_the_cap() -> None:
    delays = list(itertools.islice(backoff(initial_s=0.25, max_s=8.0), 8))
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_ten_thousand_consecutive_failures_never_overflow() -> None:
    policy = RecoveryPolicy(PolicyConfig(backoff_initial_s=0.25, backoff_max_s=8.0))
    delays = []
    for _ in range(10_000):
        decision = policy.on_failure("UNAVAILABLE")
        assert isinstance(decision, Retry)
        delays.append(decision.delay_s)
    assert policy.attempt == 10_000
    assert max(delays) <= 8.0 * 1.2 + 1e-9
    assert min(delays[10:]) >= 8.0 * 0.8 - 1e-9


@given(
    attempt=st.integers(min_value=0, max_value=10**9),
    initial=st.floats(min_value=0.0, max_value=100.0),
    cap=st.floats(min_value=0.0, max_value=1000.0),
    multiplier=st.floats(min_value=0.5, max_value=10.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
)
def test_delay_is_bounded_for_any_attempt(
    attempt: int, initial: float, cap: float, multiplier: float, jitter: float
) -> None:
    delay = backoff_delay(
        attempt, initial_s=initial, max_s=cap, multiplier=multiplier, jitter=jitter
    )
    assert 0.0 <= delay <= max(cap, 0.0) * (1.0 + jitter) + 1e-9


def test_zero_initial_or_cap_means_no_wait() -> None:
    assert backoff_delay(5, initial_s=0.0, max_s=8.0) == 0.0
    assert backoff_delay(5, initial_s=1.0, max_s=0.0) == 0.0
