"""The synthetic tone vocabulary decodes exactly, also after a G.711 round trip."""

from __future__ import annotations

import audioop

import pytest

from ivr_bridge.local.tones import (
    VOCABULARY,
    ToneDecoder,
    synthesize_script,
    synthesize_words,
    word_tone,
)


def through_mulaw(pcm: bytes) -> bytes:
    return audioop.ulaw2lin(audioop.lin2ulaw(pcm, 2), 2)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_every_word_round_trips(rate: int) -> None:
    pcm = synthesize_words(VOCABULARY, rate=rate)
    if rate == 8000:
        pcm = through_mulaw(pcm)
    dec = ToneDecoder(rate)
    words = []
    for i in range(0, len(pcm), 333):  # odd-sized pieces: frame assembly across calls
        words += dec.feed(pcm[i : i + 333])
    words += dec.flush()
    assert [w.text for w in words] == VOCABULARY


def test_word_times_are_exact_to_the_frame() -> None:
    pcm = bytes(1600) + synthesize_words(["hello", "agent"])
    dec = ToneDecoder(8000)
    words = dec.feed(pcm) + dec.flush()
    f, d = word_tone("hello")
    assert words[0].start_ms == 100 and words[0].end_ms == 100 + d
    assert words[1].start_ms == 100 + d + 60
    assert f > 0


def test_silence_advances_time_and_ends_a_word() -> None:
    dec = ToneDecoder(8000)
    first = synthesize_words(["yes"], gap_ms=0)
    assert dec.feed(first) == []
    assert dec.in_word
    words = dec.silence(500)
    assert [w.text for w in words] == ["yes"]
    assert dec.position_ms == len(first) // 16 + 500


def test_a_fragment_of_a_word_is_ignored() -> None:
    dec = ToneDecoder(8000)
    fragment = synthesize_words(["zulu"], gap_ms=0)[: 2 * 8 * 30]  # 30 ms of it
    assert dec.feed(fragment + bytes(800)) == []


def test_script_has_long_pauses() -> None:
    pcm = synthesize_script([["one", "two"], ["three"]], pause_ms=1000)
    dec = ToneDecoder(8000)
    words = dec.feed(pcm)
    assert [w.text for w in words] == ["one", "two", "three"]
    assert words[2].start_ms - words[1].end_ms >= 1000
