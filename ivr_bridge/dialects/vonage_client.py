"""Vonage's side of a websocket leg: the frames Vonage sends, for the simulator and the tests.

:class:`VonageClient` builds the upgrade path (the NCCO endpoint ``uri`` with its ``token``),
the ``websocket:connected`` frame with the NCCO ``headers`` flattened into it, exact 20 ms
L16 frames, ``websocket:dtmf`` and the echoes of ``clear``/``notify``. Vonage ends the leg by
closing the socket.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from ivr_bridge.audio.codecs import resample
from ivr_bridge.dialects.vonage import FRAME_MS, SAMPLE_RATES


class VonageClient:
    """One simulated Vonage websocket leg. Every method returns the frames to send."""

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        headers: Mapping[str, Any] | None = None,
        call_uuid: str | None = None,
    ) -> None:
        if sample_rate not in SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {SAMPLE_RATES}")
        self.sample_rate = sample_rate
        self.call_uuid = call_uuid or str(uuid.uuid4())
        self.headers = {"uuid": self.call_uuid, **dict(headers or {})}
        self.frame_bytes = sample_rate * FRAME_MS // 1000 * 2

    def upgrade_path(self, path: str = "/vonage", *, token: str | None = None) -> str:
        return f"{path}?{urlencode({'token': token})}" if token is not None else path

    @staticmethod
    def upgrade_headers() -> list[tuple[str, str]]:
        """Vonage adds no credentials to the upgrade: the token rides in the URI."""
        return []

    def connected(self) -> str:
        return json.dumps(
            {
                "event": "websocket:connected",
                "content-type": f"audio/l16;rate={self.sample_rate}",
                **self.headers,
            },
            separators=(",", ":"),
        )

    def start_frames(self) -> list[str | bytes]:
        return [self.connected()]

    def audio_frames(self, pcm: bytes, sample_rate: int) -> list[bytes]:
        """PCM16 at ``sample_rate`` as exact 20 ms frames, the last padded with silence."""
        data = resample(pcm, sample_rate, self.sample_rate)
        data += bytes(-len(data) % self.frame_bytes)
        step = self.frame_bytes
        return [data[i : i + step] for i in range(0, len(data), step)]

    @staticmethod
    def dtmf(digit: str, duration_ms: int = 260) -> str:
        return json.dumps({"event": "websocket:dtmf", "digit": digit, "duration": duration_ms})

    @staticmethod
    def cleared() -> str:
        return json.dumps({"event": "websocket:cleared"})

    @staticmethod
    def notify(payload: Mapping[str, Any]) -> str:
        """The echo of a ``notify`` action, once the audio before it has played."""
        return json.dumps({"event": "websocket:notify", "payload": dict(payload)})

    def stop_frames(self) -> list[str | bytes]:
        return []
