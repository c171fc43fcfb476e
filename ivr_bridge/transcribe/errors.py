"""One clear message per documented failure of asynchronous recognition."""

from __future__ import annotations

from ivr_bridge.errors import BridgeError

ADVICE = {
    "INVALID_ARGUMENT": "SpeechKit rejected the request (format, size or duration)",
    "UNAUTHENTICATED": "authentication failed: check the API key or IAM token",
    "PERMISSION_DENIED": (
        "permission denied: asynchronous recognition works only under a service account "
        "with the ai.speechkit-stt.user role"
    ),
    "RESOURCE_EXHAUSTED": "quota exceeded: too many recognition requests or status checks",
    "NOT_FOUND": "operation not found (results are kept 3 days)",
    "UNAVAILABLE": "SpeechKit is unavailable; try again later",
    "DEADLINE_EXCEEDED": "SpeechKit did not answer in time; try again later",
    "INTERNAL": "SpeechKit failed internally (often: the declared format does not match the audio)",
}


class TranscribeError(BridgeError):
    """A file could not be transcribed; ``str()`` is the message for the user."""

    def __init__(self, message: str, status: str = "") -> None:
        super().__init__(message)
        self.status = status


def from_status(status: str, detail: str) -> TranscribeError:
    """A status name (gRPC, or mapped from HTTP) and the server's text, as one message."""
    advice = ADVICE.get(status, f"recognition failed ({status})")
    return TranscribeError(f"{advice}: {detail}" if detail else advice, status)


HTTP_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
GRPC_NUMBERS = {
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    16: "UNAUTHENTICATED",
}
