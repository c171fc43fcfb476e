"""One call channel's recognition transport: ledger -> SpeechKit sessions -> results.

The PBX reader calls ``push_audio`` (never blocks, never awaits); ``run`` streams the ledger
to a session, keeps it alive through silence, rotates it before SpeechKit's limits, and
reopens it after failures, replaying what was not yet final. Decisions come from policy.py
and the transcript (seams, de-duplication, utterances, gaps) from assembler.py; this module
only runs sessions and carries those decisions out. Every wait goes through the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import structlog

from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.errors import RecognitionError, RecognitionUnavailable
from ivr_bridge.model import EventPayload, StatusReport
from ivr_bridge.recognition.accounting import ChannelAccounting
from ivr_bridge.recognition.assembler import AudioGap, TranscriptAssembler, TranscriptEvent
from ivr_bridge.recognition.base import RecognitionStream, Recognizer, SessionConfig
from ivr_bridge.recognition.ledger import AudioLedger, Piece
from ivr_bridge.recognition.policy import (
    CHECK_INTERVAL_S,
    GiveUp,
    KeepalivePolicy,
    PolicyConfig,
    RecoveryPolicy,
    Rotation,
    replay_start,
    rotation_needed,
    stalled,
)
from ivr_bridge.ticker import ticker

EmitFn = Callable[[EventPayload, int], None]
"""emit(payload, call_ms): hands a typed event to the call for sequencing and sinks."""

_MAX_SILENCE_MESSAGE_MS = 1000
_QUIET_RMS = 300  # 20 ms RMS below this counts as a pause (line noise is far below it)


@dataclass(slots=True)
class ChannelStats:
    """The session runner's own counters (the transcript's are the assembler's)."""

    sessions_opened: int = 0
    rotations: int = 0
    forced_rotations: int = 0
    reconnects: int = 0
    errors: int = 0
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
    responded: bool = False
    last_response_at: float = 0.0
    oldest_unanswered: float | None = None
    receiver: asyncio.Task[None] | None = None
    error: RecognitionError | None = None
    ended: bool = False
    # The stream's write that finishes at once or refuses (the h2 client), if it has one.
    try_send: Callable[[bytes], bool] | None = None


class _Due(Enum):
    """What the sender must see to before it writes more (besides a rotation)."""

    ENDED = "ended"  # the stream failed or the server ended it
    STALLED = "stalled"  # the server stopped answering
    LOST = "lost"  # the ledger dropped audio the session never got


class _Outcome(Enum):
    DONE = "done"
    ROTATE = "rotate"
    FAILED = "failed"


class RecognitionChannel:
    """One call channel's recognition: feed it audio, run it, read its accounting.

    The caller creates it, starts ``run()`` as a task, calls ``push_audio`` for every frame
    (synchronous, never blocks) and ``end_input`` when the call ends, then awaits the task:
    ``run`` returns once the last results are out (each drain bounded by
    ``drain_timeout_s`` of clock time). Events go to ``emit`` as they happen; ``counters()``
    gives the accounting at any time.
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
        self._parked: _Session | None = None  # the session the sender waits with, if it waits
        self._input_ended = False
        self._pumped_at = 0.0  # clock time the sender last ran its checks
        self._cursor = 0  # next ledger offset to send to the current session
        self._transcript = TranscriptAssembler(sample_rate)
        self._sessions: list[_Session] = []
        self._input_ended_at: float | None = None
        self._drains: set[asyncio.Task[None]] = set()
        self._log = structlog.get_logger(__name__)

    # ---- called by the PBX reader: synchronous, never blocks --------------------------

    def push_audio(self, pcm: bytes, wire_ulaw: bytes | None = None) -> None:
        gap_ms = self._keepalive.on_media(self._clock.now())
        if gap_ms:
            self._insert_silence(gap_ms)
        self.ledger.append_audio(pcm, wire_ulaw)
        # Wake the sender once a chunk is ready (or audio follows silence it must flush), not
        # on every 20 ms frame; the ticker wakes it for the periodic checks. A chunk that can
        # go out at once goes from here, without a task switch (_send_parked).
        if gap_ms or (self.ledger.end - self._cursor >= self._chunk and not self._send_parked()):
            self._wake.set()

    def ms_until_chunk(self) -> float:
        """Audio still to come before the next whole chunk is here, in ms. Chunks already
        whole go out by themselves (the sender has them), so this counts from the last."""
        need = self._chunk - (self.ledger.end - self._cursor) % self._chunk
        return need * 1000 / self.ledger.sample_rate

    def insert_gap(self, ms: int) -> None:
        """The PBX reports ``ms`` of its audio lost or skipped: silence takes its place on the
        timeline. It counts as media for the keepalive, so quiet time not yet covered is filled
        once: at least ``ms``, more if the PBX has been quiet longer."""
        uncovered = self._keepalive.on_media(self._clock.now())
        if max(ms, uncovered) > 0:
            self._insert_silence(max(ms, uncovered))
            self._wake.set()

    def end_input(self) -> None:
        self._input_ended = True
        self._input_ended_at = self._clock.now()
        self._wake.set()

    @property
    def keepalive_ms(self) -> int:
        return self.ledger.ms(self.ledger.inserted_silence)

    def counters(self) -> ChannelAccounting:
        """This channel's accounting now (final once ``run`` has returned)."""
        st = self.ledger.stats()
        ms = self.ledger.ms
        return ChannelAccounting(
            audio_ms_received=ms(st.received_samples),
            audio_ms_sent=ms(st.sent_first_samples),
            audio_ms_replayed=ms(st.replayed_samples),
            audio_ms_dropped=ms(st.dropped_samples),
            audio_ms_pending=ms(st.pending_samples),
            samples_received=st.received_samples,
            samples_sent_first=st.sent_first_samples,
            samples_replayed=st.replayed_samples,
            samples_dropped=st.dropped_samples,
            keepalive_ms=ms(st.inserted_silence_samples),
            sessions_opened=self.stats.sessions_opened,
            rotations=self.stats.rotations,
            forced_rotations=self.stats.forced_rotations,
            reconnects=self.stats.reconnects,
            stalls=self.stats.stalls,
            errors=self.stats.errors,
            finals=self._transcript.finals,
            seam_words_dropped=self._transcript.seam_words_dropped,
            last_error=self.stats.last_error,
            recognition_failed=self.stats.failed,
        )

    def accounting(self) -> dict[str, Any]:
        """``counters()`` as the JSON object call_ended reports for this channel."""
        return self.counters().to_json()

    # ---- the channel's life ---------------------------------------------------------

    async def run(self) -> None:
        # Tasks started below inherit the context: every log line of this channel, the
        # recognizer client's included, carries the channel (and the call_id bound by the call).
        with structlog.contextvars.bound_contextvars(channel=self.name):
            untick = ticker(self._clock, CHECK_INTERVAL_S).subscribe(self._tick)
            try:
                await self._main()
                self._publish(self._transcript.flush_gap())
                await self._wait_drains()
            finally:
                untick()
                for task in list(self._drains):
                    task.cancel()
                for session in list(self._sessions):
                    await self._discard(session)

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
                final_offset = self._transcript.final_offset
                start = replay_start(
                    self._policy, final_offset, session.sent_until, self.sample_rate
                )
                if start > final_offset:
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
            start = self._transcript.final_offset
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
            self._publish(self._transcript.audio_lost(start, max(resume, self.ledger.base)))
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
            try_send=getattr(stream, "try_send_audio", None),
        )
        self._cursor = start
        self._sessions.append(session)
        self._transcript.session_opened(session.index, start)
        session.receiver = asyncio.create_task(
            self._receive(session), name=f"receive-{self.name}-{session.index}"
        )
        self._log.debug("session_opened", session=session.index, start_ms=self.ledger.ms(start))
        return session

    def _publish(self, events: list[TranscriptEvent]) -> None:
        for event in events:
            if isinstance(event, AudioGap):
                self._log.warning("audio_gap", from_ms=event.from_ms, to_ms=event.to_ms)
            self._emit(event.payload(), event.call_ms)

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
            self._publish(self._transcript.recognition_failed(err.status, err.message[:200]))
            return False
        self._publish(self._transcript.recognition_lost(err.status))
        self._log.info("recognition_retry", status=err.status, delay_s=round(decision.delay_s, 3))
        self.stats.reconnects += 1
        if decision.refresh_credentials and not await self._recognizer.refresh_credentials():
            self.stats.failed = True
            self._publish(
                self._transcript.recognition_failed(err.status, "credentials cannot be refreshed")
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
            now = self._clock.now()
            self._pumped_at = now
            due = self._due(session, now)
            if due is _Due.ENDED:
                if session.error is None:
                    session.error = RecognitionUnavailable("UNAVAILABLE", "server ended the stream")
                return _Outcome.FAILED
            if due is _Due.STALLED:
                self.stats.stalls += 1
                session.error = RecognitionUnavailable("DEADLINE_EXCEEDED", "stream stalled")
                return _Outcome.FAILED
            if isinstance(due, Rotation):
                self.stats.rotations += 1
                if due is Rotation.FORCED:
                    self.stats.forced_rotations += 1
                self._log.info("session_rotation", session=session.index, kind=due.value)
                return _Outcome.ROTATE
            if due is _Due.LOST:
                self._publish(self._transcript.audio_lost(self._cursor, self.ledger.base))
                self._cursor = self.ledger.base
            piece = self.ledger.read(self._cursor, self._chunk, self._max_silence)
            if piece is not None and self._ready(piece):
                if not await self._send(session, piece):
                    return _Outcome.FAILED
                continue
            if piece is None and self._input_ended:
                return await self._finish(session)
            self._wake.clear()
            self._parked = session  # push_audio may send for it meanwhile (_send_parked)
            try:
                await self._wake.wait()
            finally:
                self._parked = None

    def _due(self, session: _Session, now: float) -> _Due | Rotation | None:
        """What the sender must do before writing more, in the order it must: None when
        only writing is due. The one list of checks for the pump and ``_send_parked``."""
        if session.error is not None or session.ended:
            return _Due.ENDED
        if stalled(self._policy, now, session.last_response_at, session.oldest_unanswered):
            return _Due.STALLED
        rotation = self._rotation(session)
        if rotation is not Rotation.NONE:
            return rotation
        if self._cursor < self.ledger.base:
            return _Due.LOST
        return None

    def _rotation(self, session: _Session) -> Rotation:
        rotation = rotation_needed(
            self._policy,
            self.ledger.ms(session.sent_until - session.start),
            session.audio_bytes,
            self._transcript.utterance_open,
        )
        if rotation is Rotation.AT_BOUNDARY and not self._quiet_since_final(session):
            # The caller may have started the next utterance and its first partial is
            # still on the way: not a boundary yet.
            return Rotation.NONE
        return rotation

    def _send_parked(self) -> bool:
        """Send the ready chunks now, for the sender parked in ``_pump``, when nothing but
        sending is due (the same checks the pump runs first) and the stream takes each write
        without waiting. True: done, no need to wake the pump; False: the pump's turn (what
        was sent stays sent)."""
        session = self._parked
        if session is None or session.try_send is None or self._input_ended:
            return False
        ledger = self.ledger
        # Only whole chunks go from here: anything else that could be ready (silence, audio
        # before silence) was inserted with a wake-up, so the pump sees to it anyway.
        while ledger.end - self._cursor >= self._chunk:
            now = self._clock.now()
            if self._due(session, now) is not None:
                return False
            piece = ledger.read(self._cursor, self._chunk, self._max_silence)
            if piece is None or not self._ready(piece):
                return True
            if piece.pcm is None or not session.try_send(piece.pcm):
                return False
            self._pumped_at = now
            session.audio_bytes += len(piece.pcm)
            self._sent(session, piece)
        return True

    def _quiet_since_final(self, session: _Session) -> bool:
        """Nothing but silence went out after the last final (so no word is in flight)."""
        start = max(self._transcript.final_offset, session.start)
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
        self._sent(session, piece)
        return True

    def _sent(self, session: _Session, piece: Piece) -> None:
        """What follows a piece's write: the ledger, the cursor and the session know."""
        self.ledger.note_sent(piece)
        self.ledger.hold(piece.end)
        # Final audio is never replayed: keep a second before it for a quiet seam search.
        self.ledger.release(self._transcript.final_offset - self.sample_rate)
        self._cursor = piece.end
        session.sent_until = piece.end
        self._transcript.audio_sent(session.index, piece.end)
        if session.oldest_unanswered is None:
            session.oldest_unanswered = self._clock.now()

    async def _finish(self, session: _Session) -> _Outcome:
        """Input is over: half-close and wait for the last results."""
        # A rotation may just have happened: its old session's last finals come before ours.
        await self._wait_drains()
        await session.stream.finish()
        if session.receiver is not None:
            try:
                await self._clock.wait_for(asyncio.shield(session.receiver), self._drain_timeout)
            except TimeoutError:
                self._log.warning("drain_timeout", session=session.index)
                self._publish(self._transcript.session_finished(session.index))
                return _Outcome.DONE
        if session.error is not None:
            return _Outcome.FAILED
        self._publish(self._transcript.session_finished(session.index))
        return _Outcome.DONE

    async def _wait_drains(self) -> None:
        """Let retired sessions deliver their last results, for at most the drain timeout."""
        if self._drains:
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_for(asyncio.wait(set(self._drains)), self._drain_timeout)

    def _retire(self, session: _Session, successor_start: int) -> None:
        """Half-close the old session and let it drain in the background.

        The successor replays from ``successor_start`` and owns every word from there on, so
        the old session's late results count only for words that end before it.
        """
        self._transcript.session_retired(session.index, successor_start)

        async def drain() -> None:
            try:
                await session.stream.finish()
                if session.receiver is not None:
                    with contextlib.suppress(TimeoutError):
                        await self._clock.wait_for(
                            asyncio.shield(session.receiver), self._drain_timeout
                        )
                await self._discard(session)
            finally:
                self._publish(self._transcript.session_drained(session.index))

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
            self._publish(self._transcript.session_drained(session.index))

    def _tick(self) -> None:
        """The shared ticker's call, every ``CHECK_INTERVAL_S``: keepalive silence when the PBX is
        quiet, and a wake-up so the sender runs its stall and rotation checks even when no
        chunk is ready."""
        now = self._clock.now()
        inserted = 0 if self._input_ended else self._keepalive.due(now)
        if inserted:
            self._insert_silence(inserted)
            self._wake.set()
        # While chunks keep the sender busy its checks already ran: no extra wake-up.
        elif now - self._pumped_at >= CHECK_INTERVAL_S:
            self._wake.set()

    def _insert_silence(self, ms: int) -> None:
        self.ledger.append_silence(self.ledger.samples(ms))

    # ---- receiving ------------------------------------------------------------------

    async def _receive(self, session: _Session) -> None:
        try:
            async for update in session.stream.updates():
                session.last_response_at = self._clock.now()
                session.oldest_unanswered = None
                if not session.responded:
                    # The outage (if any) is over: report what it cost, once.
                    session.responded = True
                    self._recovery.on_healthy()
                    self._publish(self._transcript.session_answered(session.index))
                if isinstance(update, StatusReport) and update.code == "WARNING":
                    self._log.info("recognizer_warning", session=session.index)
                self._publish(self._transcript.result(session.index, update))
        except RecognitionError as err:
            session.error = err
        except asyncio.CancelledError:
            raise
        finally:
            session.ended = True
            self._wake.set()
