"""Vonage's side of a websocket leg: the frames Vonage sends, for the simulator and the tests.

:class:`VonageClient` builds the upgrade path (the NCCO endpoint ``uri`` with its ``token``),
the ``websocket:connected`` frame with the NCCO ``headers`` flattened into it, exact 20 ms
L16 frames, ``websocket:dtmf`` and the echoes of ``clear``/``notify``. Vonage ends the leg by
closing the socket (``closes_socket``: no goodbye message; the simulator closes itself).

It also has the simulator's client-encoder shape (``upgrade``, ``opening``, ``audio``,
``digit``, ``skip``, ``closing``, ``on_server_frame``; ``tracks``, ``custom_parameters`` and
``auth`` keywords).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from ivr_bridge.audio.codecs import resample
from ivr_bridge.dialects.vonage import FRAME_MS, SAMPLE_RATES
from ivr_bridge.simulators.base import ClientAuthLike, with_query

Frame = str | bytes


class VonageClient:
    """One simulated Vonage websocket leg. Every method returns the frames to send.

    The leg hears one mixed stream, so ``tracks`` can only be ("inbound",);
    ``custom_parameters`` become NCCO ``headers`` (flattened into the connected frame).
    """

    dialect = "vonage"
    frame_ms = FRAME_MS
    closes_socket = True

    def __init__(
        self,
        *,
        tracks: Sequence[str] = ("inbound",),
        custom_parameters: Mapping[str, str] | None = None,
        auth: ClientAuthLike | None = None,
        sample_rate: int = 16000,
        headers: Mapping[str, Any] | None = None,
        call_uuid: str | None = None,
    ) -> None:
        if sample_rate not in SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {SAMPLE_RATES}")
        if tuple(tracks) != ("inbound",):
            raise ValueError("a Vonage websocket leg carries one mixed track: ('inbound',)")
        self.tracks: tuple[str, ...] = ("inbound",)
        self.auth = auth
        self.sample_rate = sample_rate
        self.call_uuid = call_uuid or str(uuid.uuid4())
        self.headers = {
            "uuid": self.call_uuid,
            **dict(headers or {}),
            **dict(custom_parameters or {}),
        }
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

    # ---- the simulator's client-encoder shape ----------------------------------------------

    @property
    def call_id(self) -> str:
        return self.call_uuid

    @property
    def stream_id(self) -> str:
        return self.call_uuid

    def upgrade(self, url: str) -> tuple[str, dict[str, str]]:
        """Vonage sets no headers: a token rides in the endpoint URI's query."""
        if self.auth is None or self.auth.scheme != "token":
            return url, {}
        return with_query(url, {"token": self.auth.secrets.get("token", "")}), {}

    def opening(self) -> list[Frame]:
        return [self.connected()]

    def audio(self, pcm: bytes, track: str) -> tuple[Frame, int]:
        """One binary frame: ``pcm`` (PCM16 at ``sample_rate``, 20 ms) as is."""
        return bytes(pcm), len(pcm)

    def skip(self, ms: float) -> None:
        """Vonage frames carry no timestamps: a gap is just time without frames."""

    def digit(self, digit: str) -> list[Frame]:
        return [self.dtmf(digit)]

    def closing(self) -> list[Frame]:
        return []

    def on_server_frame(self, frame: Frame) -> list[Frame]:
        """Vonage's echoes: ``websocket:notify`` for ``notify`` (the simulator plays nothing,
        so it is due at once) and ``websocket:cleared`` for ``clear``."""
        if not isinstance(frame, str):
            return []
        try:
            action = json.loads(frame)
        except ValueError:
            return []
        if not isinstance(action, dict):
            return []
        if action.get("action") == "notify" and isinstance(action.get("payload"), dict):
            return [self.notify(action["payload"])]
        if action.get("action") == "clear":
            return [self.cleared()]
        return []
