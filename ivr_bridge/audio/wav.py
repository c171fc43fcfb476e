"""Read any common WAV file as PCM16 mono at the rate the caller needs; write simple ones.

The simulator and tools accept whatever recordings people have (studio 24-bit stereo, float
exports, G.711 captures from a PBX), so reading is liberal in formats and strict about
structure: a truncated or unsupported file raises :class:`WavError` with a message that says
what is wrong instead of producing noise.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ivr_bridge.audio import codecs

WAVE_FORMAT_PCM: Final = 0x0001
WAVE_FORMAT_IEEE_FLOAT: Final = 0x0003
WAVE_FORMAT_ALAW: Final = 0x0006
WAVE_FORMAT_MULAW: Final = 0x0007
WAVE_FORMAT_EXTENSIBLE: Final = 0xFFFE

# The tail every KSDATAFORMAT_SUBTYPE_* GUID for a classic format tag shares.
_SUBTYPE_TAIL: Final = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_STREAMING_SIZE: Final = 0xFFFFFFFF  # data size written by encoders that cannot seek back
_FORMAT_NAMES: Final = {
    WAVE_FORMAT_PCM: "pcm",
    WAVE_FORMAT_IEEE_FLOAT: "float",
    WAVE_FORMAT_ALAW: "alaw",
    WAVE_FORMAT_MULAW: "mulaw",
}

WavSource = bytes | bytearray | memoryview | str | os.PathLike[str]


class WavError(ValueError):
    """The file is not a WAV file this reader can decode (unsupported, malformed, truncated)."""


@dataclass(frozen=True, slots=True)
class WavFormat:
    """What the ``fmt`` chunk says, with WAVE_FORMAT_EXTENSIBLE resolved to its subformat."""

    format_tag: int
    channels: int
    sample_rate: int
    bits_per_sample: int
    block_align: int
    extensible: bool = False

    @property
    def encoding(self) -> str:
        return _FORMAT_NAMES.get(self.format_tag, f"0x{self.format_tag:04x}")


@dataclass(frozen=True, slots=True)
class WavAudio:
    """Decoded audio: PCM16 mono at ``sample_rate``, plus the file's original format."""

    pcm: bytes
    sample_rate: int
    source: WavFormat

    @property
    def duration_ms(self) -> float:
        return codecs.pcm16_duration_ms(self.pcm, self.sample_rate)


def _load_bytes(source: WavSource) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    return Path(source).read_bytes()


def _parse_fmt(body: bytes) -> WavFormat:
    if len(body) < 16:
        raise WavError("fmt chunk is too short")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
    extensible = tag == WAVE_FORMAT_EXTENSIBLE
    if extensible:
        if len(body) < 40:
            raise WavError("WAVE_FORMAT_EXTENSIBLE fmt chunk is too short")
        subformat = body[24:40]
        if subformat[2:] != _SUBTYPE_TAIL:
            raise WavError("unsupported WAVE_FORMAT_EXTENSIBLE subformat")
        tag = int.from_bytes(subformat[:2], "little")
    if tag not in _FORMAT_NAMES:
        raise WavError(f"unsupported WAV format tag 0x{tag:04x}")
    if channels < 1:
        raise WavError("WAV file declares no channels")
    if rate < 1:
        raise WavError("WAV file declares a zero sample rate")
    fmt = WavFormat(tag, channels, rate, bits, block_align, extensible)
    allowed = {
        WAVE_FORMAT_PCM: (8, 16, 24, 32),
        WAVE_FORMAT_IEEE_FLOAT: (32, 64),
        WAVE_FORMAT_ALAW: (8,),
        WAVE_FORMAT_MULAW: (8,),
    }[tag]
    if bits not in allowed:
        raise WavError(f"unsupported {fmt.encoding} sample size: {bits} bits")
    if block_align != channels * bits // 8:
        raise WavError("fmt block_align does not match channels and sample size")
    return fmt


def parse_wav(data: bytes) -> tuple[WavFormat, bytes]:
    """Split a RIFF/WAVE file into its format and its raw sample frames."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        if data[:4] in (b"RF64", b"BW64"):
            raise WavError("RF64/BW64 WAV files are not supported")
        raise WavError("not a RIFF/WAVE file")
    fmt: WavFormat | None = None
    frames: bytes | None = None
    streaming = False
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body_start = pos + 8
        end = body_start + size
        if chunk_id == b"data":
            if end > len(data):
                if size != _STREAMING_SIZE:
                    raise WavError("WAV data chunk is truncated")
                end = len(data)
            frames = data[body_start:end]
            streaming = size == _STREAMING_SIZE
            if fmt is not None:
                break
        elif end > len(data):
            raise WavError(f"WAV {chunk_id.decode('latin-1')!r} chunk is truncated")
        elif chunk_id == b"fmt ":
            fmt = _parse_fmt(data[body_start:end])
            if frames is not None:
                break
        pos = end + (size & 1)  # chunks are padded to even sizes
    if fmt is None:
        raise WavError("WAV file has no fmt chunk")
    if frames is None:
        raise WavError("WAV file has no data chunk")
    partial = len(frames) % fmt.block_align
    if partial:
        if not streaming:
            raise WavError("WAV data chunk is not a whole number of frames")
        frames = frames[:-partial]  # a stream cut mid-frame: keep the whole frames
    return fmt, frames


def _frames_to_pcm16(fmt: WavFormat, frames: bytes) -> bytes:
    """Interleaved samples of any supported encoding -> interleaved PCM16."""
    width = fmt.bits_per_sample // 8
    if fmt.format_tag == WAVE_FORMAT_PCM:
        if width == 1:
            frames = codecs.unsigned8_to_signed(frames)
        return codecs.to_pcm16(frames, width)
    if fmt.format_tag == WAVE_FORMAT_IEEE_FLOAT:
        return codecs.float_to_pcm16(frames, width)
    if fmt.format_tag == WAVE_FORMAT_ALAW:
        return codecs.alaw_to_pcm16(frames)
    return codecs.ulaw_to_pcm16(frames)


def load_wav(source: WavSource, rate: int | None = None) -> WavAudio:
    """Decode a WAV file (bytes or a path) to PCM16 mono, resampled to ``rate`` if given."""
    fmt, frames = parse_wav(_load_bytes(source))
    pcm = codecs.mix_to_mono(_frames_to_pcm16(fmt, frames), fmt.channels)
    out_rate = fmt.sample_rate if rate is None else rate
    if out_rate != fmt.sample_rate:
        pcm = codecs.resample(pcm, fmt.sample_rate, out_rate)
    return WavAudio(pcm, out_rate, fmt)


def read_wav(source: WavSource, rate: int = 8000) -> bytes:
    """PCM16 mono at ``rate`` Hz from a WAV file (bytes or a path)."""
    return load_wav(source, rate).pcm


# ---- writing -------------------------------------------------------------------------------


def wav_bytes(
    samples: bytes,
    sample_rate: int,
    *,
    format_tag: int = WAVE_FORMAT_PCM,
    bits_per_sample: int = 16,
    channels: int = 1,
) -> bytes:
    """A minimal RIFF/WAVE file around already-encoded interleaved samples."""
    block_align = channels * bits_per_sample // 8
    if block_align < 1 or len(samples) % block_align:
        raise ValueError("samples are not a whole number of frames")
    fmt_body = struct.pack(
        "<HHIIHH",
        format_tag,
        channels,
        sample_rate,
        sample_rate * block_align,
        block_align,
        bits_per_sample,
    )
    if format_tag != WAVE_FORMAT_PCM:
        fmt_body += b"\x00\x00"  # cbSize: non-PCM fmt chunks carry it
    pad = b"\x00" if len(samples) & 1 else b""
    chunks = (
        b"fmt "
        + struct.pack("<I", len(fmt_body))
        + fmt_body
        + b"data"
        + struct.pack("<I", len(samples))
        + samples
        + pad
    )
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def pcm16_wav_bytes(pcm: bytes, sample_rate: int, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV file."""
    return wav_bytes(pcm, sample_rate, channels=channels)


def mulaw_wav_bytes(pcm: bytes, sample_rate: int = 8000) -> bytes:
    """A G.711 mu-law WAV file (what PBXs record), encoded from PCM16 mono."""
    return wav_bytes(
        codecs.pcm16_to_ulaw(pcm), sample_rate, format_tag=WAVE_FORMAT_MULAW, bits_per_sample=8
    )


def write_wav(
    path: str | os.PathLike[str], pcm: bytes, sample_rate: int, *, encoding: str = "pcm16"
) -> None:
    """Write PCM16 mono as a ``pcm16`` or ``mulaw`` WAV file."""
    if encoding == "pcm16":
        data = pcm16_wav_bytes(pcm, sample_rate)
    elif encoding == "mulaw":
        data = mulaw_wav_bytes(pcm, sample_rate)
    else:
        raise ValueError("encoding must be 'pcm16' or 'mulaw'")
    Path(path).write_bytes(data)
