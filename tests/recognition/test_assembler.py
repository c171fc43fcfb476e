"""TranscriptAssembler without asyncio: seams, held results, utterances, gaps.

The property test plays a whole channel in simulated time: a scripted talker, a chain of
sessions cut by rotations and failures at arbitrary points, replays from where the assembler
says, audio lost to long outages, results that arrive late, words that two sessions both
recognize (with slightly different times) and words cut in half at a seam. Whatever the
schedule, every word is emitted exactly once, in order, at the time its session heard it, or
lies inside a reported audio_gap.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_bridge.model import (
    Cursors,
    EndOfUtterance,
    FinalRefinement,
    FinalResult,
    Hypothesis,
    PartialResult,
    RecognitionUpdate,
    StatusReport,
    Word,
)
from ivr_bridge.recognition.assembler import (
    AudioGap,
    Final,
    FinalRefined,
    Partial,
    RecognitionDegraded,
    RecognitionFailed,
    RecognitionRestored,
    SpeechStarted,
    TranscriptAssembler,
    TranscriptEvent,
    UtteranceEnded,
)

RATE = 8000
S = RATE // 1000  # samples per ms: every ms value converts exactly
EOU_MS = 400  # silence after the last word before a session sends its final
JITTER_MS = 15  # how far two sessions may disagree on a word's edges
MAX_REPLAY_MS = 1500  # a rotation replays at most this far back (policy.max_replay_ms)


# ---- the talker -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Spoken:
    index: int
    start: int  # call ms
    end: int
    utterance: int

    @property
    def text(self) -> str:
        return f"w{self.index}"


@st.composite
def scripts(draw: st.DrawFn) -> list[Spoken]:
    words: list[Spoken] = []
    t = draw(st.integers(0, 500))
    for u in range(draw(st.integers(1, 8))):
        for j in range(draw(st.integers(1, 8))):
            if j:
                t += draw(st.integers(30, 150))
            length = draw(st.integers(100, 400))
            words.append(Spoken(len(words) + 1, t, t + length, u))
            t += length
        t += draw(st.integers(EOU_MS + 200, 1500))
    return words


def snap(words: list[Spoken], at: int) -> int:
    """A point between words at or before ``at`` (what ledger.quietest_point finds)."""
    for w in words:
        if w.start < at < w.end:
            return w.start
    return at


# ---- a recognition session in simulated time ---------------------------------------------


@dataclass
class SimSession:
    sid: int
    start: int  # call ms its time zero maps to
    opened_at: int  # simulated time it opened (its replay is recognized at once)
    rng: random.Random
    reported: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    end: int | None = None  # where its audio stopped (cut or failure)

    def heard(self, w: Spoken) -> Word:
        """The word as this session reports it: session time, edges off by a little."""
        lo = max(self.start, w.start + self.rng.randint(-JITTER_MS, JITTER_MS))
        hi = max(lo + 1, w.end + self.rng.randint(-JITTER_MS, JITTER_MS))
        self.reported[(self.sid, w.index)] = (lo, hi)
        return Word(w.text, lo - self.start, hi - self.start)

    def results(
        self, words: list[Spoken], until: int, flush: bool, cut_word: bool
    ) -> list[tuple[int, RecognitionUpdate]]:
        """(generated at, result) for audio [start, until); ``flush``: finish() was called."""
        out: list[tuple[int, RecognitionUpdate]] = []
        index = 0
        final_ms = 0
        current: list[Word] = []
        utterance = -1
        mine = [w for w in words if w.start >= self.start and w.end <= until]

        def at(call_ms: int) -> int:
            return max(self.opened_at, call_ms)

        def final(generated: int, final_time: int) -> None:
            nonlocal index, final_ms, current
            index += 1
            final_ms = final_time
            hyp = Hypothesis(
                " ".join(w.text for w in current),
                current[0].start_ms,
                current[-1].end_ms,
                tuple(current),
            )
            cursors = Cursors(final_time_ms=final_ms, final_index=index)
            out.append((at(generated), FinalResult(hyp, cursors)))
            out.append((at(generated), EndOfUtterance(current[-1].end_ms, cursors)))
            current = []

        for w in mine:
            if current and w.utterance != utterance:
                current = []  # only reached when the previous utterance's final was not heard
            utterance = w.utterance
            current.append(self.heard(w))
            hyp = Hypothesis(
                " ".join(x.text for x in current),
                current[0].start_ms,
                current[-1].end_ms,
                tuple(current),
            )
            out.append((at(w.end), PartialResult(hyp, Cursors(final_time_ms=final_ms))))
            following = words[w.index] if w.index < len(words) else None  # indices from 1
            last_of_utterance = following is None or following.utterance != w.utterance
            if last_of_utterance and w.end + EOU_MS <= until:
                final_time = w.end + EOU_MS
                if self.rng.random() < 0.3:
                    # A cautious server: its final cursor stays before the utterance, so a
                    # replay after a failure recognizes words already emitted once more.
                    first = next(x for x in words if x.utterance == w.utterance)
                    final_time = max(self.start, first.start - 100)
                final(w.end + EOU_MS, final_time - self.start)
        if flush:
            if cut_word:
                # A word cut by the end of the audio, recognized from its first part.
                cut = [w for w in words if w.start >= self.start and w.start < until < w.end]
                if cut:
                    w = cut[0]
                    lo = w.start - self.start
                    current.append(Word(w.text, lo, max(lo + 1, until - self.start)))
            if current:
                final(until + 1, until - self.start)  # after finish(), which follows the cut
        return out


@dataclass(frozen=True)
class Cut:
    after_ms: int  # since the session opened
    kind: str  # "rotate" | "fail"
    outage_ms: int = 0
    lost_ms: int = 0  # how far past the last final the buffer had already dropped audio


cuts = st.lists(
    st.builds(
        Cut,
        after_ms=st.integers(50, 6000),
        kind=st.sampled_from(["rotate", "fail"]),
        outage_ms=st.integers(0, 4000),
        lost_ms=st.sampled_from([0, 0, 0, 500, 2000, 5000]),
    ),
    max_size=6,
)


# ---- the driver: what RecognitionChannel does, in simulated time --------------------------


@dataclass
class Run:
    events: list[TranscriptEvent]
    reported: dict[tuple[int, int], tuple[int, int]]
    words: list[Spoken]


def play(words: list[Spoken], plan: list[Cut], rng: random.Random) -> Run:
    asm = TranscriptAssembler(RATE)
    events: list[TranscriptEvent] = []
    reported: dict[tuple[int, int], tuple[int, int]] = {}
    end_of_call = words[-1].end + EOU_MS + 300
    queue: list[tuple[int, int, str, int, RecognitionUpdate | None]] = []
    seq = 0
    answered: set[int] = set()

    def push(t: int, action: str, sid: int, update: RecognitionUpdate | None = None) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(queue, (t, seq, action, sid, update))

    def schedule(session: SimSession, results: list[tuple[int, RecognitionUpdate]]) -> int:
        """Queue deliveries (in order, each a little late); returns the last delivery time."""
        last = session.opened_at
        latency = rng.choice([0, 300, 1500])  # some sessions answer much later than others
        for generated, update in results:
            last = max(last, generated + rng.randint(0, latency))
            push(last, "deliver", session.sid, update)
        return last

    def run_until(t: int, current: SimSession) -> None:
        while queue and queue[0][0] <= t:
            when, _, action, sid, update = heapq.heappop(queue)
            if action == "drained":
                events.extend(asm.session_drained(sid))
                continue
            if sid in failed_at and failed_at[sid] < when:
                continue  # lost with its session
            if sid == current.sid:
                asm.audio_sent(sid, min(when, current.end or when) * S)
            assert update is not None
            if sid not in answered:
                answered.add(sid)
                events.extend(asm.session_answered(sid))
            events.extend(asm.result(sid, update))

    failed_at: dict[int, int] = {}
    start, opened_at, sid = 0, 0, 1
    for cut in plan:
        at = opened_at + cut.after_ms
        if at >= end_of_call:
            break
        session = SimSession(sid, start, opened_at, random.Random(rng.random()), end=at)
        asm.session_opened(sid, start * S)
        rotate = cut.kind == "rotate"
        results = session.results(words, at, flush=rotate, cut_word=rng.random() < 0.5)
        reported.update(session.reported)
        last = schedule(session, results)
        if rotate:
            # What arrived before the cut is in; the rest arrives while it drains.
            run_until(at, session)
            asm.audio_sent(sid, at * S)
            final_offset = asm.final_offset // S
            successor = max(final_offset, snap(words, at - MAX_REPLAY_MS))
            asm.session_retired(sid, successor * S)
            push(last + rng.randint(0, 500), "drained", sid)
            start, opened_at = successor, at
        else:
            failed_at[sid] = at
            run_until(at, session)
            start = asm.final_offset // S
            events.extend(asm.session_drained(sid))
            events.extend(asm.recognition_lost("UNAVAILABLE"))
            opened_at = at + cut.outage_ms
            if cut.lost_ms:
                resume = snap(words, min(start + cut.lost_ms, opened_at))
                if resume > start:
                    events.extend(asm.audio_lost(start * S, resume * S))
                    start = resume
        sid += 1
        # Sessions that were already queued keep delivering until the next one opens.
        run_until(opened_at, session)
    finish_at = max(end_of_call, opened_at)
    last_session = SimSession(sid, start, opened_at, random.Random(rng.random()), end=finish_at)
    asm.session_opened(sid, start * S)
    schedule(last_session, last_session.results(words, finish_at, flush=True, cut_word=False))
    run_until(10**9, last_session)
    reported.update(last_session.reported)
    events.extend(asm.session_finished(sid))
    events.extend(asm.flush_gap())
    assert not asm.utterance_open
    return Run(events, reported, words)


# ---- what must hold ---------------------------------------------------------------------


def check(run: Run) -> None:
    gaps = [(e.from_ms, e.to_ms) for e in run.events if isinstance(e, AudioGap)]
    finals = [e for e in run.events if isinstance(e, Final)]
    emitted = [(f, w) for f in finals for w in f.words]
    heard = [int(w.text[1:]) for _, w in emitted]
    assert heard == sorted(set(heard)), "no word twice, in order"
    # Every word outside a reported gap is there. (A word inside one may have been emitted
    # before the loss: a cautious final cursor can lag behind the finals it covers.)
    missing = [
        w.index
        for w in run.words
        if w.index not in heard and not any(lo <= w.start and w.end <= hi for lo, hi in gaps)
    ]
    assert missing == [], "no word lost outside a reported gap"
    for f, w in emitted:
        assert (w.start_ms, w.end_ms) == run.reported[(f.session, int(w.text[1:]))]
    assert [f.final_index for f in finals] == list(range(1, len(finals) + 1))
    for f in finals:
        assert f.text == " ".join(w.text for w in f.words)
        assert (f.start_ms, f.end_ms) == (f.words[0].start_ms, f.words[-1].end_ms)
    # speech_started and eou alternate; partials and finals only inside an utterance.
    open_ = False
    for e in run.events:
        if isinstance(e, SpeechStarted):
            assert not open_
            open_ = True
        elif isinstance(e, UtteranceEnded):
            assert open_
            open_ = False
        elif isinstance(e, Partial | Final):
            assert open_
    assert not open_
    # One degraded per outage, each answered by one restored (or the call ended first).
    marks = [e for e in run.events if isinstance(e, RecognitionDegraded | RecognitionRestored)]
    for i, e in enumerate(marks):
        assert isinstance(e, RecognitionDegraded if i % 2 == 0 else RecognitionRestored)
    # Gaps are reported in order and never overlap.
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(gaps))


@settings(max_examples=300, deadline=None)
@given(scripts(), cuts, st.randoms(use_true_random=False))
def test_every_word_exactly_once_across_any_seams(
    words: list[Spoken], plan: list[Cut], rng: random.Random
) -> None:
    check(play(words, plan, rng))


# ---- single behaviours ------------------------------------------------------------------


def hyp(*words: tuple[str, int, int]) -> Hypothesis:
    ws = tuple(Word(t, s, e) for t, s, e in words)
    return Hypothesis(" ".join(w.text for w in ws), ws[0].start_ms, ws[-1].end_ms, ws)


def test_results_become_call_time_events() -> None:
    asm = TranscriptAssembler(RATE)
    asm.session_opened(1, 1000 * S)
    asm.audio_sent(1, 3000 * S)
    out = asm.result(1, PartialResult(hyp(("a", 100, 300)), Cursors()))
    assert out == [SpeechStarted(1100), Partial("a", 1100, 1300)]
    cursors = Cursors(final_time_ms=900, final_index=7)
    out = asm.result(1, FinalResult(hyp(("a", 100, 300), ("b", 350, 500)), cursors))
    assert out == [Final("a b", 1100, 1500, (Word("a", 1100, 1300), Word("b", 1350, 1500)), 1, 1)]
    assert asm.final_offset == 1900 * S
    assert asm.result(1, EndOfUtterance(500, cursors)) == [UtteranceEnded(1500)]
    refined = asm.result(1, FinalRefinement(7, Hypothesis("A B", 100, 500), cursors))
    assert refined == [FinalRefined(1, "A B", 1500)]
    assert asm.result(1, FinalRefinement(8, Hypothesis("x", 0, 1), cursors)) == []
    assert asm.result(1, StatusReport("WORKING", "", cursors)) == []
    assert dict(out[0].payload()) == {
        "text": "a b",
        "start_ms": 1100,
        "end_ms": 1500,
        "words": [
            {"text": "a", "start_ms": 1100, "end_ms": 1300},
            {"text": "b", "start_ms": 1350, "end_ms": 1500},
        ],
        "final_index": 1,
        "session": 1,
    }
    assert refined[0].kind == "final_refinement" and refined[0].call_ms == 1500
    assert asm.finals == 1


def test_successor_results_wait_for_the_retired_session() -> None:
    asm = TranscriptAssembler(RATE)
    asm.session_opened(1, 0)
    asm.audio_sent(1, 5000 * S)
    asm.session_retired(1, successor_start=2000 * S)
    asm.session_opened(2, 2000 * S)
    asm.audio_sent(2, 5000 * S)
    late = FinalResult(hyp(("b", 2500, 2800)), Cursors(final_time_ms=3000, final_index=1))
    assert asm.result(2, FinalResult(hyp(("b", 500, 800)), Cursors(final_index=1))) == []
    old = asm.result(1, FinalResult(hyp(("a", 1000, 1500), ("b", 2510, 2790)), late.cursors))
    assert [e.kind for e in old] == ["speech_started", "final", "eou"]
    assert isinstance(old[1], Final) and old[1].text == "a"
    assert asm.seam_words_dropped == 1
    released = asm.session_drained(1)
    assert [e.kind for e in released] == ["speech_started", "final"]
    assert isinstance(released[1], Final) and released[1].words == (Word("b", 2500, 2800),)


def test_partial_without_words_and_empty_results() -> None:
    asm = TranscriptAssembler(RATE)
    asm.session_opened(1, 0)
    assert asm.result(1, PartialResult(Hypothesis(" ", 0, 10), Cursors())) == []
    out = asm.result(1, PartialResult(Hypothesis("hello", 0, 400), Cursors()))
    assert out == [SpeechStarted(0), Partial("hello", 0, 400)]
    final = asm.result(1, FinalResult(Hypothesis("hello", 0, 400), Cursors()))
    assert [e.kind for e in final] == ["final"]
    # Text-only results at or before what is already final are repeats.
    assert asm.result(1, PartialResult(Hypothesis("hello", 0, 400), Cursors())) == []
    assert asm.result(1, FinalResult(Hypothesis("hello", 0, 300), Cursors())) == []
    assert asm.session_finished(1) == [UtteranceEnded(0)]


def test_outage_is_reported_once_with_one_coalesced_gap() -> None:
    asm = TranscriptAssembler(RATE)
    asm.session_opened(1, 0)
    assert asm.recognition_lost("OUT_OF_RANGE") == []
    assert asm.recognition_lost("UNAVAILABLE") == [RecognitionDegraded("UNAVAILABLE", 0)]
    assert asm.recognition_lost("UNAVAILABLE") == []
    assert asm.degraded
    assert asm.audio_lost(0, 1000 * S) == []
    assert asm.audio_lost(800 * S, 2000 * S) == []  # overlaps: one span
    first = asm.audio_lost(3000 * S, 4000 * S)
    assert first == [AudioGap(0, 2000)]
    assert first[0].payload()["duration_ms"] == 2000
    assert asm.final_offset == 4000 * S
    asm.session_opened(2, 4000 * S)
    answered = asm.session_answered(2)
    assert answered == [AudioGap(3000, 4000), RecognitionRestored(0, 4000, 2)]
    assert asm.session_answered(2) == []
    assert asm.flush_gap() == []
    failed = asm.recognition_failed("PERMISSION_DENIED", "denied")
    assert failed == [RecognitionFailed("PERMISSION_DENIED", "denied", 4000)]
    assert dict(failed[0].payload()) == {"status": "PERMISSION_DENIED", "message": "denied"}


def test_two_draining_sessions_release_their_successors_in_session_order() -> None:
    asm = TranscriptAssembler(RATE)
    for sid, start in ((1, 0), (2, 1000), (3, 2000)):
        asm.session_opened(sid, start * S)
        asm.audio_sent(sid, 3000 * S)
    asm.session_retired(1, successor_start=1000 * S)
    asm.session_retired(2, successor_start=2000 * S)
    # Session 3 answers first, then session 2: both wait for session 1.
    assert asm.result(3, FinalResult(hyp(("c", 100, 300)), Cursors(final_index=1))) == []
    assert asm.result(2, FinalResult(hyp(("b", 100, 300)), Cursors(final_index=1))) == []
    assert asm.session_drained(2) == []  # still behind session 1
    released = [e for e in asm.session_drained(1) if isinstance(e, Final)]
    assert [(f.text, f.session) for f in released] == [("b", 2), ("c", 3)]
