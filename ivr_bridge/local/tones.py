"""A synthetic vocabulary spoken as tones, recognized exactly. Sans-I/O.

Continuity tests need transcripts they can assert word for word, which no real recognizer
gives. Here each word is one steady tone: its frequency (12 steps, 500-2700 Hz) and its length
(4 classes, 80-230 ms) select one of 48 words. Words are separated by short silences;
utterances by long ones. The decoder measures each tone's frequency from its zero-crossing
count and its length from its 10 ms frames, both with audioop's C routines, so it keeps up
with many sessions at many times real time, and survives G.711 round trips.
"""

from __future__ import annotations

import functools
import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ivr_bridge.audio.codecs import cross, rms

FREQUENCIES_HZ = tuple(range(500, 2701, 200))  # 12 tones
DURATIONS_MS = (80, 130, 180, 230)  # 4 lengths
VOCABULARY = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu zero one two "
    "three four five six seven eight nine yes no hello goodbye account balance payment order "
    "card help agent thanks"
).split()
WORD_GAP_MS = 60
AMPLITUDE = 8000
_SILENCE_RMS = 300

assert len(VOCABULARY) == len(FREQUENCIES_HZ) * len(DURATIONS_MS)


def word_tone(word: str) -> tuple[int, int]:
    """(frequency Hz, duration ms) of a vocabulary word."""
    index = VOCABULARY.index(word)
    return FREQUENCIES_HZ[index % len(FREQUENCIES_HZ)], DURATIONS_MS[index // len(FREQUENCIES_HZ)]


@functools.lru_cache(maxsize=256)
def _tone(word: str, rate: int) -> bytes:
    freq, dur = word_tone(word)
    step = 2 * math.pi * freq / rate
    return array(
        "h", (int(AMPLITUDE * math.sin(step * i)) for i in range(rate * dur // 1000))
    ).tobytes()


def synthesize_words(words: Iterable[str], rate: int = 8000, gap_ms: int = WORD_GAP_MS) -> bytes:
    """PCM16 for the words, each followed by ``gap_ms`` of silence."""
    gap = bytes(2 * (rate * gap_ms // 1000))
    return b"".join(_tone(word, rate) + gap for word in words)


def synthesize_script(
    utterances: Sequence[Sequence[str]], rate: int = 8000, pause_ms: int = 1200
) -> bytes:
    """Utterances separated by ``pause_ms`` of silence (long enough for an end of utterance)."""
    silence = bytes(2 * (rate * pause_ms // 1000))
    return b"".join(synthesize_words(u, rate) + silence for u in utterances)


@dataclass(frozen=True, slots=True)
class ToneWord:
    text: str
    start_ms: int
    end_ms: int


class ToneDecoder:
    """Streaming decoder: feed PCM16 (or silence), get the words that ended."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._frame = rate // 100  # 10 ms
        self._pending = b""
        self._frames = 0  # 10 ms frames consumed
        self._tone_start: int | None = None
        self._tone_frames = 0
        self._crossings = 0

    @property
    def position_ms(self) -> int:
        return self._frames * 10

    @property
    def in_word(self) -> bool:
        return self._tone_start is not None

    def feed(self, pcm: bytes) -> list[ToneWord]:
        data = self._pending + pcm
        size = self._frame * 2
        whole = len(data) - len(data) % size
        self._pending = data[whole:]
        words: list[ToneWord] = []
        for pos in range(0, whole, size):
            frame = data[pos : pos + size]
            if rms(frame) < _SILENCE_RMS:
                words.extend(self._end_tone())
            else:
                if self._tone_start is None:
                    self._tone_start = self._frames
                self._tone_frames += 1
                self._crossings += cross(frame)
            self._frames += 1
        return words

    def silence(self, ms: int) -> list[ToneWord]:
        """Advance time without audio (a silence_chunk)."""
        words = self._end_tone()
        self._pending = b""
        self._frames += ms // 10
        return words

    def flush(self) -> list[ToneWord]:
        return self._end_tone()

    def _end_tone(self) -> list[ToneWord]:
        if self._tone_start is None:
            return []
        start, frames, crossings = self._tone_start, self._tone_frames, self._crossings
        self._tone_start, self._tone_frames, self._crossings = None, 0, 0
        if frames < 5:  # shorter than any word: a click, or a tone cut by a session boundary
            return []
        seconds = frames * self._frame / self.rate
        freq = crossings / (2 * seconds)
        f_index = min(range(len(FREQUENCIES_HZ)), key=lambda i: abs(FREQUENCIES_HZ[i] - freq))
        dur_ms = frames * 10
        d_index = min(range(len(DURATIONS_MS)), key=lambda i: abs(DURATIONS_MS[i] - dur_ms))
        word = VOCABULARY[d_index * len(FREQUENCIES_HZ) + f_index]
        return [ToneWord(word, start * 10, (start + frames) * 10)]
