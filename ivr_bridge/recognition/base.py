"""The narrow seam between the call logic and a streaming recognizer (SpeechKit v3 or v2).

Only the SpeechKit client modules import grpc; everything above them sees these types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from ivr_bridge.model import RecognitionUpdate


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What one streaming session is opened with (the recognition part of the config)."""

    sample_rate: int
    model: str = "general"
    languages: tuple[str, ...] = ("ru-RU",)
    text_normalization: bool = False
    profanity_filter: bool = False
    literature_text: bool = False
    eou_sensitivity: str = "DEFAULT"  # "DEFAULT" | "HIGH"
    max_pause_between_words_hint_ms: int = 0


class RecognitionStream(Protocol):
    """One open streaming session. Writes wait on gRPC flow control; reads end on OK.

    Iterating raises a ``RecognitionError`` subclass when the session fails.
    """

    async def send_audio(self, pcm: bytes) -> None: ...

    async def send_silence(self, duration_ms: int) -> None: ...

    async def finish(self) -> None:
        """Half-close: no more audio; the server flushes its last results and ends."""
        ...

    def updates(self) -> AsyncIterator[RecognitionUpdate]: ...

    def cancel(self) -> None: ...


class Recognizer(Protocol):
    async def open_stream(self, config: SessionConfig, *, request_id: str) -> RecognitionStream: ...

    async def refresh_credentials(self) -> bool:
        """Force new credentials after UNAUTHENTICATED; False when that cannot help."""
        ...

    async def close(self) -> None: ...
