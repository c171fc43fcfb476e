"""The "tones" engine: the synthetic tone vocabulary (tones.py), recognized exactly.

It behaves like a speech engine towards the server (partials while a phrase goes on, a final
and an end of utterance after a pause, finals for over-long phrases), but its transcripts are
exact and cheap to compute, so continuity tests over 30-minute calls can assert every word.
"""

from __future__ import annotations

from ivr_bridge.local.engine import (
    EngineEou,
    EngineEvent,
    EngineFinal,
    EngineOptions,
    EnginePartial,
    EngineWord,
    register_engine,
)
from ivr_bridge.local.tones import ToneDecoder, ToneWord


class ToneSession:
    def __init__(self, options: EngineOptions) -> None:
        self._options = options
        self._decoder = ToneDecoder(options.sample_rate)
        self._words: list[EngineWord] = []
        self._final_time = 0

    @property
    def processed_ms(self) -> int:
        return self._decoder.position_ms

    @property
    def final_time_ms(self) -> int:
        if self._words or self._decoder.in_word:
            return self._final_time
        return self._decoder.position_ms

    def feed(self, pcm: bytes) -> list[EngineEvent]:
        return self._after(self._decoder.feed(pcm))

    def add_silence(self, duration_ms: int) -> list[EngineEvent]:
        return self._after(self._decoder.silence(duration_ms))

    def force_endpoint(self) -> list[EngineEvent]:
        events = self._take(self._decoder.flush())
        events += self._final()
        events.append(EngineEou(self._decoder.position_ms))
        return events

    def finish(self) -> list[EngineEvent]:
        events = self._take(self._decoder.flush())
        if self._words:
            end = self._words[-1].end_ms
            events += self._final()
            events.append(EngineEou(end))
        return events

    def close(self) -> None:
        self._words = []

    def _take(self, words: list[ToneWord]) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        for word in words:
            self._words.append(EngineWord(word.text, word.start_ms, word.end_ms))
            events.append(
                EnginePartial(
                    " ".join(w.text for w in self._words),
                    self._words[0].start_ms,
                    word.end_ms,
                    tuple(self._words),
                )
            )
        return events

    def _after(self, words: list[ToneWord]) -> list[EngineEvent]:
        events = self._take(words)
        if not self._words:
            return events
        now = self._decoder.position_ms
        pause = 0 if self._decoder.in_word else now - self._words[-1].end_ms
        if pause >= self._options.endpoint_ms and not self._options.external_eou:
            end = self._words[-1].end_ms
            events += self._final()
            events.append(EngineEou(end))
        elif now - self._words[0].start_ms >= self._options.max_utterance_ms:
            events += self._final()
        return events

    def _final(self) -> list[EngineEvent]:
        if not self._words:
            return []
        words = tuple(self._words)
        self._words = []
        self._final_time = words[-1].end_ms
        return [
            EngineFinal(" ".join(w.text for w in words), words[0].start_ms, words[-1].end_ms, words)
        ]


class ToneEngine:
    name = "tones"
    parallel = False  # cheap: one in-process thread keeps up with many sessions

    def open_session(self, options: EngineOptions) -> ToneSession:
        return ToneSession(options)

    def warm_up(self) -> None:
        return None


register_engine("tones", ToneEngine)
