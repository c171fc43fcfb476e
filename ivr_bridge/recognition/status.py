"""The one place a gRPC status name becomes a bridge error (shared by the v3 and v2 clients)."""

from __future__ import annotations

from ivr_bridge.errors import (
    RecognitionError,
    RecognitionRejected,
    RecognitionUnavailable,
    SessionLimitReached,
)
from ivr_bridge.recognition.policy import FailureKind, classify


def map_status(status: str, message: str) -> RecognitionError:
    kind = classify(status)
    if kind is FailureKind.LIMIT:
        return SessionLimitReached(status, message)
    if kind is FailureKind.TRANSIENT:
        return RecognitionUnavailable(status, message)
    return RecognitionRejected(status, message)
