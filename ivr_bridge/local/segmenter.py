"""Utterance segmentation for frame-based engines: VAD, pre-roll, endpoint, length cap.

``SegmentedSession`` implements ``EngineSession`` on top of two small parts an engine supplies:
a ``FrameClassifier`` (speech or not, per fixed-size frame) and an ``UtteranceDecoder``
(start / process / hypothesis / end). It resamples the session's audio to the decoder's rate,
keeps a short pre-roll while nobody speaks, opens an utterance when the classifier hears
speech, feeds only utterance audio to the decoder (silence costs no decoding), and closes the
utterance after ``endpoint_ms`` of non-speech or when it grows too long.

Times: the session clock counts decoder-rate samples of audio plus declared silence; every
time reported is session milliseconds. Declared silence is not decoded: inside an utterance
only as much of it as the endpoint needs is fed as zeros, the rest just advances the clock.
"""

from __future__ import annotations

import audioop
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ivr_bridge.local.engine import (
    EngineEou,
    EngineEvent,
    EngineFinal,
    EngineOptions,
    EnginePartial,
    EngineWord,
)


class FrameClassifier(Protocol):
    @property
    def frame_bytes(self) -> int:
        """Size of one frame of PCM16 at the decoder rate."""
        ...

    def is_speech(self, frame: bytes) -> bool: ...


class UtteranceDecoder(Protocol):
    """One loaded model, decoding one utterance at a time. Word times are utterance ms."""

    def start(self) -> None: ...

    def process(self, pcm: bytes) -> None: ...

    def words(self) -> list[EngineWord]:
        """The current best words of the open utterance."""
        ...

    def end(self) -> list[EngineWord]:
        """Close the utterance and return its final words."""
        ...

    def release(self) -> None:
        """Give the model back (this object is not used afterwards)."""
        ...


@dataclass(frozen=True, slots=True)
class SegmenterParams:
    # Frames kept while nobody speaks; an utterance starts with them (word onsets are soft).
    preroll_frames: int = 10
    # Speech starts when ``onset_speech`` of the last ``onset_window`` frames are speech.
    onset_window: int = 5
    onset_speech: int = 3
    # Frames quieter than this RMS are non-speech whatever the classifier says.
    min_speech_rms: int = 60
    # Past this share of max_utterance_ms, a short pause is enough to cut the utterance.
    soft_cap_ratio: float = 0.75
    soft_pause_ms: int = 150
    # Audio handed to the decoder per call; engines that hold the GIL want this small.
    decode_batch_frames: int = 3


class SegmentedSession:
    """An ``EngineSession`` from a frame classifier and a decoder taken per utterance."""

    def __init__(
        self,
        options: EngineOptions,
        *,
        decoder_rate: int,
        classifier: FrameClassifier,
        decoder_factory: Callable[[], UtteranceDecoder],
        params: SegmenterParams | None = None,
    ) -> None:
        self.options = options
        self._p = params or SegmenterParams()
        if not 1 <= self._p.onset_speech <= self._p.onset_window <= self._p.preroll_frames:
            raise ValueError("need 1 <= onset_speech <= onset_window <= preroll_frames")
        self._rate = decoder_rate
        self._classifier = classifier
        self._frame_bytes = classifier.frame_bytes
        self._frame_samples = self._frame_bytes // 2
        self._frame_ms = self._frame_samples * 1000 // decoder_rate
        self._decoder_factory = decoder_factory
        self._decoder: UtteranceDecoder | None = None
        self._ratecv_state: Any = None
        self._pending = b""  # < one frame of decoder-rate audio
        self._pos = 0  # decoder-rate samples consumed (frames only)
        self._ring: deque[tuple[int, bytes, bool]] = deque(maxlen=self._p.preroll_frames)
        self._in_utt = False
        self._utt_start = 0
        self._to_decode: list[bytes] = []
        self._trailing_frames = 0
        self._last_speech_end = 0
        self._last_partial_pos = 0
        self._last_partial_text = ""
        self._pending_eou = False  # finals were sent that no end of utterance followed yet
        self._final_floor = 0
        self._closed = False

    # ---- EngineSession ---------------------------------------------------------------------

    @property
    def processed_ms(self) -> int:
        return self._ms(self._pos)

    @property
    def final_time_ms(self) -> int:
        if self._in_utt:
            floor = self._utt_start
        elif self._ring:
            floor = self._ring[0][0]
        else:
            floor = self._pos
        self._final_floor = max(self._final_floor, floor)
        return self._ms(self._final_floor)

    def feed(self, pcm: bytes) -> list[EngineEvent]:
        if not pcm:
            return []
        data = self._resample(pcm)
        return self._frames(self._pending + data)

    def add_silence(self, duration_ms: int) -> list[EngineEvent]:
        self._ratecv_state = None
        samples = duration_ms * self._rate // 1000
        events: list[EngineEvent] = []
        # Complete the partial frame (real audio) with the first of the silence.
        if self._pending:
            need = self._frame_samples - len(self._pending) // 2
            if samples < need:
                self._pending += bytes(2 * samples)
                return events
            events += self._frames(self._pending + bytes(2 * need))
            samples -= need
        zero = bytes(self._frame_bytes)
        # Inside an utterance, feed zeros until the endpoint (or the cap) closes it.
        while self._in_utt and samples >= self._frame_samples:
            events += self._frame(zero)
            samples -= self._frame_samples
        self._flush_decode()
        whole, rest = divmod(samples, self._frame_samples)
        if whole >= self._p.preroll_frames:
            # Silence longer than the pre-roll: nothing before it can start an utterance.
            self._ring.clear()
            self._pos += whole * self._frame_samples
        else:
            for _ in range(whole):
                events += self._frame(zero)
        self._pending = bytes(2 * rest)
        return events

    def force_endpoint(self) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        if self._in_utt:
            final = self._end_utterance()
            if final is not None:
                events.append(final)
        self._ring.clear()
        self._pending_eou = False
        events.append(EngineEou(self._ms(self._pos + len(self._pending) // 2)))
        return events

    def finish(self) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        if self._pending:
            pad = self._frame_bytes - len(self._pending)
            events += self._frames(self._pending + bytes(pad))
        if self._in_utt:
            events += self._close_utterance(eou=True)
        elif self._pending_eou:
            self._pending_eou = False
            events.append(EngineEou(self._ms(self._last_speech_end)))
        return events

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        decoder, self._decoder = self._decoder, None
        if decoder is None:
            return
        try:
            if self._in_utt:
                self._in_utt = False
                decoder.end()
        finally:
            decoder.release()

    # ---- internals -----------------------------------------------------------------------

    def _ms(self, samples: int) -> int:
        return samples * 1000 // self._rate

    def _resample(self, pcm: bytes) -> bytes:
        rate = self.options.sample_rate
        if rate == self._rate:
            return pcm
        out, self._ratecv_state = audioop.ratecv(pcm, 2, 1, rate, self._rate, self._ratecv_state)
        return bytes(out)

    def _frames(self, data: bytes) -> list[EngineEvent]:
        size = self._frame_bytes
        whole = len(data) - len(data) % size
        self._pending = data[whole:]
        events: list[EngineEvent] = []
        for off in range(0, whole, size):
            events += self._frame(data[off : off + size])
        self._flush_decode()
        return events

    def _is_speech(self, frame: bytes) -> bool:
        if audioop.rms(frame, 2) < self._p.min_speech_rms:
            return False
        return self._classifier.is_speech(frame)

    def _frame(self, frame: bytes) -> list[EngineEvent]:
        speech = self._is_speech(frame)
        start = self._pos
        self._pos += self._frame_samples
        if not self._in_utt:
            self._ring.append((start, frame, speech))
            recent = list(self._ring)[-self._p.onset_window :]
            if sum(1 for _, _, s in recent if s) >= self._p.onset_speech:
                self._open_utterance([f for _, f, _ in self._ring], self._ring[0][0])
                self._ring.clear()
            return []
        self._to_decode.append(frame)
        if len(self._to_decode) >= self._p.decode_batch_frames:
            self._flush_decode()
        if speech:
            self._trailing_frames = 0
            self._last_speech_end = self._pos
        else:
            self._trailing_frames += 1
        trailing_ms = self._trailing_frames * self._frame_ms
        if trailing_ms >= self.options.endpoint_ms:
            return self._close_utterance(eou=not self.options.external_eou)
        length_ms = self._ms(self._pos - self._utt_start)
        cap = self.options.max_utterance_ms
        if length_ms >= cap or (
            length_ms >= cap * self._p.soft_cap_ratio and trailing_ms >= self._p.soft_pause_ms
        ):
            return self._cut_utterance()
        if self._pos - self._last_partial_pos >= self._samples(self.options.partial_interval_ms):
            return self._partial()
        return []

    def _samples(self, ms: int) -> int:
        return ms * self._rate // 1000

    def _open_utterance(self, frames: list[bytes], start: int) -> None:
        if self._decoder is None:
            self._decoder = self._decoder_factory()
        self._decoder.start()
        self._in_utt = True
        self._utt_start = start
        self._to_decode = list(frames)
        self._trailing_frames = 0
        self._last_speech_end = self._pos
        self._last_partial_pos = start
        self._last_partial_text = ""

    def _flush_decode(self) -> None:
        if self._to_decode and self._decoder is not None:
            pcm = b"".join(self._to_decode)
            self._to_decode = []
            self._decoder.process(pcm)

    def _absolute(self, words: list[EngineWord]) -> tuple[EngineWord, ...]:
        base = self._ms(self._utt_start)
        return tuple(EngineWord(w.text, base + w.start_ms, base + w.end_ms) for w in words)

    def _partial(self) -> list[EngineEvent]:
        self._last_partial_pos = self._pos
        if self._decoder is None:
            return []
        self._flush_decode()
        words = self._absolute(self._decoder.words())
        text = " ".join(w.text for w in words)
        if not text or text == self._last_partial_text:
            return []
        self._last_partial_text = text
        return [EnginePartial(text, words[0].start_ms, words[-1].end_ms, words)]

    def _end_utterance(self) -> EngineFinal | None:
        """Close the decoder's utterance; the final, or None when it heard no words."""
        self._flush_decode()
        self._in_utt = False
        self._final_floor = max(self._final_floor, self._pos)
        if self._decoder is None:
            return None
        decoder, self._decoder = self._decoder, None
        try:
            words = self._absolute(decoder.end())
        finally:
            decoder.release()  # back to the pool between utterances
        if not words:
            return None
        text = " ".join(w.text for w in words)
        return EngineFinal(text, words[0].start_ms, words[-1].end_ms, words)

    def _close_utterance(self, *, eou: bool) -> list[EngineEvent]:
        final = self._end_utterance()
        events: list[EngineEvent] = []
        if final is not None:
            events.append(final)
            self._pending_eou = True
        if eou and self._pending_eou:
            self._pending_eou = False
            end = max(self._ms(self._last_speech_end), final.end_ms if final else 0)
            events.append(EngineEou(end))
        return events

    def _cut_utterance(self) -> list[EngineEvent]:
        """A long utterance gets a final now and goes on as a new one (no end of utterance)."""
        final = self._end_utterance()
        events: list[EngineEvent] = []
        if final is not None:
            events.append(final)
            self._pending_eou = True
        trailing, last_speech = self._trailing_frames, self._last_speech_end
        self._open_utterance([], self._pos)
        self._trailing_frames, self._last_speech_end = trailing, last_speech
        return events
