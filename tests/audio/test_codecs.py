"""G.711, sample-format conversions, resampling and sample arithmetic."""

from __future__ import annotations

import math
import struct
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_bridge.audio import codecs

int16 = st.integers(min_value=-32768, max_value=32767)
pcm16 = st.lists(int16, max_size=400).map(lambda xs: array("h", xs).tobytes())


def samples(pcm: bytes) -> list[int]:
    out = array("h")
    out.frombytes(pcm)
    return out.tolist()


def sine(n: int, freq: float = 440.0, rate: int = 8000, amp: int = 8000) -> bytes:
    return array(
        "h", (int(amp * math.sin(2 * math.pi * freq * i / rate)) for i in range(n))
    ).tobytes()


# ---- G.711 ---------------------------------------------------------------------------------


def test_known_g711_vectors() -> None:
    assert samples(codecs.ulaw_to_pcm16(bytes([0x00, 0x80, 0xFF, 0x7F]))) == [-32124, 32124, 0, 0]
    assert samples(codecs.alaw_to_pcm16(bytes([0xD5, 0x55]))) == [8, -8]
    assert codecs.pcm16_to_ulaw(bytes(2)) == bytes([codecs.ULAW_SILENCE])
    assert codecs.pcm16_to_alaw(bytes(2)) == bytes([codecs.ALAW_SILENCE])
    assert codecs.ulaw_to_pcm16(b"") == b""


@given(pcm16)
def test_ulaw_round_trip_is_within_the_quantiser(pcm: bytes) -> None:
    back = samples(codecs.ulaw_to_pcm16(codecs.pcm16_to_ulaw(pcm)))
    for x, y in zip(samples(pcm), back, strict=True):
        assert abs(x - y) <= abs(x) / 16 + 8


@given(pcm16)
def test_alaw_round_trip_is_within_the_quantiser(pcm: bytes) -> None:
    back = samples(codecs.alaw_to_pcm16(codecs.pcm16_to_alaw(pcm)))
    for x, y in zip(samples(pcm), back, strict=True):
        assert abs(x - y) <= abs(x) / 16 + 8


@given(st.binary(max_size=300))
def test_decoded_g711_reencodes_to_the_same_values(data: bytes) -> None:
    for decode, encode in (
        (codecs.ulaw_to_pcm16, codecs.pcm16_to_ulaw),
        (codecs.alaw_to_pcm16, codecs.pcm16_to_alaw),
    ):
        pcm = decode(data)
        assert len(pcm) == 2 * len(data)
        assert decode(encode(pcm)) == pcm


@pytest.mark.parametrize("encode", [codecs.pcm16_to_ulaw, codecs.pcm16_to_alaw])
def test_odd_pcm16_is_refused(encode: object) -> None:
    with pytest.raises(ValueError, match="even number"):
        encode(b"\x00\x00\x00")  # type: ignore[operator]


# ---- widths, floats, channels ---------------------------------------------------------------


def test_to_pcm16_from_each_width() -> None:
    assert codecs.to_pcm16(bytes([0x40, 0xC0]), 1) == struct.pack("<2h", 0x4000, -0x4000)
    assert codecs.to_pcm16(struct.pack("<h", 1234), 2) == struct.pack("<h", 1234)
    assert codecs.to_pcm16(b"\xff\x34\x12", 3) == struct.pack("<h", 0x1234)
    assert codecs.to_pcm16(struct.pack("<i", -0x12345678), 4) == struct.pack("<h", -0x1235)


def test_to_pcm16_refuses_bad_widths_and_partial_samples() -> None:
    with pytest.raises(ValueError, match="width"):
        codecs.to_pcm16(b"\x00" * 5, 5)
    with pytest.raises(ValueError, match="whole number"):
        codecs.to_pcm16(b"\x00" * 5, 3)


def test_unsigned8_to_signed() -> None:
    assert codecs.unsigned8_to_signed(bytes([0x80, 0x00, 0xFF])) == bytes([0x00, 0x80, 0x7F])


@pytest.mark.parametrize(("width", "code"), [(4, "<%df"), (8, "<%dd")])
def test_float_to_pcm16_scales_clips_and_silences_nan(width: int, code: str) -> None:
    values = [0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, math.nan, math.inf, -math.inf]
    data = struct.pack(code % len(values), *values)
    assert samples(codecs.float_to_pcm16(data, width)) == [
        0,
        16384,
        -16384,
        32767,
        -32768,
        32767,
        -32768,
        0,
        32767,
        -32768,
    ]


def test_float_to_pcm16_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="4 or 8"):
        codecs.float_to_pcm16(b"\x00\x00", 2)
    with pytest.raises(ValueError, match="whole number"):
        codecs.float_to_pcm16(b"\x00" * 6, 4)


def test_mix_to_mono() -> None:
    mono = struct.pack("<3h", 1, 2, 3)
    assert codecs.mix_to_mono(mono, 1) == mono
    stereo = struct.pack("<4h", 100, 300, -1000, 1000)
    assert samples(codecs.mix_to_mono(stereo, 2)) == [200, 0]
    three = struct.pack("<6h", 300, 600, 900, -300, -300, -300)
    assert samples(codecs.mix_to_mono(three, 3)) == [600, -300]


def test_mix_to_mono_refuses_bad_layouts() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        codecs.mix_to_mono(b"", 0)
    with pytest.raises(ValueError, match="whole number"):
        codecs.mix_to_mono(b"\x00" * 6, 2)


# ---- resampling --------------------------------------------------------------------------------


def test_resampler_same_rate_is_identity() -> None:
    data = sine(100)
    assert codecs.Resampler(8000, 8000).process(data) == data


def test_resample_changes_length_by_the_rate_ratio() -> None:
    data = sine(1600, rate=16000)
    down = codecs.resample(data, 16000, 8000)
    assert abs(len(down) // 2 - 800) <= 1
    up = codecs.resample(down, 8000, 16000)
    assert abs(len(up) // 2 - 1600) <= 2


@given(st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=8))
def test_streaming_resampler_matches_one_shot(cuts: list[int]) -> None:
    data = sine(sum(cuts), rate=16000)
    stream = codecs.Resampler(16000, 8000)
    pieces, pos = [], 0
    for n in cuts:
        pieces.append(stream.process(data[pos : pos + 2 * n]))
        pos += 2 * n
    assert b"".join(pieces) == codecs.resample(data, 16000, 8000)


def test_resampler_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="positive"):
        codecs.Resampler(0, 8000)
    with pytest.raises(ValueError, match="positive"):
        codecs.Resampler(8000, -1)
    with pytest.raises(ValueError, match="even"):
        codecs.Resampler(16000, 8000).process(b"\x00")


# ---- re-chunking -------------------------------------------------------------------------------


@given(st.lists(st.binary(max_size=50), max_size=10), st.integers(min_value=1, max_value=17))
def test_rechunker_preserves_the_stream(pieces: list[bytes], size: int) -> None:
    chunker = codecs.Rechunker(size)
    out = [c for p in pieces for c in chunker.push(p)]
    assert all(len(c) == size for c in out)
    assert chunker.pending == len(b"".join(pieces)) % size
    assert b"".join(out) + chunker.flush() == b"".join(pieces)
    assert chunker.pending == 0


def test_rechunker_flush_padding() -> None:
    chunker = codecs.Rechunker(4)
    assert chunker.push(b"abcdef") == [b"abcd"]
    assert chunker.flush(fill=0xFF) == b"ef\xff\xff"
    assert chunker.flush(fill=0xFF) == b""  # nothing pending: no padding either
    with pytest.raises(ValueError):
        codecs.Rechunker(0)


# ---- silence, arithmetic, measurements ---------------------------------------------------------


def test_silence() -> None:
    assert codecs.silence(3) == bytes(6)
    assert codecs.ulaw_silence(2) == b"\xff\xff"
    assert codecs.ulaw_to_pcm16(codecs.ulaw_silence(4)) == codecs.silence(4)
    with pytest.raises(ValueError, match="negative"):
        codecs.silence(-1)
    with pytest.raises(ValueError, match="negative"):
        codecs.ulaw_silence(-1)


def test_sample_arithmetic() -> None:
    assert codecs.samples_for_ms(20, 8000) == 160
    assert codecs.samples_for_ms(0.1, 8000) == 1
    assert codecs.ms_for_samples(160, 8000) == 20.0
    assert codecs.pcm16_samples(bytes(320)) == 160
    assert codecs.pcm16_duration_ms(bytes(320), 16000) == 10.0
    with pytest.raises(ValueError):
        codecs.pcm16_samples(b"\x00")


def test_measurements() -> None:
    tone = sine(800, freq=500, amp=10000)  # 100 ms: 50 periods, ~100 zero crossings
    assert 6800 <= codecs.rms(tone) <= 7300  # amp / sqrt(2)
    assert 98 <= codecs.cross(tone) <= 101
    assert 9900 <= codecs.peak(tone) <= 10000
    assert codecs.rms(b"") == codecs.cross(b"") == codecs.peak(b"") == 0
    assert codecs.peak(struct.pack("<2h", 5, -300)) == 300
