"""The one error tree. Lower layers raise these; call.py and server.py decide what they mean."""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """Bad configuration at startup. The message names the offending key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class DialectError(BridgeError):
    """The PBX broke its protocol. Carries the websocket close code and a short, safe reason.

    The reason goes on the wire and into logs, so it never quotes the offending payload.
    """

    # RFC 6455 close codes used by the dialects.
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    TOO_BIG = 1009

    def __init__(self, reason: str, close_code: int = INVALID_PAYLOAD) -> None:
        super().__init__(reason)
        self.reason = reason[:120]  # close reasons must fit in a 125-byte control frame
        self.close_code = close_code


class RecognitionError(BridgeError):
    """A recognition session failed. ``status`` is the gRPC status name (e.g. "UNAVAILABLE")."""

    def __init__(self, status: str, message: str = "") -> None:
        super().__init__(f"{status}: {message}" if message else status)
        self.status = status
        self.message = message


class RecognitionUnavailable(RecognitionError):
    """Transient: retry with backoff and replay (UNAVAILABLE, DEADLINE_EXCEEDED, ...)."""


class RecognitionRejected(RecognitionError):
    """The service refused the request (INVALID_ARGUMENT, PERMISSION_DENIED, UNAUTHENTICATED)."""


class SessionLimitReached(RecognitionError):
    """OUT_OF_RANGE: the session hit SpeechKit's audio-duration or size cap."""


class SinkError(BridgeError):
    """An event sink failed to deliver. Counted and retried; never ends a call."""
