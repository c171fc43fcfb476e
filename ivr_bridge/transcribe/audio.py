"""Input files for asynchronous recognition: probe, check against the limits, convert if needed.

Sans-I/O apart from reading the file: ``probe`` decodes the header with soundfile (whose
wheels carry libsndfile with Opus and MP3) and checks the documented limits; ``for_v3`` and
``for_v2`` return the bytes to send and how to declare them, converting only when the API
cannot take the file as it is:

* v3 takes WAV (16-bit PCM), OggOpus and MP3 containers, and raw LPCM at 8/16/48 kHz;
  another WAV sample format, Ogg Vorbis/FLAC, or LPCM at another rate become 16-bit WAV.
* v2 takes OggOpus, MP3 and raw LPCM at 8/16/48 kHz; WAV loses its header (LPCM), and
  anything else becomes 16 kHz LPCM.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from ivr_bridge.audio.codecs import resample
from ivr_bridge.transcribe.errors import TranscribeError

API_RATES = (8000, 16000, 48000)
MAX_SECONDS = 4 * 3600  # all channels added up
MAX_INLINE_BYTES = 60 * 1024 * 1024  # v3 inline content
MAX_FILE_BYTES = 1024 * 1024 * 1024  # Object Storage files


@dataclass(frozen=True, slots=True)
class AudioFile:
    name: str
    data: bytes
    container: str  # "WAV" | "OGG_OPUS" | "OGG" (other codec) | "MP3" | "LPCM" | other
    subtype: str
    sample_rate: int
    channels: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Prepared:
    """Bytes to send and how to declare them (container, or LPCM with rate and channels)."""

    data: bytes
    container: str  # "WAV" | "OGG_OPUS" | "MP3" | "LPCM"
    sample_rate: int
    channels: int


def probe(
    name: str, data: bytes, *, raw_rate: int | None = None, raw_channels: int = 1
) -> AudioFile:
    """Decode the header (or take raw LPCM as given) and check the documented limits."""
    if len(data) > MAX_FILE_BYTES:
        raise TranscribeError(f"{name}: file is larger than 1 GB, the SpeechKit limit")
    try:
        if raw_rate is not None:
            info = soundfile.SoundFile(
                io.BytesIO(data),
                format="RAW",
                subtype="PCM_16",
                samplerate=raw_rate,
                channels=raw_channels,
            )
            container = "LPCM"
        else:
            info = soundfile.SoundFile(io.BytesIO(data))
            container = {"WAV": "WAV", "MP3": "MP3", "OGG": "OGG"}.get(info.format, info.format)
            if container == "OGG" and info.subtype == "OPUS":
                container = "OGG_OPUS"
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise TranscribeError(
            f"{name}: not a readable WAV, OggOpus or MP3 file (for raw LPCM give --rate "
            f"and --channels): {exc}"
        ) from exc
    seconds = info.frames / info.samplerate if info.samplerate else 0.0
    if seconds * info.channels > MAX_SECONDS:
        raise TranscribeError(
            f"{name}: {seconds * info.channels / 3600:.1f} h of audio (all channels added "
            "up) is more than the 4 h SpeechKit recognizes"
        )
    return AudioFile(
        name, data, container, info.subtype, int(info.samplerate), int(info.channels), seconds
    )


def _pcm16(audio: AudioFile) -> tuple[np.ndarray, int]:
    kwargs: dict[str, object] = {}
    if audio.container == "LPCM":
        kwargs = {
            "format": "RAW",
            "subtype": "PCM_16",
            "samplerate": audio.sample_rate,
            "channels": audio.channels,
        }
    frames, rate = soundfile.read(io.BytesIO(audio.data), dtype="int16", always_2d=True, **kwargs)
    return frames, int(rate)


def _at_rate(frames: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return frames
    columns = [
        np.frombuffer(resample(frames[:, i].tobytes(), rate, target), dtype="<i2")
        for i in range(frames.shape[1])
    ]
    length = min(len(c) for c in columns)
    return np.stack([c[:length] for c in columns], axis=1)


def _wav(frames: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, frames, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def for_v3(audio: AudioFile) -> Prepared:
    if audio.container in ("OGG_OPUS", "MP3") or (
        audio.container == "WAV" and audio.subtype == "PCM_16"
    ):
        return Prepared(audio.data, audio.container, audio.sample_rate, audio.channels)
    if audio.container == "LPCM" and audio.sample_rate in API_RATES:
        return Prepared(audio.data, "LPCM", audio.sample_rate, audio.channels)
    frames, rate = _pcm16(audio)
    target = rate if rate in API_RATES else 16000
    return Prepared(_wav(_at_rate(frames, rate, target), target), "WAV", target, audio.channels)


def for_v2(audio: AudioFile) -> Prepared:
    if audio.container in ("OGG_OPUS", "MP3"):
        return Prepared(audio.data, audio.container, audio.sample_rate, audio.channels)
    if audio.container == "LPCM" and audio.sample_rate in API_RATES:
        return Prepared(audio.data, "LPCM", audio.sample_rate, audio.channels)
    frames, rate = _pcm16(audio)
    target = rate if rate in API_RATES else 16000
    pcm = _at_rate(frames, rate, target).astype("<i2").tobytes()
    return Prepared(pcm, "LPCM", target, audio.channels)


def read(path: str | Path, *, raw_rate: int | None = None, raw_channels: int = 1) -> AudioFile:
    """Read and probe a local file (``raw_rate`` set: headerless 16-bit LPCM)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise TranscribeError(f"{p}: cannot read ({exc.strerror})") from exc
    return probe(p.name, data, raw_rate=raw_rate, raw_channels=raw_channels)
