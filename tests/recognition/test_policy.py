from __future__ import annotations

import random

import pytest

from ivr_bridge.recognition.policy import (
    FailureKind,
    GiveUp,
    KeepalivePolicy,
    PolicyConfig,
    RecoveryPolicy,
    Retry,
    Rotation,
    classify,
    replay_start,
    rotation_needed,
    stalled,
)

CFG = PolicyConfig(keepalive_after_ms=1000, keepalive_interval_ms=1000)


def test_no_keepalive_while_media_flows() -> None:
    ka = KeepalivePolicy(CFG, now=0.0)
    for i in range(1, 500):
        t = i * 0.02
        assert ka.on_media(t) == 0
        assert ka.due(t) == 0
    assert not ka.quiet


def test_keepalive_covers_a_60_second_hold_within_the_5_second_rule() -> None:
    ka = KeepalivePolicy(CFG, now=0.0)
    ka.on_media(0.0)
    inserted = 0
    gaps: list[float] = []
    last_send = 0.0
    t = 0.0
    while t < 60.0:
        t = round(t + 0.05, 2)
        ms = ka.due(t)
        if ms:
            inserted += ms
            gaps.append(t - last_send)
            last_send = t
    inserted += ka.on_media(60.0)
    assert max(gaps) <= 1.05  # far inside SpeechKit's 5 s
    assert inserted == pytest.approx(60_000, abs=60)
    # Media again: the next insertion is after_ms later, not sooner.
    assert ka.due(60.99) == 0
    assert ka.due(61.0) == 1000


def test_keepalive_next_insertion_while_quiet() -> None:
    ka = KeepalivePolicy(CFG, now=0.0)
    assert ka.due(1.0) == 1000
    assert ka.quiet
    # While quiet, the next insertion is interval_ms after the last one.
    assert ka.due(1.5) == 0
    assert ka.due(1.99) == 0
    assert ka.due(2.0) == 1000


def test_keepalive_disabled_never_inserts() -> None:
    ka = KeepalivePolicy(PolicyConfig(keepalive=False), now=0.0)
    assert ka.due(100.0) == 0


def test_rotation_waits_for_a_pause_then_forces() -> None:
    assert rotation_needed(CFG, 100_000, 0, in_utterance=False) is Rotation.NONE
    assert rotation_needed(CFG, 271_000, 0, in_utterance=True) is Rotation.NONE
    assert rotation_needed(CFG, 271_000, 0, in_utterance=False) is Rotation.AT_BOUNDARY
    assert rotation_needed(CFG, 290_000, 0, in_utterance=True) is Rotation.FORCED
    assert rotation_needed(CFG, 1000, 9_000_000, in_utterance=False) is Rotation.AT_BOUNDARY
    assert rotation_needed(CFG, 1000, 9_800_000, in_utterance=True) is Rotation.FORCED


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("UNAVAILABLE", FailureKind.TRANSIENT),
        ("INTERNAL", FailureKind.TRANSIENT),
        ("DEADLINE_EXCEEDED", FailureKind.TRANSIENT),
        ("RESOURCE_EXHAUSTED", FailureKind.TRANSIENT),
        ("OUT_OF_RANGE", FailureKind.LIMIT),
        ("UNAUTHENTICATED", FailureKind.UNAUTHENTICATED),
        ("INVALID_ARGUMENT", FailureKind.FATAL),
        ("PERMISSION_DENIED", FailureKind.FATAL),
        ("SOMETHING_NEW", FailureKind.FATAL),
    ],
)
def test_classify(status: str, kind: FailureKind) -> None:
    assert classify(status) is kind


def test_backoff_grows_with_jitter_caps_and_resets() -> None:
    rec = RecoveryPolicy(CFG, random.Random(1))
    delays = []
    for _ in range(8):
        d = rec.on_failure("UNAVAILABLE")
        assert isinstance(d, Retry)
        delays.append(d.delay_s)
    assert delays[0] == pytest.approx(0.25, rel=0.21)
    assert delays[1] == pytest.approx(0.5, rel=0.21)
    assert max(delays) <= CFG.backoff_max_s * 1.2
    assert rec.attempt == 8
    rec.on_healthy()
    assert rec.attempt == 0
    first = rec.on_failure("UNAVAILABLE")
    assert isinstance(first, Retry) and first.delay_s < 0.31


def test_fatal_gives_up_at_once() -> None:
    rec = RecoveryPolicy(CFG)
    assert isinstance(rec.on_failure("INVALID_ARGUMENT"), GiveUp)
    assert isinstance(rec.on_failure("PERMISSION_DENIED"), GiveUp)


def test_unauthenticated_refreshes_once() -> None:
    rec = RecoveryPolicy(CFG)
    first = rec.on_failure("UNAUTHENTICATED")
    assert isinstance(first, Retry) and first.refresh_credentials and first.delay_s == 0
    assert isinstance(rec.on_failure("UNAUTHENTICATED"), GiveUp)
    rec.on_healthy()
    assert isinstance(rec.on_failure("UNAUTHENTICATED"), Retry)


def test_session_limit_reopens_immediately() -> None:
    rec = RecoveryPolicy(CFG)
    d = rec.on_failure("OUT_OF_RANGE")
    assert isinstance(d, Retry) and d.delay_s == 0 and not d.refresh_credentials


def test_stall_detection() -> None:
    assert not stalled(CFG, 100.0, 0.0, None)
    assert not stalled(CFG, 100.0, 95.0, 91.0)
    assert stalled(CFG, 100.0, 80.0, 85.0)
    assert not stalled(CFG, 100.0, 95.0, 80.0)


def test_replay_start_is_bounded() -> None:
    assert replay_start(CFG, last_final=16_000, cut=24_000, sample_rate=8000) == 16_000
    assert replay_start(CFG, last_final=0, cut=8000 * 100, sample_rate=8000) == 8000 * 70
    assert replay_start(CFG, last_final=0, cut=100, sample_rate=8000) == 0
