"""One call channel's recognition: ledger -> SpeechKit sessions -> transcript events.

The PBX reader calls ``push_audio`` (never blocks, never awaits); ``run`` streams the ledger
to a session, keeps it alive through silence, rotates it before SpeechKit's limits, and
reopens it after failures, replaying what was not yet final. Decisions come from policy.py;
this module only carries them out.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import structlog

from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.errors import RecognitionError, RecognitionUnavailable
from ivr_bridge.model import (
    Cursors,
    EndOfUtterance,
    FinalRefinement,
    FinalResult,
    Hypothesis,
    PartialResult,
    RecognitionUpdate,
    StatusReport,
)
from ivr_bridge.recognition.base import RecognitionStream, Recognizer, SessionConfig
from ivr_bridge.recognition.ledger import AudioLedger, Piece
from ivr_bridge.recognition.policy import (
    GiveUp,
    KeepalivePolicy,
    PolicyConfig,
    RecoveryPolicy,
    Rotation,
    replay_start,
    rotation_needed,
    stalled,
)

EmitFn = Callable[[str, int, dict[str, Any]], None]
"""emit(event_type, call_ms, data): hands an event to the call for sequencing and sinks."""

_MAX_SILENCE_MESSAGE_MS = 1000
_POLL_S = 0.25  # real seconds: the sender re-checks stalls and rotation at least this often
_QUIET_RMS = 300  # 20 ms RMS below this counts as a pause (line noise is far below it)


@dataclass(slots=True)
class ChannelStats:
    sessions_opened: int = 0
    rotations: int = 0
    forced_rotations: int = 0
    reconnects: int = 0
    errors: int = 0
    finals: int = 0
    seam_words_dropped: int = 0
    stalls: int = 0
    last_error: str = ""
    failed: bool = False


@dataclass(eq=False, slots=True)
class _Session:
    index: int
    stream: RecognitionStream
    start: int  # ledger offset the session's time zero maps to
    sent_until: int
    audio_bytes: int = 0
    retired: bool = False
    owned_until: int | None = None  # once retired: its successor owns audio from here on
    responded: bool = False
    last_response_at: float = 0.0
    oldest_unanswered: float | None = None
    receiver: asyncio.Task[None] | None = None
    error: RecognitionError | None = None
    ended: bool = False
    final_texts: dict[int, int] = field(default_factory=dict)  # server final_index -> ours


class _Outcome(Enum):
    DONE = "done"
    ROTATE = "rotate"
    FAILED = "failed"


class RecognitionChannel:
    """Recognition of one call channel (caller or agent) across sessions, outages and rotations.

    The caller creates it, runs :meth:`run` as a task, feeds it with :meth:`push_audio` from
    the reader (never blocks), and calls :meth:`end_input` when the call ends; ``run`` then
    returns after the last session has drained. Read :meth:`accounting` after that.
    """

    def __init__(
        self,
        *,
        name: str,
        sample_rate: int,
        recognizer: Recognizer,
        session_config: SessionConfig,
        policy: PolicyConfig,
        emit: EmitFn,
        chunk_ms: int = 100,
        buffer_s: float = 60.0,
        drain_timeout_s: float = 5.0,
        clock: Clock = SYSTEM_CLOCK,
        request_id_prefix: str = "",
    ) -> None:
        self.name = name
        self.sample_rate = sample_rate
        self._recognizer = recognizer
        self._config = session_config
        self._policy = policy
        self._emit = emit
        self._clock = clock
        self._chunk = max(1, sample_rate * chunk_ms // 1000)
        self._max_silence = sample_rate * _MAX_SILENCE_MESSAGE_MS // 1000
        self._drain_timeout = drain_timeout_s
        self._request_prefix = request_id_prefix or uuid.uuid4().hex[:12]
        self.ledger = AudioLedger(sample_rate, buffer_s)
        self._keepalive = KeepalivePolicy(policy, clock.now())
        self._recovery = RecoveryPolicy(policy)
        self.stats = ChannelStats()
        self._wake = asyncio.Event()
        self._input_ended = False
        self._cursor = 0  # next ledger offset to send to the current session
        self._final_offset = 0  # ledger offset before which everything is final
        self._committed_ms = 0  # end of the last word emitted in a final (dedup at seams)
        self._utterance_open = False
        self._final_counter = 0
        self._sessions: list[_Session] = []
        self._degraded_since: int | None = None
        self._pending_gap: tuple[int, int] | None = None
        self._draining: set[_Session] = set()  # retired sessions still delivering results
        self._held: list[tuple[_Session, RecognitionUpdate]] = []  # their successor's, meanwhile
        self._input_ended_at: float | None = None
        self._drains: set[asyncio.Task[None]] = set()
        self._log = structlog.get_logger(__name__).bind(channel=name)

    # ---- called by the PBX reader: synchronous, never blocks --------------------------

    def push_audio(self, pcm: bytes) -> None:
        gap_ms = self._keepalive.on_media(self._clock.now())
        if gap_ms:
            self._insert_silence(gap_ms)
        self.ledger.append_audio(pcm)
        self._wake.set()

    def end_input(self) -> None:
        self._input_ended = True
        self._input_ended_at = self._clock.now()
        self._wake.set()

    @property
    def keepalive_ms(self) -> int:
        return self.ledger.ms(self.ledger.inserted_silence)

    def accounting(self) -> dict[str, Any]:
        st = self.ledger.stats()
        ms = self.ledger.ms
        return {
            "audio_ms_received": ms(st.received_samples),
            "audio_ms_sent": ms(st.sent_first_samples),
            "audio_ms_replayed": ms(st.replayed_samples),
            "audio_ms_dropped": ms(st.dropped_samples),
            "audio_ms_pending": ms(st.pending_samples),
            "samples_received": st.received_samples,
            "samples_sent_first": st.sent_first_samples,
            "samples_replayed": st.replayed_samples,
            "samples_dropped": st.dropped_samples,
            "keepalive_ms": ms(st.inserted_silence_samples),
            "sessions_opened": self.stats.sessions_opened,
            "rotations": self.stats.rotations,
            "forced_rotations": self.stats.forced_rotations,
            "reconnects": self.stats.reconnects,
            "stalls": self.stats.stalls,
            "errors": self.stats.errors,
            "finals": self.stats.finals,
            "seam_words_dropped": self.stats.seam_words_dropped,
            "last_error": self.stats.last_error,
            "recognition_failed": self.stats.failed,
        }

    # ---- the channel's life ---------------------------------------------------------

    async def run(self) -> None:
        keepalive = asyncio.create_task(self._keepalive_loop(), name=f"keepalive-{self.name}")
        try:
            await self._main()
            self._flush_gap()
            if self._drains:
                await asyncio.wait(set(self._drains), timeout=self._drain_timeout)
        finally:
            keepalive.cancel()
            for task in list(self._drains):
                task.cancel()
            for session in self._sessions:
                await self._discard(session)
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive

    async def _main(self) -> None:
        start = 0
        while True:
            if not await self._wait_for_work(start):
                return
            session = await self._open(start)
            if session is None:
                if self.stats.failed:
                    await self._consume_until_end()
                    return
                continue
            outcome = await self._pump(session)
            if outcome is _Outcome.DONE:
                return
            if outcome is _Outcome.ROTATE:
                start = replay_start(
                    self._policy, self._final_offset, session.sent_until, self.sample_rate
                )
                if start > self._final_offset:
                    # Cut mid-speech: begin the replay between two words, not inside one.
                    start = self.ledger.quietest_point(
                        start, radius=self.sample_rate // 2, window=self.sample_rate // 100
                    )
                self._retire(session, successor_start=start)
                continue
            # FAILED: reopen from the last final sample after a backoff.
            self.ledger.hold(None)  # no one is reading now: the buffer bound applies again
            err = session.error or RecognitionUnavailable("UNAVAILABLE", "session lost")
            await self._discard(session)
            start = self._final_offset
            if not await self._after_failure(err):
                await self._consume_until_end()
                return

    async def _wait_for_work(self, start: int) -> bool:
        """Open sessions lazily: only when there is audio to send (or a final flush)."""
        while self.ledger.end <= max(start, self.ledger.base) and not self._input_ended:
            self._wake.clear()
            await self._wake.wait()
        return not (self._input_ended and self.ledger.end <= max(start, self.ledger.base))

    async def _open(self, start: int) -> _Session | None:
        if start < self.ledger.base:
            # The oldest audio is gone. Resume between two words within the next second,
            # rather than at the first sample held, which may be the tail of a cut word.
            resume = self.ledger.quietest_point(
                self.ledger.base + self.sample_rate // 2,
                radius=self.sample_rate // 2,
                window=self.sample_rate // 100,
            )
            self._report_gap(start, max(resume, self.ledger.base))
            start = max(resume, self.ledger.base)
        request_id = f"{self._request_prefix}-{self.name}-{self.stats.sessions_opened + 1}"
        self.ledger.hold(start)  # what this session will replay must outlive the connect
        try:
            stream = await self._recognizer.open_stream(self._config, request_id=request_id)
        except RecognitionError as err:
            self.ledger.hold(None)
            await self._after_failure(err)
            return None
        self.stats.sessions_opened += 1
        session = _Session(
            index=self.stats.sessions_opened,
            stream=stream,
            start=start,
            sent_until=start,
            last_response_at=self._clock.now(),
        )
        self._cursor = start
        self._sessions.append(session)
        session.receiver = asyncio.create_task(
            self._receive(session), name=f"receive-{self.name}-{session.index}"
        )
        self._log.debug("session_opened", session=session.index, start_ms=self.ledger.ms(start))
        return session

    def _on_healthy(self, session: _Session) -> None:
        """A session answered: the outage (if any) is over. Report what it cost, once."""
        self._recovery.on_healthy()
        self._flush_gap()
        if self._degraded_since is not None:
            resume_ms = self.ledger.ms(session.start)
            self._emit(
                "recognition_restored",
                resume_ms,
                {"from_ms": self._degraded_since, "resume_ms": resume_ms, "session": session.index},
            )
            self._degraded_since = None

    async def _after_failure(self, err: RecognitionError) -> bool:
        """Record a failure and wait out the backoff; False when recognition gives up."""
        self.stats.errors += 1
        self.stats.last_error = err.status
        decision = self._recovery.on_failure(err.status)
        late = (
            self._input_ended_at is not None
            and self._clock.now() - self._input_ended_at > self._drain_timeout
        )
        if late:
            decision = GiveUp("call ended before recognition recovered")
        if isinstance(decision, GiveUp):
            self.stats.failed = True
            self._log.warning("recognition_failed", status=err.status)
            self._emit(
                "recognition_failed",
                self.ledger.ms(self._final_offset),
                {"status": err.status, "message": err.message[:200]},
            )
            return False
        if self._degraded_since is None and err.status != "OUT_OF_RANGE":
            self._degraded_since = self.ledger.ms(self._final_offset)
            self._emit(
                "recognition_degraded",
                self._degraded_since,
                {"status": err.status, "from_ms": self._degraded_since},
            )
        self._log.info("recognition_retry", status=err.status, delay_s=round(decision.delay_s, 3))
        self.stats.reconnects += 1
        if decision.refresh_credentials and not await self._recognizer.refresh_credentials():
            self.stats.failed = True
            self._emit(
                "recognition_failed",
                self.ledger.ms(self._final_offset),
                {"status": err.status, "message": "credentials cannot be refreshed"},
            )
            return False
        if decision.delay_s > 0:
            await self._clock.sleep(decision.delay_s)
        return True

    async def _consume_until_end(self) -> None:
        """Recognition gave up: keep reading (the call stays up), count the audio as dropped."""
        while not self._input_ended:
            self._wake.clear()
            await self._wake.wait()
            self.ledger.abandon_pending()
        self.ledger.abandon_pending()

    # ---- sending --------------------------------------------------------------------

    async def _pump(self, session: _Session) -> _Outcome:
        while True:
            if session.error is not None or session.ended:
                if session.error is None:
                    session.error = RecognitionUnavailable("UNAVAILABLE", "server ended the stream")
                return _Outcome.FAILED
            now = self._clock.now()
            if stalled(self._policy, now, session.last_response_at, session.oldest_unanswered):
                self.stats.stalls += 1
                session.error = RecognitionUnavailable("DEADLINE_EXCEEDED", "stream stalled")
                return _Outcome.FAILED
            rotation = rotation_needed(
                self._policy,
                self.ledger.ms(session.sent_until - session.start),
                session.audio_bytes,
                self._utterance_open,
            )
            if rotation is Rotation.AT_BOUNDARY and not self._quiet_since_final(session):
                # The caller may have started the next utterance and its first partial is
                # still on the way: not a boundary yet.
                rotation = Rotation.NONE
            if rotation is not Rotation.NONE:
                self.stats.rotations += 1
                if rotation is Rotation.FORCED:
                    self.stats.forced_rotations += 1
                self._log.info("session_rotation", session=session.index, kind=rotation.value)
                return _Outcome.ROTATE
            if self._cursor < self.ledger.base:
                self._report_gap(self._cursor, self.ledger.base)
                self._cursor = self.ledger.base
            piece = self.ledger.read(self._cursor, self._chunk, self._max_silence)
            if piece is not None and self._ready(piece):
                if not await self._send(session, piece):
                    return _Outcome.FAILED
                continue
            if piece is None and self._input_ended:
                return await self._finish(session)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=_POLL_S)

    def _quiet_since_final(self, session: _Session) -> bool:
        """Nothing but silence went out after the last final (so no word is in flight)."""
        start = max(self._final_offset, session.start)
        return self.ledger.loudest(start, session.sent_until, self.sample_rate // 50) < _QUIET_RMS

    def _ready(self, piece: Piece) -> bool:
        """Aggregate audio to chunk size; flush early before silence or at the end."""
        return (
            piece.is_silence
            or piece.length >= self._chunk
            or piece.end < self.ledger.end
            or self._input_ended
        )

    async def _send(self, session: _Session, piece: Piece) -> bool:
        try:
            if piece.pcm is None:
                await session.stream.send_silence(self.ledger.ms(piece.length) or 1)
            else:
                await session.stream.send_audio(piece.pcm)
                session.audio_bytes += len(piece.pcm)
        except RecognitionError as err:
            session.error = session.error or err
            return False
        self.ledger.note_sent(piece)
        self.ledger.hold(piece.end)
        self._cursor = piece.end
        session.sent_until = piece.end
        if session.oldest_unanswered is None:
            session.oldest_unanswered = self._clock.now()
        return True

    async def _finish(self, session: _Session) -> _Outcome:
        """Input is over: half-close and wait for the last results."""
        if self._drains:
            # A rotation just happened: its old session's last finals come before ours.
            await asyncio.wait(set(self._drains), timeout=self._drain_timeout)
        await session.stream.finish()
        if session.receiver is not None:
            try:
                await asyncio.wait_for(asyncio.shield(session.receiver), self._drain_timeout)
            except TimeoutError:
                self._log.warning("drain_timeout", session=session.index)
                self._close_utterance(self.ledger.ms(session.sent_until))
                return _Outcome.DONE
        if session.error is not None:
            return _Outcome.FAILED
        self._close_utterance(self.ledger.ms(session.sent_until))
        return _Outcome.DONE

    def _retire(self, session: _Session, successor_start: int) -> None:
        """Half-close the old session and let it drain in the background.

        The successor replays from ``successor_start`` and owns every word from there on, so
        the old session's late results count only for words that end before it.
        """
        session.retired = True
        session.owned_until = successor_start
        self._draining.add(session)

        async def drain() -> None:
            try:
                await session.stream.finish()
                if session.receiver is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            asyncio.shield(session.receiver), self._drain_timeout
                        )
                await self._discard(session)
            finally:
                self._draining.discard(session)
                if not self._draining:
                    self._release_held()

        task = asyncio.create_task(drain(), name=f"drain-{self.name}-{session.index}")
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _discard(self, session: _Session) -> None:
        if session.receiver is not None and not session.receiver.done():
            session.stream.cancel()
            session.receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await session.receiver
        if session in self._sessions:
            self._sessions.remove(session)

    async def _keepalive_loop(self) -> None:
        while not self._input_ended:
            now = self._clock.now()
            inserted = self._keepalive.due(now)
            if inserted:
                self._insert_silence(inserted)
                self._wake.set()
            await self._clock.sleep(max(0.02, self._keepalive.next_check_in(self._clock.now())))

    def _insert_silence(self, ms: int) -> None:
        self.ledger.append_silence(self.ledger.samples(ms))

    def _report_gap(self, start: int, end: int) -> None:
        """Audio in [start, end) will never be recognized. Retries during one outage extend
        one span; it is reported once, when recognition is back (or the call ends)."""
        pending = self._pending_gap
        if pending is not None and start <= pending[1]:
            self._pending_gap = (pending[0], max(pending[1], end))
        else:
            self._flush_gap()
            self._pending_gap = (start, end)
        self._final_offset = max(self._final_offset, end)
        self._committed_ms = max(self._committed_ms, self.ledger.ms(end))

    def _flush_gap(self) -> None:
        if self._pending_gap is None:
            return
        start, end = self._pending_gap
        self._pending_gap = None
        from_ms, to_ms = self.ledger.ms(start), self.ledger.ms(end)
        self._log.warning("audio_gap", from_ms=from_ms, to_ms=to_ms)
        self._emit(
            "audio_gap",
            from_ms,
            {
                "from_ms": from_ms,
                "to_ms": to_ms,
                "duration_ms": to_ms - from_ms,
                "reason": "buffer_overflow",
            },
        )

    # ---- receiving ------------------------------------------------------------------

    async def _receive(self, session: _Session) -> None:
        try:
            async for update in session.stream.updates():
                session.last_response_at = self._clock.now()
                session.oldest_unanswered = None
                if not session.responded:
                    session.responded = True
                    self._on_healthy(session)
                self._on_update(session, update)
        except RecognitionError as err:
            session.error = err
        except asyncio.CancelledError:
            raise
        finally:
            session.ended = True
            self._wake.set()

    def _call_ms(self, session: _Session, session_ms: int) -> int:
        return self.ledger.ms(session.start + self.ledger.samples(session_ms))

    def _advance_final(self, session: _Session, cursors: Cursors) -> None:
        offset = session.start + self.ledger.samples(cursors.final_time_ms)
        self._final_offset = max(self._final_offset, min(offset, session.sent_until))

    def _on_update(self, session: _Session, update: RecognitionUpdate) -> None:
        if not session.retired and self._draining:
            # The old session's last finals come first: keep the new one's until it is done.
            self._held.append((session, update))
            return
        self._apply(session, update)

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for session, update in held:
            self._apply(session, update)

    def _apply(self, session: _Session, update: RecognitionUpdate) -> None:
        self._advance_final(session, update.cursors)
        if isinstance(update, PartialResult):
            if not session.retired:
                self._on_partial(session, update.hypothesis)
        elif isinstance(update, FinalResult):
            self._on_final(session, update.hypothesis, update.cursors.final_index)
        elif isinstance(update, EndOfUtterance):
            if not session.retired:
                self._close_utterance(self._call_ms(session, update.time_ms))
        elif isinstance(update, FinalRefinement):
            ours = session.final_texts.get(update.final_index)
            if ours is not None and update.hypothesis.text:
                self._emit(
                    "final_refinement",
                    self._call_ms(session, update.hypothesis.end_ms),
                    {"final_index": ours, "text": update.hypothesis.text},
                )
        elif isinstance(update, StatusReport) and update.code == "WARNING":
            self._log.info("recognizer_warning", session=session.index)

    def _words(self, session: _Session, hyp: Hypothesis) -> list[dict[str, Any]]:
        return [
            {
                "text": w.text,
                "start_ms": self._call_ms(session, w.start_ms),
                "end_ms": self._call_ms(session, w.end_ms),
            }
            for w in hyp.words
        ]

    def _on_partial(self, session: _Session, hyp: Hypothesis) -> None:
        words = [w for w in self._words(session, hyp) if self._is_new(w)]
        text = " ".join(w["text"] for w in words) if hyp.words else hyp.text
        end_ms = self._call_ms(session, hyp.end_ms)
        if not text.strip() or (not hyp.words and end_ms <= self._committed_ms):
            return
        start_ms = words[0]["start_ms"] if words else self._call_ms(session, hyp.start_ms)
        self._open_utterance(start_ms)
        self._emit("partial", end_ms, {"text": text, "start_ms": start_ms, "end_ms": end_ms})

    def _is_new(self, word: dict[str, Any]) -> bool:
        mid = (int(word["start_ms"]) + int(word["end_ms"])) // 2
        return mid >= self._committed_ms

    def _on_final(self, session: _Session, hyp: Hypothesis, server_index: int) -> None:
        all_words = self._words(session, hyp)
        limit_ms = None if session.owned_until is None else self.ledger.ms(session.owned_until)
        words = [
            w
            for w in all_words
            if self._is_new(w) and (limit_ms is None or int(w["end_ms"]) <= limit_ms)
        ]
        self.stats.seam_words_dropped += len(all_words) - len(words)
        start_ms = self._call_ms(session, hyp.start_ms)
        end_ms = self._call_ms(session, hyp.end_ms)
        if hyp.words:
            if not words:
                return
            text = hyp.text if len(words) == len(all_words) else " ".join(w["text"] for w in words)
            start_ms, end_ms = int(words[0]["start_ms"]), int(words[-1]["end_ms"])
        else:
            text = hyp.text
            if (start_ms + end_ms) // 2 < self._committed_ms:
                return
            if limit_ms is not None and end_ms > limit_ms:
                return
        if not text.strip():
            return
        self._open_utterance(start_ms)
        self._final_counter += 1
        self.stats.finals += 1
        if len(words) == len(all_words):
            session.final_texts[server_index] = self._final_counter
        self._committed_ms = max(self._committed_ms, end_ms)
        self._emit(
            "final",
            end_ms,
            {
                "text": text,
                "start_ms": start_ms,
                "end_ms": end_ms,
                "words": words,
                "final_index": self._final_counter,
                "session": session.index,
            },
        )
        if session.retired:
            # A drained session's last word: nobody will send its end of utterance.
            self._close_utterance(end_ms)

    def _open_utterance(self, start_ms: int) -> None:
        if not self._utterance_open:
            self._utterance_open = True
            self._emit("speech_started", start_ms, {"start_ms": start_ms})

    def _close_utterance(self, at_ms: int) -> None:
        if self._utterance_open:
            self._utterance_open = False
            self._emit("eou", at_ms, {"end_ms": at_ms})
