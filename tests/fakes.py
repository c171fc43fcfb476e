"""A small in-process recognizer for channel tests: samples carry word ids.

A "word" is a run of one non-zero sample value v (recognized as "w<v>"); zero samples and
silence_chunk are silence. After ``eou_ms`` of silence following speech, the stream sends
a final (with word times) and an eou, like SpeechKit. Session limits and faults are
scriptable, so continuity tests can assert exact transcripts.
"""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ivr_bridge.errors import RecognitionError, RecognitionUnavailable
from ivr_bridge.model import (
    Cursors,
    EndOfUtterance,
    FinalResult,
    Hypothesis,
    PartialResult,
    RecognitionUpdate,
    StatusReport,
    Word,
)
from ivr_bridge.recognition.base import SessionConfig
from ivr_bridge.recognition.status import map_status


def word_pcm(word_id: int, ms: int, rate: int = 8000) -> bytes:
    return array("h", [word_id] * (rate * ms // 1000)).tobytes()


def silence_pcm(ms: int, rate: int = 8000) -> bytes:
    return bytes(2 * (rate * ms // 1000))


@dataclass
class Fault:
    """End session number ``session`` with ``status`` once it has ``after_ms`` of audio."""

    session: int
    after_ms: int
    status: str = "UNAVAILABLE"
    stall: bool = False  # instead of failing, stop answering (and never end)


# Whether FakeStream takes the channel's synchronous writes: "on", "off" (always refused:
# the sender's task sends everything) or "alternate" (every other one refused).
SYNC_SENDS = "on"


@dataclass
class FakeRecognizer:
    rate: int = 8000
    eou_ms: int = 400
    max_audio_ms: int = 300_000
    open_failures: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    status_every_ms: int = 1000
    opened: int = 0
    streams: list[FakeStream] = field(default_factory=list)
    refreshes: int = 0
    refresh_ok: bool = True

    async def open_stream(self, config: SessionConfig, *, request_id: str) -> FakeStream:
        if self.open_failures:
            status = self.open_failures.pop(0)
            raise map_status(status, "scripted open failure")
        self.opened += 1
        stream = FakeStream(self, self.opened, config.sample_rate)
        self.streams.append(stream)
        return stream

    async def refresh_credentials(self) -> bool:
        self.refreshes += 1
        return self.refresh_ok

    async def close(self) -> None:
        return None


class FakeStream:
    def __init__(self, rec: FakeRecognizer, index: int, rate: int) -> None:
        self.rec = rec
        self.index = index
        self.rate = rate
        self.pos = 0  # samples of session time
        self.queue: asyncio.Queue[RecognitionUpdate | RecognitionError | None] = asyncio.Queue()
        self.messages: list[tuple[str, int]] = []  # ("audio", samples) / ("silence", ms)
        self.words: list[Word] = []  # words of the open utterance
        self.cur_val = 0
        self.cur_start = 0
        self.silence_run = 0
        self.final_index = 0
        self.final_time = 0
        self.closed = False
        self.stalled = False
        self.next_status = rec.status_every_ms
        self.sync_offers = 0
        self.sync_sent = 0

    def _ms(self, samples: int) -> int:
        return samples * 1000 // self.rate

    def _cursors(self) -> Cursors:
        return Cursors(
            received_data_ms=self._ms(self.pos),
            partial_time_ms=self._ms(self.pos),
            final_time_ms=self.final_time,
            final_index=self.final_index,
        )

    def _put(self, item: RecognitionUpdate | RecognitionError | None) -> None:
        if not self.stalled and not self.closed:
            self.queue.put_nowait(item)

    def _end_word(self) -> None:
        if self.cur_val:
            self.words.append(
                Word(f"w{self.cur_val}", self._ms(self.cur_start), self._ms(self.pos))
            )
            text = " ".join(w.text for w in self.words)
            self._put(
                PartialResult(
                    Hypothesis(
                        text, self.words[0].start_ms, self.words[-1].end_ms, tuple(self.words)
                    ),
                    self._cursors(),
                )
            )
        self.cur_val = 0

    def _final(self) -> None:
        self._end_word()
        if not self.words:
            return
        self.final_index += 1
        self.final_time = self._ms(self.pos)
        hyp = Hypothesis(
            " ".join(w.text for w in self.words),
            self.words[0].start_ms,
            self.words[-1].end_ms,
            tuple(self.words),
        )
        self._put(FinalResult(hyp, self._cursors()))
        self._put(EndOfUtterance(self.words[-1].end_ms, self._cursors()))
        self.words = []

    def _advance(self, values: array[int] | None, n: int) -> None:
        if values is None or values.count(values[0]) == n:
            self._run(values[0] if values is not None and n else 0, n)
        else:
            start = 0
            for i in range(1, n + 1):
                if i == n or values[i] != values[start]:
                    self._run(values[start], i - start)
                    start = i
        if self._ms(self.pos) >= self.next_status:
            self.next_status = self._ms(self.pos) + self.rec.status_every_ms
            self._put(StatusReport("WORKING", "", self._cursors()))

    def _run(self, v: int, length: int) -> None:
        if v != self.cur_val:
            self._end_word()
            if v:
                self.cur_val = v
                self.cur_start = self.pos
        if v:
            self.silence_run = 0
            self.pos += length
            return
        threshold = self.rate * self.rec.eou_ms // 1000
        before = self.silence_run
        self.silence_run += length
        if self.words and before < threshold <= self.silence_run:
            self.pos += threshold - before
            self._final()
            self.pos += length - (threshold - before)
        else:
            self.pos += length
        if not self.words:
            self.final_time = self._ms(self.pos)

    def _check_limits(self) -> None:
        for fault in self.rec.faults:
            if fault.session == self.index and self._ms(self.pos) >= fault.after_ms:
                if fault.stall:
                    self.stalled = True
                else:
                    self._put(map_status(fault.status, "scripted fault"))
                    self.closed = True
        if self._ms(self.pos) > self.rec.max_audio_ms:
            self._put(map_status("OUT_OF_RANGE", "Exceeded maximum allowed stream duration"))
            self.closed = True

    async def send_audio(self, pcm: bytes) -> None:
        if self.closed:
            raise RecognitionUnavailable("CANCELLED", "stream closed")
        self._take_audio(pcm)
        await asyncio.sleep(0)

    def try_send_audio(self, pcm: bytes) -> bool:
        """The synchronous write the h2 transport offers (RecognitionChannel._send_parked):
        taken per ``SYNC_SENDS``; refused, with nothing sent, on a closed stream."""
        self.sync_offers += 1
        if SYNC_SENDS == "off" or self.closed:
            return False
        if SYNC_SENDS == "alternate" and self.sync_offers % 2:
            return False
        self.sync_sent += 1
        self._take_audio(pcm)
        return True

    def _take_audio(self, pcm: bytes) -> None:
        values = array("h")
        values.frombytes(pcm)
        self.messages.append(("audio", len(values)))
        self._advance(values, len(values))
        self._check_limits()

    async def send_silence(self, duration_ms: int) -> None:
        if self.closed:
            raise RecognitionUnavailable("CANCELLED", "stream closed")
        self.messages.append(("silence", duration_ms))
        self._advance(None, self.rate * duration_ms // 1000)
        self._check_limits()
        await asyncio.sleep(0)

    async def finish(self) -> None:
        self.messages.append(("finish", 0))
        self._final()
        self._put(None)

    async def updates(self) -> AsyncIterator[RecognitionUpdate]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            if isinstance(item, RecognitionError):
                raise item
            yield item

    def cancel(self) -> None:
        self.closed = True
        self.queue.put_nowait(None)
