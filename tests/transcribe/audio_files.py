"""Small test recordings in every input format, made from the exact "tones" vocabulary."""

from __future__ import annotations

import io

import numpy as np
import soundfile

from ivr_bridge.local.tones import synthesize_script

LEFT = [["alpha", "lima", "whiskey"], ["foxtrot", "quebec", "one"]]
RIGHT = [["kilo", "victor", "six"]]


def pcm(script: list[list[str]], rate: int = 8000) -> np.ndarray:
    return np.frombuffer(synthesize_script(script, rate=rate), dtype="<i2")


def encode(frames: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, frames, rate, format=fmt, subtype=subtype)
    return out.getvalue()


def mono_wav(rate: int = 8000, subtype: str = "PCM_16") -> bytes:
    return encode(pcm(LEFT, rate), rate, "WAV", subtype)


def stereo_frames(rate: int = 8000) -> np.ndarray:
    left, right = pcm(LEFT, rate), pcm(RIGHT, rate)
    frames = np.zeros((max(len(left), len(right)), 2), dtype="<i2")
    frames[: len(left), 0] = left
    frames[: len(right), 1] = right
    return frames


def stereo_wav(rate: int = 8000) -> bytes:
    return encode(stereo_frames(rate), rate, "WAV", "PCM_16")
