"""Segmentation rules (endpoint, silence chunks, length cap, external EOU) with a toy decoder.

The toy parts are real implementations of the two small protocols, not mocks: a loudness
classifier and a decoder whose "words" are the loud stretches of what it was fed.
"""

from __future__ import annotations

import audioop

import pytest

from ivr_bridge.local.engine import (
    EngineEou,
    EngineEvent,
    EngineFinal,
    EngineOptions,
    EnginePartial,
    EngineWord,
)
from ivr_bridge.local.pocketsphinx_engine import clean_word
from ivr_bridge.local.segmenter import SegmentedSession, SegmenterParams

RATE = 8000


def tone(ms: int) -> bytes:
    n = RATE * ms // 1000
    return b"".join(
        (8000 if (i // 8) % 2 else -8000).to_bytes(2, "little", signed=True) for i in range(n)
    )


def quiet(ms: int) -> bytes:
    return bytes(2 * (RATE * ms // 1000))


class Loudness:
    frame_bytes = 2 * RATE * 30 // 1000

    def is_speech(self, frame: bytes) -> bool:
        return audioop.rms(frame, 2) > 1000


class LoudStretches:
    """Words are loud 10 ms blocks in a row; times relative to the utterance start."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.pcm = b""

    def start(self) -> None:
        self.pcm = b""
        self.log.append("start")

    def process(self, pcm: bytes) -> None:
        self.pcm += pcm

    def words(self) -> list[EngineWord]:
        block = 2 * RATE // 100
        words: list[EngineWord] = []
        start = None
        n = len(self.pcm) // block
        for i in range(n + 1):
            loud = i < n and audioop.rms(self.pcm[i * block : (i + 1) * block], 2) > 1000
            if loud and start is None:
                start = i
            elif not loud and start is not None:
                words.append(EngineWord(f"w{len(words) + 1}", start * 10, i * 10))
                start = None
        return words

    def end(self) -> list[EngineWord]:
        self.log.append("end")
        return self.words()

    def release(self) -> None:
        self.log.append("release")


def session(**options: int | bool) -> tuple[SegmentedSession, list[str]]:
    log: list[str] = []

    def acquire() -> LoudStretches:
        log.append("acquire")
        return LoudStretches(log)

    s = SegmentedSession(
        EngineOptions(sample_rate=RATE, **options),  # type: ignore[arg-type]
        decoder_rate=RATE,
        classifier=Loudness(),
        decoder_factory=acquire,
    )
    return s, log


def feed(s: SegmentedSession, pcm: bytes, step: int = 1600) -> list[EngineEvent]:
    events: list[EngineEvent] = []
    for off in range(0, len(pcm), step):
        before = s.final_time_ms
        events += s.feed(pcm[off : off + step])
        assert s.final_time_ms >= before
        assert s.final_time_ms <= s.processed_ms
    return events


def kinds(events: list[EngineEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_endpoint_after_700_ms_of_non_speech() -> None:
    s, log = session()
    events = feed(s, quiet(500) + tone(1000) + quiet(1000))
    assert kinds(events)[-2:] == ["EngineFinal", "EngineEou"]
    final = events[-2]
    assert isinstance(final, EngineFinal)
    assert (final.text, final.start_ms, final.end_ms) == ("w1", 500, 1500)
    eou = events[-1]
    assert eou == EngineEou(1500)  # the end of the last speech frame
    assert s.final_time_ms >= 2200
    assert s.finish() == []
    s.close()
    assert log == ["acquire", "start", "end", "release"]


def test_silence_chunks_end_the_utterance_without_decoding_all_of_them() -> None:
    s, log = session()
    assert "EngineFinal" not in kinds(feed(s, tone(1000)))
    events = s.add_silence(60_000)
    assert kinds(events)[-2:] == ["EngineFinal", "EngineEou"]
    assert 60_970 <= s.processed_ms <= 61_000
    assert s.final_time_ms <= s.processed_ms
    more = s.add_silence(1000) + s.finish()
    assert more == []
    s.close()
    assert log.count("start") == 1


def test_short_silence_inside_an_utterance_keeps_it_open() -> None:
    s, _ = session()
    events = feed(s, tone(600)) + s.add_silence(300) + feed(s, tone(600)) + s.finish()
    finals = [e for e in events if isinstance(e, EngineFinal)]
    assert len(finals) == 1
    assert finals[0].text == "w1 w2"
    assert kinds(events)[-1] == "EngineEou"


def test_pure_silence_never_loads_a_decoder() -> None:
    s, log = session()
    assert feed(s, quiet(3000)) + s.add_silence(10_000) + s.finish() == []
    assert s.processed_ms >= 12_970
    assert s.final_time_ms >= 12_600  # all but the pre-roll is known to hold no speech
    s.close()
    assert log == []


def test_a_non_stop_talker_gets_finals_every_20_s_and_one_eou() -> None:
    s, _ = session()
    events = feed(s, tone(45_000), step=8000) + s.add_silence(1000)
    assert kinds(events).count("EngineFinal") == 3
    assert kinds(events).count("EngineEou") == 1
    finals = [e for e in events if isinstance(e, EngineFinal)]
    assert [f.start_ms // 1000 for f in finals] == [0, 20, 40]
    assert kinds(events)[-1] == "EngineEou"


def test_a_long_utterance_is_cut_at_a_short_pause_after_the_soft_cap() -> None:
    s, _ = session()
    speech = (tone(1800) + quiet(200)) * 10
    events = feed(s, speech) + s.add_silence(1000)
    finals = [e for e in events if isinstance(e, EngineFinal)]
    assert len(finals) == 2
    assert 15_000 <= finals[0].end_ms <= 16_000  # the first pause after 15 s
    assert finals[1].start_ms >= finals[0].end_ms


def test_external_eou_mode() -> None:
    s, _ = session(external_eou=True)
    events = feed(s, tone(1000) + quiet(1000))
    assert kinds(events)[-1] == "EngineFinal"  # silence still finalizes, but no EOU
    forced = s.force_endpoint()
    assert forced == [EngineEou(2000)]
    events = feed(s, tone(500)) + s.finish()
    assert kinds(events)[-2:] == ["EngineFinal", "EngineEou"]


def test_force_endpoint_mid_utterance() -> None:
    s, _ = session(external_eou=True)
    events = feed(s, tone(800)) + s.force_endpoint()
    assert kinds(events)[-2:] == ["EngineFinal", "EngineEou"]
    assert s.finish() == []


def test_partials_only_when_the_text_changes_and_not_too_often() -> None:
    s, _ = session()
    events = feed(s, tone(400) + quiet(150) + tone(2000), step=160)
    partials = [e for e in events if isinstance(e, EnginePartial)]
    assert [p.text for p in partials] == ["w1", "w1 w2"]


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="onset"):
        SegmentedSession(
            EngineOptions(sample_rate=RATE),
            decoder_rate=RATE,
            classifier=Loudness(),
            decoder_factory=lambda: LoudStretches([]),
            params=SegmenterParams(preroll_frames=2, onset_window=5),
        )


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        ("hello", "hello"),
        ("don't(2)", "don't"),
        ("<sil>", None),
        ("</s>", None),
        ("[NOISE]", None),
        ("+SPN+", None),
        ("", None),
    ],
)
def test_pocketsphinx_words_are_cleaned(raw: str, word: str | None) -> None:
    assert clean_word(raw) == word
