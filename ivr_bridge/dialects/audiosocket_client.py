"""Asterisk's side of AudioSocket: the packets Asterisk sends, for the simulator and the tests.

AudioSocket runs over plain TCP with no upgrade and no credentials, so there are no headers
to build: connect, send :meth:`AudioSocketClient.start_frames`, then audio, then hang up.
Besides its own methods it offers the frame half of the simulator's client-encoder shape
(``opening``, ``audio``, ``digit``, ``skip``, ``closing``, ``on_server_frame``) for a TCP
sender; it has no ``upgrade``, since there is nothing to upgrade.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from ivr_bridge.audio.codecs import resample
from ivr_bridge.dialects.audiosocket import (
    AUDIO_KINDS,
    FRAME_MS,
    KIND_DTMF,
    KIND_ERROR,
    KIND_HANGUP,
    KIND_UUID,
    encode_frame,
)


class AudioSocketClient:
    """One simulated AudioSocket stream. Methods return the bytes to write, in order.

    ``sample_rate`` 8000 is the dialplan application's fixed slin; the channel driver form may
    use 12-192 kHz (packet kinds 0x11-0x18).
    """

    dialect = "audiosocket"
    frame_ms = FRAME_MS

    def __init__(
        self,
        *,
        call_uuid: str | None = None,
        sample_rate: int = 8000,
        tracks: Sequence[str] = ("inbound",),
    ) -> None:
        if sample_rate not in AUDIO_KINDS:
            raise ValueError(f"sample_rate must be one of {sorted(AUDIO_KINDS)}")
        if tuple(tracks) != ("inbound",):
            raise ValueError("AudioSocket carries one track: ('inbound',)")
        self.tracks: tuple[str, ...] = ("inbound",)
        self.call_uuid = uuid.UUID(call_uuid) if call_uuid else uuid.uuid4()
        self.sample_rate = sample_rate
        self.kind = AUDIO_KINDS[sample_rate]
        self.frame_bytes = sample_rate * FRAME_MS // 1000 * 2

    def start_frames(self) -> list[bytes]:
        return [encode_frame(KIND_UUID, self.call_uuid.bytes)]

    def audio_frames(self, pcm: bytes, sample_rate: int) -> list[bytes]:
        """PCM16 at ``sample_rate`` as 20 ms audio packets, the last padded with silence."""
        pcm = resample(pcm, sample_rate, self.sample_rate)
        pcm += bytes(-len(pcm) % self.frame_bytes)
        step = self.frame_bytes
        return [encode_frame(self.kind, pcm[i : i + step]) for i in range(0, len(pcm), step)]

    @staticmethod
    def dtmf(digit: str) -> bytes:
        if len(digit) != 1 or not digit.isascii():
            raise ValueError("one ASCII DTMF digit")
        return encode_frame(KIND_DTMF, digit.encode("ascii"))

    @staticmethod
    def hangup() -> bytes:
        return encode_frame(KIND_HANGUP)

    @staticmethod
    def error(code: int) -> bytes:
        return encode_frame(KIND_ERROR, bytes([code]))

    def stop_frames(self) -> list[bytes]:
        return [self.hangup()]

    # ---- the frame half of the simulator's client-encoder shape ----------------------------

    @property
    def call_id(self) -> str:
        return str(self.call_uuid)

    @property
    def stream_id(self) -> str:
        return str(self.call_uuid)

    def opening(self) -> list[bytes]:
        return self.start_frames()

    def audio(self, pcm: bytes, track: str) -> tuple[bytes, int]:
        """One audio packet: ``pcm`` (PCM16 at ``sample_rate``) as is."""
        return encode_frame(self.kind, pcm), len(pcm)

    def skip(self, ms: float) -> None:
        """Packets carry no timestamps: a gap is just time without packets."""

    def digit(self, digit: str) -> list[bytes]:
        return [self.dtmf(digit)]

    def closing(self) -> list[bytes]:
        return self.stop_frames()

    def on_server_frame(self, frame: bytes) -> list[bytes]:
        """Asterisk answers nothing: it plays audio and obeys hangup."""
        return []
