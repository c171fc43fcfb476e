"""Transcript assembly: session results -> one call's transcript events. Sans-I/O.

A channel's transcript comes from a chain of recognition sessions: rotations before
SpeechKit's limits and reconnects after failures each open a new session that replays audio
the previous one may already have recognized. This module turns their session-relative
results into one call-relative stream of events in which every word appears exactly once:

- seams: a retired session keeps the words centred before its successor's replay start;
  the successor owns everything after it; a word whose midpoint lies before the end of the
  last emitted final is a duplicate and is dropped;
- while a retired session drains, every later session's results are held, so the old
  session's last finals come first (and several drains release in session order);
- the utterance state machine: speech_started, partials and finals, then eou;
- the server's final_index -> the call's final index (for final refinements);
- audio lost to a buffer overflow is reported once per outage (``audio_gap``), with
  recognition_degraded / recognition_restored around it.

No asyncio, no clock reads, no I/O: the caller (``RecognitionChannel``) passes plain inputs
(session ids, ledger offsets in samples, result messages from model.py) and turns the returned
events into emitted events. Every method returns the events to emit now, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ivr_bridge.events import types
from ivr_bridge.model import (
    Cursors,
    EndOfUtterance,
    FinalRefinement,
    FinalResult,
    Hypothesis,
    PartialResult,
    RecognitionUpdate,
    Word,
)

# ---- what the assembler produces ---------------------------------------------------------
# Each carries its call time (``call_ms``) and builds its typed payload (events/types.py), the
# one class per event type that UtteranceEvent serializes.


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    kind: ClassVar[str] = "speech_started"
    start_ms: int

    @property
    def call_ms(self) -> int:
        return self.start_ms

    def payload(self) -> types.SpeechStarted:
        return types.SpeechStarted(self.start_ms)


@dataclass(frozen=True, slots=True)
class Partial:
    kind: ClassVar[str] = "partial"
    text: str
    start_ms: int
    end_ms: int

    @property
    def call_ms(self) -> int:
        return self.end_ms

    def payload(self) -> types.Partial:
        return types.Partial(self.text, self.start_ms, self.end_ms)


@dataclass(frozen=True, slots=True)
class Final:
    """A final in call time; ``words`` carry call times too."""

    kind: ClassVar[str] = "final"
    text: str
    start_ms: int
    end_ms: int
    words: tuple[Word, ...]
    final_index: int  # the call's own count, 1, 2, ... (not the server's)
    session: int

    @property
    def call_ms(self) -> int:
        return self.end_ms

    def payload(self) -> types.FinalText:
        words = tuple(types.TimedWord(w.text, w.start_ms, w.end_ms) for w in self.words)
        return types.FinalText(
            self.text, self.start_ms, self.end_ms, words, self.final_index, self.session
        )


@dataclass(frozen=True, slots=True)
class UtteranceEnded:
    kind: ClassVar[str] = "eou"
    end_ms: int

    @property
    def call_ms(self) -> int:
        return self.end_ms

    def payload(self) -> types.EndOfUtterance:
        return types.EndOfUtterance(self.end_ms)


@dataclass(frozen=True, slots=True)
class FinalRefined:
    kind: ClassVar[str] = "final_refinement"
    final_index: int
    text: str
    at_ms: int

    @property
    def call_ms(self) -> int:
        return self.at_ms

    def payload(self) -> types.FinalRefinement:
        return types.FinalRefinement(self.final_index, self.text)


@dataclass(frozen=True, slots=True)
class AudioGap:
    kind: ClassVar[str] = "audio_gap"
    from_ms: int
    to_ms: int

    @property
    def call_ms(self) -> int:
        return self.from_ms

    def payload(self) -> types.AudioGap:
        return types.AudioGap(
            self.from_ms, self.to_ms, self.to_ms - self.from_ms, reason="buffer_overflow"
        )


@dataclass(frozen=True, slots=True)
class RecognitionDegraded:
    kind: ClassVar[str] = "recognition_degraded"
    status: str
    from_ms: int

    @property
    def call_ms(self) -> int:
        return self.from_ms

    def payload(self) -> types.RecognitionDegraded:
        return types.RecognitionDegraded(self.status, self.from_ms)


@dataclass(frozen=True, slots=True)
class RecognitionRestored:
    kind: ClassVar[str] = "recognition_restored"
    from_ms: int
    resume_ms: int
    session: int

    @property
    def call_ms(self) -> int:
        return self.resume_ms

    def payload(self) -> types.RecognitionRestored:
        return types.RecognitionRestored(self.from_ms, self.resume_ms, self.session)


@dataclass(frozen=True, slots=True)
class RecognitionFailed:
    kind: ClassVar[str] = "recognition_failed"
    status: str
    message: str
    at_ms: int

    @property
    def call_ms(self) -> int:
        return self.at_ms

    def payload(self) -> types.RecognitionFailed:
        return types.RecognitionFailed(self.status, self.message)


TranscriptEvent = (
    SpeechStarted
    | Partial
    | Final
    | UtteranceEnded
    | FinalRefined
    | AudioGap
    | RecognitionDegraded
    | RecognitionRestored
    | RecognitionFailed
)


# ---- the assembler -----------------------------------------------------------------------


@dataclass(slots=True)
class _SessionView:
    session: int
    order: int  # sessions form a chain: each one's results come after its predecessors'
    start: int  # ledger offset (samples) the session's time zero maps to
    sent_until: int
    retired: bool = False
    owned_until: int | None = None  # once retired: its successor owns audio from here on
    drained: bool = False
    final_map: dict[int, int] = field(default_factory=dict)  # server final_index -> ours


class TranscriptAssembler:
    """One channel's transcript across all its recognition sessions.

    Drive it with: ``session_opened`` when a session starts, ``audio_sent`` after each send,
    ``result`` for each result message, ``session_retired`` when a rotation half-closes a
    session, ``session_drained`` once a session will deliver nothing more, and the outage
    inputs (``audio_lost``, ``recognition_lost``, ``session_answered``). Emit every returned
    event, in order, before the next input. Read ``final_offset`` to know where a replacement
    session must start replaying, and ``utterance_open`` to decide whether to rotate now.
    """

    def __init__(self, sample_rate: int) -> None:
        if sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        self._rate = sample_rate
        self._sessions: dict[int, _SessionView] = {}
        self._final_offset = 0  # ledger offset before which everything is final
        self._committed_ms = 0  # end of the last word emitted in a final (dedup at seams)
        self._utterance_open = False
        self._final_counter = 0
        self._draining: set[int] = set()  # retired sessions still delivering results
        self._held: list[tuple[int, RecognitionUpdate]] = []  # later sessions', meanwhile
        self._degraded_since: int | None = None
        self._pending_gap: tuple[int, int] | None = None
        self.finals = 0
        self.seam_words_dropped = 0

    # ---- what the caller reads -----------------------------------------------------

    @property
    def final_offset(self) -> int:
        """Ledger offset before which every word is final (or reported lost)."""
        return self._final_offset

    @property
    def utterance_open(self) -> bool:
        return self._utterance_open

    @property
    def degraded(self) -> bool:
        return self._degraded_since is not None

    # ---- session lifecycle ---------------------------------------------------------

    def session_opened(self, session: int, start: int) -> None:
        """A session starts replaying the timeline at ledger offset ``start``."""
        order = len(self._sessions) and max(v.order for v in self._sessions.values()) + 1
        self._sessions[session] = _SessionView(session, order, start=start, sent_until=start)

    def audio_sent(self, session: int, until: int) -> None:
        """Everything up to ledger offset ``until`` went out on ``session``."""
        self._sessions[session].sent_until = until

    def session_retired(self, session: int, successor_start: int) -> None:
        """A rotation half-closed ``session``; its successor replays from ``successor_start``.

        The old session's late results count only for words centred before that point; the
        results of every later session are held until ``session_drained`` is called for it.
        """
        view = self._sessions[session]
        view.retired = True
        view.owned_until = successor_start
        self._draining.add(session)

    def session_drained(self, session: int) -> list[TranscriptEvent]:
        """``session`` will deliver nothing more (drained, timed out, failed or discarded).

        The held results of later sessions that no longer wait for an earlier one are applied
        now, session by session: emit what this returns.
        """
        view = self._sessions.get(session)
        if view is not None:
            view.drained = True
        self._draining.discard(session)
        # Earlier sessions first; each session's own results in the order they arrived.
        held = sorted(self._held, key=lambda item: self._sessions[item[0]].order)
        self._held = []
        out: list[TranscriptEvent] = []
        for sid, update in held:
            later = self._sessions[sid]
            if self._waits(later):
                self._held.append((sid, update))
            else:
                out += self._apply(later, update)
        referenced = {sid for sid, _ in self._held}
        for sid in [s for s, v in self._sessions.items() if v.drained and s not in referenced]:
            del self._sessions[sid]
        return out

    def session_finished(self, session: int) -> list[TranscriptEvent]:
        """Input ended and ``session`` was half-closed: close the utterance left open."""
        return self._close_utterance(self._ms(self._sessions[session].sent_until))

    # ---- results ---------------------------------------------------------------------

    def result(self, session: int, update: RecognitionUpdate) -> list[TranscriptEvent]:
        """A result message from ``session`` (session-relative times, as model.py has them)."""
        view = self._sessions[session]
        if self._waits(view):
            # An earlier session's last finals come first: keep this one's until it is done.
            self._held.append((session, update))
            return []
        return self._apply(view, update)

    # ---- outages -----------------------------------------------------------------------

    def recognition_lost(self, status: str) -> list[TranscriptEvent]:
        """A session failed with ``status`` and will be retried: report the outage once."""
        if self._degraded_since is not None or status == "OUT_OF_RANGE":
            # Already reported; or a session limit, which is a planned reopen, not an outage.
            return []
        self._degraded_since = self._ms(self._final_offset)
        return [RecognitionDegraded(status, self._degraded_since)]

    def recognition_failed(self, status: str, message: str) -> list[TranscriptEvent]:
        """Recognition gave up for the rest of the call."""
        return [RecognitionFailed(status, message, self._ms(self._final_offset))]

    def session_answered(self, session: int) -> list[TranscriptEvent]:
        """``session`` delivered its first message: the outage (if any) is over."""
        out = self.flush_gap()
        if self._degraded_since is not None:
            resume_ms = self._ms(self._sessions[session].start)
            out.append(RecognitionRestored(self._degraded_since, resume_ms, session))
            self._degraded_since = None
        return out

    def audio_lost(self, start: int, end: int) -> list[TranscriptEvent]:
        """Audio in [start, end) will never be recognized (the buffer overflowed).

        Losses during one outage extend one span, reported once: when a session answers,
        a separate loss begins, or ``flush_gap`` is called at the end of the call.
        """
        out: list[TranscriptEvent] = []
        pending = self._pending_gap
        if pending is not None and start <= pending[1]:
            self._pending_gap = (pending[0], max(pending[1], end))
        else:
            out = self.flush_gap()
            self._pending_gap = (start, end)
        self._final_offset = max(self._final_offset, end)
        self._committed_ms = max(self._committed_ms, self._ms(end))
        return out

    def flush_gap(self) -> list[TranscriptEvent]:
        """Report the pending lost span now, if there is one."""
        if self._pending_gap is None:
            return []
        start, end = self._pending_gap
        self._pending_gap = None
        return [AudioGap(self._ms(start), self._ms(end))]

    # ---- internals -------------------------------------------------------------------

    def _waits(self, view: _SessionView) -> bool:
        """An earlier session is still draining: ``view``'s results must wait for it."""
        return any(self._sessions[sid].order < view.order for sid in self._draining)

    def _ms(self, offset: int) -> int:
        return offset * 1000 // self._rate

    def _call_ms(self, view: _SessionView, session_ms: int) -> int:
        return self._ms(view.start + session_ms * self._rate // 1000)

    def _advance_final(self, view: _SessionView, cursors: Cursors) -> None:
        offset = view.start + cursors.final_time_ms * self._rate // 1000
        limit = view.sent_until
        if view.owned_until is not None:
            # A retired session speaks only for audio before its successor's start: its
            # flush covers the cut, which may fall inside a word its successor still owns.
            limit = min(limit, view.owned_until)
        self._final_offset = max(self._final_offset, min(offset, limit))

    def _apply(self, view: _SessionView, update: RecognitionUpdate) -> list[TranscriptEvent]:
        self._advance_final(view, update.cursors)
        if isinstance(update, PartialResult):
            return [] if view.retired else self._on_partial(view, update.hypothesis)
        if isinstance(update, FinalResult):
            return self._on_final(view, update.hypothesis, update.cursors.final_index)
        if isinstance(update, EndOfUtterance):
            if view.retired:
                return []
            return self._close_utterance(self._call_ms(view, update.time_ms))
        if isinstance(update, FinalRefinement):
            ours = view.final_map.get(update.final_index)
            if ours is None or not update.hypothesis.text:
                return []
            at_ms = self._call_ms(view, update.hypothesis.end_ms)
            return [FinalRefined(ours, update.hypothesis.text, at_ms)]
        return []  # StatusReport: only the cursors matter here

    def _words(self, view: _SessionView, hyp: Hypothesis) -> list[Word]:
        return [
            Word(w.text, self._call_ms(view, w.start_ms), self._call_ms(view, w.end_ms))
            for w in hyp.words
        ]

    def _is_new(self, word: Word) -> bool:
        return (word.start_ms + word.end_ms) // 2 >= self._committed_ms

    def _on_partial(self, view: _SessionView, hyp: Hypothesis) -> list[TranscriptEvent]:
        words = [w for w in self._words(view, hyp) if self._is_new(w)]
        text = " ".join(w.text for w in words) if hyp.words else hyp.text
        end_ms = self._call_ms(view, hyp.end_ms)
        if not text.strip() or (not hyp.words and end_ms <= self._committed_ms):
            return []
        start_ms = words[0].start_ms if words else self._call_ms(view, hyp.start_ms)
        out = self._open_utterance(start_ms)
        out.append(Partial(text, start_ms, end_ms))
        return out

    def _on_final(
        self, view: _SessionView, hyp: Hypothesis, server_index: int
    ) -> list[TranscriptEvent]:
        all_words = self._words(view, hyp)
        limit_ms = None if view.owned_until is None else self._ms(view.owned_until)
        # A retired session keeps the words centred before its successor's start: a word
        # reported as ending a few ms past the seam is still its own (the successor, starting
        # in the pause after it, never heard it), and a word the seam cuts goes to whichever
        # side holds most of it.
        words = [
            w
            for w in all_words
            if self._is_new(w) and (limit_ms is None or (w.start_ms + w.end_ms) // 2 < limit_ms)
        ]
        self.seam_words_dropped += len(all_words) - len(words)
        start_ms = self._call_ms(view, hyp.start_ms)
        end_ms = self._call_ms(view, hyp.end_ms)
        if hyp.words:
            if not words:
                return []
            text = hyp.text if len(words) == len(all_words) else " ".join(w.text for w in words)
            start_ms, end_ms = words[0].start_ms, words[-1].end_ms
        else:
            text = hyp.text
            if (start_ms + end_ms) // 2 < self._committed_ms:
                return []
            if limit_ms is not None and end_ms > limit_ms:
                return []
        if not text.strip():
            return []
        out = self._open_utterance(start_ms)
        self._final_counter += 1
        self.finals += 1
        if len(words) == len(all_words):
            view.final_map[server_index] = self._final_counter
        self._committed_ms = max(self._committed_ms, end_ms)
        out.append(Final(text, start_ms, end_ms, tuple(words), self._final_counter, view.session))
        if view.retired:
            # A drained session's last word: nobody will send its end of utterance.
            out += self._close_utterance(end_ms)
        return out

    def _open_utterance(self, start_ms: int) -> list[TranscriptEvent]:
        if self._utterance_open:
            return []
        self._utterance_open = True
        return [SpeechStarted(start_ms)]

    def _close_utterance(self, at_ms: int) -> list[TranscriptEvent]:
        if not self._utterance_open:
            return []
        self._utterance_open = False
        return [UtteranceEnded(at_ms)]
