"""The sans-I/O limits: token bucket, per-address slots, rate-limited logging, close reasons."""

from __future__ import annotations

import pytest

from ivr_bridge.limits import AddressSlots, CloseFrame, RateLimitedLog, TokenBucket, close_reason


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert not bucket.take(0.05)  # half a token refilled
    assert bucket.take(0.1)  # one whole token
    assert not bucket.take(0.1)
    assert [bucket.take(10.0) for _ in range(6)] == [True] * 5 + [False]  # refill caps at burst


def test_token_bucket_ignores_a_clock_that_runs_back() -> None:
    bucket = TokenBucket(rate_per_s=1, burst=1, now=5.0)
    assert bucket.take(5.0)
    assert not bucket.take(4.0)
    assert not bucket.take(5.5)
    assert bucket.take(6.0)


def test_token_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate_per_s=0, burst=1, now=0)
    with pytest.raises(ValueError):
        TokenBucket(rate_per_s=1, burst=0, now=0)


def test_address_slots_cap_each_address_separately() -> None:
    slots = AddressSlots(per_address=2)
    assert slots.acquire("10.0.0.1") and slots.acquire("10.0.0.1")
    assert not slots.acquire("10.0.0.1")
    assert slots.acquire("10.0.0.2")
    assert slots.refused == 1 and slots.total == 3
    slots.release("10.0.0.1")
    assert slots.held("10.0.0.1") == 1
    assert slots.acquire("10.0.0.1")
    for _ in range(2):
        slots.release("10.0.0.1")
    slots.release("10.0.0.2")
    assert slots.total == 0 and slots.held("10.0.0.1") == 0


def test_address_slots_zero_means_no_cap() -> None:
    slots = AddressSlots(per_address=0)
    assert all(slots.acquire("10.0.0.1") for _ in range(1000))


def test_rate_limited_log_says_it_once_per_interval_and_counts_the_rest() -> None:
    gate = RateLimitedLog(10.0)
    said = [gate.should_log(t / 1000) for t in range(0, 7000)]  # 7,000 failures in 7 s
    assert said.count(True) == 1
    assert gate.take_suppressed() == 6999 and gate.take_suppressed() == 0
    assert gate.should_log(10.0)
    assert gate.total == 7001


@pytest.mark.parametrize(
    ("sent", "received", "reason"),
    [
        (CloseFrame(1009, "message too big"), None, "too_big"),
        (CloseFrame(1007, "invalid start byte"), None, "invalid_utf8"),
        (CloseFrame(1002, "bad frame"), None, "protocol_error"),
        (CloseFrame(1011, "keepalive ping timeout"), None, "ping_timeout"),
        (CloseFrame(1011, "internal error"), None, None),
        (None, CloseFrame(1000), None),
        (None, CloseFrame(1009, "too big for me"), "too_big"),
        (None, None, None),
    ],
)
def test_close_reason_names_what_the_transport_saw(
    sent: CloseFrame | None, received: CloseFrame | None, reason: str | None
) -> None:
    assert close_reason(sent, received) == reason
