"""WAV reading in every supported format (files generated in tmp_path), and every refusal."""

from __future__ import annotations

import math
import struct
import wave
from array import array
from pathlib import Path

import pytest

from ivr_bridge.audio import codecs, wav
from ivr_bridge.audio.wav import (
    WAVE_FORMAT_ALAW,
    WAVE_FORMAT_EXTENSIBLE,
    WAVE_FORMAT_IEEE_FLOAT,
    WAVE_FORMAT_MULAW,
    WAVE_FORMAT_PCM,
    WavError,
    WavFormat,
)

RATE = 8000
N = 800  # 100 ms


def tone(n: int = N, rate: int = RATE, freq: float = 300.0, amp: int = 12000) -> list[int]:
    return [int(amp * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)]


def pcm(values: list[int]) -> bytes:
    return array("h", values).tobytes()


def values(data: bytes) -> list[int]:
    out = array("h")
    out.frombytes(data)
    return out.tolist()


def max_error(a: bytes, b: bytes) -> int:
    assert len(a) == len(b)
    return max((abs(x - y) for x, y in zip(values(a), values(b), strict=True)), default=0)


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def chunk(cid: bytes, body: bytes, declared: int | None = None) -> bytes:
    size = len(body) if declared is None else declared
    return cid + struct.pack("<I", size) + body + (b"\x00" if len(body) & 1 else b"")


def fmt(tag: int, channels: int, rate: int, bits: int, block_align: int | None = None) -> bytes:
    align = channels * bits // 8 if block_align is None else block_align
    return chunk(b"fmt ", struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits))


def extensible_fmt(subformat: int, channels: int, rate: int, bits: int, tail: bytes) -> bytes:
    align = channels * bits // 8
    body = struct.pack(
        "<HHIIHHHHI", WAVE_FORMAT_EXTENSIBLE, channels, rate, rate * align, align, bits, 22, bits, 3
    )
    return chunk(b"fmt ", body + struct.pack("<H", subformat) + tail)


GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
REF = pcm(tone())


def encode(kind: str) -> bytes:
    """The reference tone as a WAV file of the given kind."""
    v = tone()
    if kind == "pcm8":
        data = bytes((x >> 8) + 128 for x in v)
        return riff(fmt(WAVE_FORMAT_PCM, 1, RATE, 8), chunk(b"data", data))
    if kind == "pcm16":
        return riff(fmt(WAVE_FORMAT_PCM, 1, RATE, 16), chunk(b"data", REF))
    if kind == "pcm24":
        data = b"".join(struct.pack("<i", x << 8)[:3] for x in v)
        return riff(fmt(WAVE_FORMAT_PCM, 1, RATE, 24), chunk(b"data", data))
    if kind == "pcm32":
        data = struct.pack(f"<{N}i", *(x << 16 for x in v))
        return riff(fmt(WAVE_FORMAT_PCM, 1, RATE, 32), chunk(b"data", data))
    if kind == "float32":
        data = struct.pack(f"<{N}f", *(x / 32768 for x in v))
        return riff(fmt(WAVE_FORMAT_IEEE_FLOAT, 1, RATE, 32), chunk(b"data", data))
    if kind == "float64":
        data = struct.pack(f"<{N}d", *(x / 32768 for x in v))
        return riff(fmt(WAVE_FORMAT_IEEE_FLOAT, 1, RATE, 64), chunk(b"data", data))
    if kind == "alaw":
        return riff(fmt(WAVE_FORMAT_ALAW, 1, RATE, 8), chunk(b"data", codecs.pcm16_to_alaw(REF)))
    if kind == "mulaw":
        return riff(fmt(WAVE_FORMAT_MULAW, 1, RATE, 8), chunk(b"data", codecs.pcm16_to_ulaw(REF)))
    if kind == "extensible-pcm24":
        data = b"".join(struct.pack("<i", x << 8)[:3] for x in v)
        return riff(extensible_fmt(WAVE_FORMAT_PCM, 1, RATE, 24, GUID_TAIL), chunk(b"data", data))
    if kind == "extensible-float32":
        data = struct.pack(f"<{N}f", *(x / 32768 for x in v))
        return riff(
            extensible_fmt(WAVE_FORMAT_IEEE_FLOAT, 1, RATE, 32, GUID_TAIL), chunk(b"data", data)
        )
    if kind == "stereo16":
        data = pcm([s for x in v for s in (x, x)])
        return riff(fmt(WAVE_FORMAT_PCM, 2, RATE, 16), chunk(b"data", data))
    if kind == "quad16":
        data = pcm([s for x in v for s in (x, x, -x, x)])  # mixes to x/2
        return riff(fmt(WAVE_FORMAT_PCM, 4, RATE, 16), chunk(b"data", data))
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "tolerance"),
    [
        ("pcm8", 256),
        ("pcm16", 0),
        ("pcm24", 0),
        ("pcm32", 0),
        ("float32", 1),
        ("float64", 1),
        ("alaw", 12000 // 16 + 8),
        ("mulaw", 12000 // 16 + 8),
        ("extensible-pcm24", 0),
        ("extensible-float32", 1),
        ("stereo16", 1),
    ],
)
def test_each_format_reads_back_the_tone(kind: str, tolerance: int, tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.wav"
    path.write_bytes(encode(kind))
    audio = wav.load_wav(path)
    assert audio.sample_rate == RATE
    assert audio.duration_ms == 100.0
    assert max_error(audio.pcm, REF) <= tolerance
    assert wav.read_wav(str(path)) == audio.pcm  # str paths too
    assert wav.read_wav(path.read_bytes()) == audio.pcm  # and bytes


def test_multichannel_mixdown() -> None:
    audio = wav.load_wav(encode("quad16"))
    assert audio.source.channels == 4
    assert max_error(audio.pcm, pcm([x // 2 for x in tone()])) <= 2


def test_source_format_is_reported() -> None:
    audio = wav.load_wav(encode("extensible-float32"))
    assert audio.source == WavFormat(WAVE_FORMAT_IEEE_FLOAT, 1, RATE, 32, 4, extensible=True)
    assert audio.source.encoding == "float"
    assert WavFormat(0x55, 1, RATE, 8, 1).encoding == "0x0055"


def test_resampling_to_the_requested_rate(tmp_path: Path) -> None:
    path = tmp_path / "wide.wav"
    values48 = tone(4800, rate=48000)
    with wave.open(str(path), "wb") as w:  # written by the stdlib, as a cross-check
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(pcm([s for x in values48 for s in (x, x)]))
    out = wav.read_wav(path, 8000)
    assert abs(len(out) // 2 - 800) <= 1
    narrow = wav.load_wav(path, rate=None)
    assert narrow.sample_rate == 48000 and len(narrow.pcm) == 2 * 4800
    # a 300 Hz tone survives: compare with the tone sampled at 8 kHz, allowing filter lag
    assert codecs.rms(out) == pytest.approx(codecs.rms(REF), rel=0.1)


def test_streaming_data_size_reads_to_the_end_keeping_whole_frames() -> None:
    data = b"data" + struct.pack("<I", 0xFFFFFFFF) + REF + b"\x01"  # cut mid-sample
    audio = wav.load_wav(riff(fmt(WAVE_FORMAT_PCM, 1, RATE, 16), data))
    assert audio.pcm == REF


def test_chunks_in_any_order_with_padding_and_trailing_bytes() -> None:
    odd = chunk(b"LIST", b"abc")  # odd size: a pad byte follows
    blob = riff(odd, chunk(b"data", REF), chunk(b"junk", b"xy"), fmt(1, 1, RATE, 16)) + b"\x00\x00"
    assert wav.read_wav(blob) == REF


def test_empty_data_chunk() -> None:
    audio = wav.load_wav(riff(fmt(WAVE_FORMAT_PCM, 1, RATE, 16), chunk(b"data", b"")))
    assert audio.pcm == b"" and audio.duration_ms == 0


GOOD_FMT = fmt(WAVE_FORMAT_PCM, 1, RATE, 16)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "not a RIFF/WAVE"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "not a RIFF/WAVE"),
        (b"ID3\x03" + bytes(20), "not a RIFF/WAVE"),
        (b"RF64\xff\xff\xff\xffWAVEds64", "RF64"),
        (riff(chunk(b"data", REF)), "no fmt chunk"),
        (riff(GOOD_FMT), "no data chunk"),
        (riff(GOOD_FMT, chunk(b"data", REF[:100], declared=200)), "data chunk is truncated"),
        (riff(GOOD_FMT, chunk(b"LIST", b"ab", declared=50)), "'LIST' chunk is truncated"),
        (riff(GOOD_FMT, chunk(b"data", REF[:5])), "whole number of frames"),
        (riff(chunk(b"fmt ", b"\x01\x00\x01\x00"), chunk(b"data", b"")), "fmt chunk is too short"),
        (riff(fmt(WAVE_FORMAT_EXTENSIBLE, 1, RATE, 16), chunk(b"data", b"")), "EXTENSIBLE"),
        (riff(extensible_fmt(1, 1, RATE, 16, b"\x00" * 14), chunk(b"data", b"")), "subformat"),
        (riff(fmt(2, 1, RATE, 4), chunk(b"data", b"")), "format tag 0x0002"),
        (riff(fmt(WAVE_FORMAT_PCM, 0, RATE, 16, 2), chunk(b"data", b"")), "no channels"),
        (riff(fmt(WAVE_FORMAT_PCM, 1, 0, 16), chunk(b"data", b"")), "zero sample rate"),
        (riff(fmt(WAVE_FORMAT_PCM, 1, RATE, 12, 2), chunk(b"data", b"")), "pcm sample size"),
        (riff(fmt(WAVE_FORMAT_IEEE_FLOAT, 1, RATE, 16), chunk(b"data", b"")), "float sample"),
        (riff(fmt(WAVE_FORMAT_MULAW, 1, RATE, 16), chunk(b"data", b"")), "mulaw sample"),
        (riff(fmt(WAVE_FORMAT_PCM, 2, RATE, 16, 2), chunk(b"data", b"")), "block_align"),
    ],
)
def test_bad_files_raise_wav_error(blob: bytes, message: str) -> None:
    with pytest.raises(WavError, match=message):
        wav.load_wav(blob)


def test_wav_error_is_a_value_error() -> None:
    assert issubclass(WavError, ValueError)


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        wav.read_wav(tmp_path / "nope.wav")


# ---- writing -----------------------------------------------------------------------------------


def test_write_pcm16_is_readable_by_the_stdlib(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    wav.write_wav(path, REF, RATE)
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
        assert w.readframes(N) == REF
    assert wav.read_wav(path) == REF


def test_write_mulaw(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    wav.write_wav(path, REF, RATE, encoding="mulaw")
    audio = wav.load_wav(path)
    assert audio.source.format_tag == WAVE_FORMAT_MULAW
    assert audio.pcm == codecs.ulaw_to_pcm16(codecs.pcm16_to_ulaw(REF))
    assert path.stat().st_size == 12 + 8 + 18 + 8 + N


def test_stereo_pcm16_and_odd_sized_data_round_trip() -> None:
    stereo = pcm([1, 3, 5, 7])
    assert wav.read_wav(wav.pcm16_wav_bytes(stereo, RATE, channels=2)) == pcm([2, 6])
    blob = wav.wav_bytes(b"\x01\x02\x03", RATE, format_tag=WAVE_FORMAT_ALAW, bits_per_sample=8)
    assert len(blob) % 2 == 0  # the pad byte
    assert wav.read_wav(blob) == codecs.alaw_to_pcm16(b"\x01\x02\x03")


def test_writer_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="encoding"):
        wav.write_wav(tmp_path / "x.wav", REF, RATE, encoding="mp3")
    with pytest.raises(ValueError, match="whole number"):
        wav.wav_bytes(b"\x00", RATE)
    with pytest.raises(ValueError, match="whole number"):
        wav.wav_bytes(b"", RATE, channels=0)
