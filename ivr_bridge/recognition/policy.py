"""When to send keepalive silence, rotate a session, retry, or declare a stream stalled.

Sans-I/O: every method takes ``now`` (monotonic seconds) and returns a decision; the async
channel carries the decisions out. No asyncio, no grpc, no clock reads here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from ivr_bridge.backoff import backoff_delay

# Clock seconds between a channel's periodic checks (keepalive silence due? stalled? rotation
# due?) when no chunk has run them; keepalive silence starts up to this much late.
CHECK_INTERVAL_S = 0.25
# SpeechKit drops a streaming session when this long passes between two messages.
SPEECHKIT_IDLE_LIMIT_MS = 5000


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    keepalive: bool = True
    keepalive_after_ms: int = 1000
    keepalive_interval_ms: int = 1000
    # SpeechKit ends a session at 5 min of audio or 10 MB. Rotate at the first utterance
    # boundary after the soft mark; force it before the hard mark if the caller never pauses.
    rotate_soft_ms: int = 270_000
    rotate_hard_ms: int = 290_000
    rotate_soft_bytes: int = 9_000_000
    rotate_hard_bytes: int = 9_800_000
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 8.0
    backoff_multiplier: float = 2.0
    backoff_jitter: float = 0.2  # +/- fraction
    stall_timeout_s: float = 10.0
    max_replay_ms: int = 30_000


class Rotation(Enum):
    NONE = "none"
    AT_BOUNDARY = "at_boundary"
    FORCED = "forced"


class FailureKind(Enum):
    TRANSIENT = "transient"  # UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, stall
    LIMIT = "limit"  # OUT_OF_RANGE: rotation came too late; reopen at once
    UNAUTHENTICATED = "unauthenticated"
    FATAL = "fatal"  # INVALID_ARGUMENT, PERMISSION_DENIED, anything unknown


TRANSIENT_STATUSES = frozenset(
    {"UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED"}
)


def classify(status: str) -> FailureKind:
    if status in TRANSIENT_STATUSES:
        return FailureKind.TRANSIENT
    if status == "OUT_OF_RANGE":
        return FailureKind.LIMIT
    if status == "UNAUTHENTICATED":
        return FailureKind.UNAUTHENTICATED
    return FailureKind.FATAL


@dataclass(frozen=True, slots=True)
class Retry:
    delay_s: float
    refresh_credentials: bool = False


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


class KeepalivePolicy:
    """Turns PBX silence into timeline silence, so the session never waits 5 s for a message.

    While media flows nothing is inserted. Once the PBX has been quiet for ``after_ms``, the
    quiet time so far is inserted, then ``interval_ms`` more every interval; when media
    resumes, the part of the quiet time not yet covered is inserted before it.
    """

    def __init__(self, config: PolicyConfig, now: float) -> None:
        self._enabled = config.keepalive
        self._after = config.keepalive_after_ms / 1000
        self._interval = config.keepalive_interval_ms / 1000
        self._last_media = now
        self._covered_until: float | None = None  # set while the PBX is quiet

    @property
    def quiet(self) -> bool:
        return self._covered_until is not None

    def on_media(self, now: float) -> int:
        """Media arrived; returns ms of silence to insert before it (0 while media flows)."""
        insert = 0
        if self._covered_until is not None:
            insert = max(0, round((now - self._covered_until) * 1000))
            self._covered_until = None
        self._last_media = now
        return insert

    def due(self, now: float) -> int:
        """ms of silence to insert now; 0 when none is due."""
        if not self._enabled:
            return 0
        if self._covered_until is None:
            if now - self._last_media < self._after:
                return 0
            self._covered_until = now
            return round((now - self._last_media) * 1000)
        if now - self._covered_until < self._interval:
            return 0
        insert = round((now - self._covered_until) * 1000)
        self._covered_until = now
        return insert


def rotation_needed(
    config: PolicyConfig, session_ms: int, session_bytes: int, in_utterance: bool
) -> Rotation:
    """Rotate at a pause after the soft mark; force it at the hard mark."""
    if session_ms >= config.rotate_hard_ms or session_bytes >= config.rotate_hard_bytes:
        return Rotation.FORCED
    past_soft = session_ms >= config.rotate_soft_ms or session_bytes >= config.rotate_soft_bytes
    if past_soft and not in_utterance:
        return Rotation.AT_BOUNDARY
    return Rotation.NONE


class RecoveryPolicy:
    """Exponential backoff with jitter. The budget resets once a session proves healthy.

    UNAUTHENTICATED gets exactly one credential refresh; a second one in a row gives up.
    FATAL gives up at once (no retry storm).
    """

    def __init__(self, config: PolicyConfig, rng: random.Random | None = None) -> None:
        self._config = config
        self._rng = rng or random.Random()
        self._attempt = 0
        self._refreshed = False

    @property
    def attempt(self) -> int:
        return self._attempt

    def on_failure(self, status: str) -> Retry | GiveUp:
        kind = classify(status)
        if kind is FailureKind.FATAL:
            return GiveUp(status)
        if kind is FailureKind.UNAUTHENTICATED:
            if self._refreshed:
                return GiveUp(status)
            self._refreshed = True
            return Retry(0.0, refresh_credentials=True)
        if kind is FailureKind.LIMIT:
            return Retry(0.0)
        cfg = self._config
        delay = backoff_delay(
            self._attempt,
            initial_s=cfg.backoff_initial_s,
            max_s=cfg.backoff_max_s,
            multiplier=cfg.backoff_multiplier,
            jitter=cfg.backoff_jitter,
            rand=self._rng.random,
        )
        self._attempt += 1
        return Retry(delay)

    def on_healthy(self) -> None:
        """A session answered with results or status: forget past failures."""
        self._attempt = 0
        self._refreshed = False


def stalled(
    config: PolicyConfig, now: float, last_response_at: float, oldest_unanswered_send: float | None
) -> bool:
    """True when audio went out and nothing came back for ``stall_timeout_s``."""
    if oldest_unanswered_send is None:
        return False
    waiting_since = max(last_response_at, oldest_unanswered_send)
    return now - waiting_since >= config.stall_timeout_s


def replay_start(config: PolicyConfig, last_final: int, cut: int, sample_rate: int) -> int:
    """Where a new session starts: the last finalized sample, at most ``max_replay_ms`` back."""
    floor = cut - config.max_replay_ms * sample_rate // 1000
    return max(last_final, floor, 0)
