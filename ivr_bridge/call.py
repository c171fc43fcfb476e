"""Per-call orchestration: one reader, one recognition task per channel, one shutdown path.

The reader takes each PBX message, feeds it to the dialect and hands the results on without
awaiting anything slow: audio goes into the channel's bounded ledger, events onto the bus.
The dialect's own output (replies, back-channel frames, its goodbye) is flushed after every
inbound message, after every outbound request (:meth:`Call.send`) and before every close, and
a close the dialect asks for (``close_to_send``) is honoured, as websockets' connection drives
its protocol object.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import structlog

from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.dialects.base import Dialect, OutboundRequest
from ivr_bridge.errors import DialectError
from ivr_bridge.events import types
from ivr_bridge.events.bus import EventBus
from ivr_bridge.handle import CallGone, CallHandle, DialogOptions
from ivr_bridge.limits import TokenBucket
from ivr_bridge.metrics import Metrics
from ivr_bridge.model import (
    Audio,
    CallEnded,
    CallStarted,
    DialectEvent,
    Dtmf,
    EventPayload,
    Mark,
    MediaGap,
    Paused,
    Resumed,
    UtteranceEvent,
)
from ivr_bridge.recognition.accounting import CallAccounting
from ivr_bridge.recognition.base import Recognizer, SessionConfig
from ivr_bridge.recognition.channel import EmitFn, RecognitionChannel
from ivr_bridge.recognition.ledger import BYTES_PER_SAMPLE
from ivr_bridge.recognition.policy import PolicyConfig

if TYPE_CHECKING:
    from ivr_bridge.recording import CallRecorder, Recordings

logger = structlog.get_logger(__name__)

# After the bridge's goodbye, a protocol whose client ends the session (AudioHook: our
# ``disconnect``, its ``close``, our ``closed``) gets this long, clock time, to answer.
GOODBYE_GRACE_S = 10.0
_UNKNOWN_RATE = math.inf
_WS_HEADER = 8  # a masked client frame of 126-65535 bytes: 2 + 2 length + 4 mask
_BATCH_MIN_MS = 40.0  # less audio than this to wait for: not worth a raised low-water mark
_BATCH_SLACK_MS = 10.0  # the audio the low-water mark leaves out: half a 20 ms frame
_BATCH_MARGIN_MS = 50.0  # how late the chunk's audio may be before every byte wakes us again


class MessageStream(Protocol):
    """The websocket as call.py sees it (server.py adapts the real one)."""

    async def recv(self) -> str | bytes | None:
        """The next message, or None once the peer has closed."""
        ...

    async def send(self, message: str | bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


@runtime_checkable
class PushStream(MessageStream, Protocol):
    """A stream that can deliver each message by calling the call (no task hop per frame).

    ``attach`` starts delivery (messages that arrived before it first), ``detach`` returns to
    ``recv()``; ``wait_closed`` returns once the socket is gone (``end_reason`` set if the
    transport knows why)."""

    def attach(
        self,
        consumer: Callable[[str | bytes], None],
        hint: Callable[[], tuple[int, float] | None] | None = None,
        runs: Any = None,
    ) -> None:
        """``hint`` (read batching): see media_connection.ReadHint; ``runs``: the call as
        media_connection.MediaRuns, for the compiled frame scanner."""
        ...

    def detach(self) -> None: ...

    async def wait_closed(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CallOptions:
    session: SessionConfig
    policy: PolicyConfig = PolicyConfig()
    chunk_ms: int = 100
    buffer_s: float = 60.0
    drain_timeout_s: float = 5.0
    media_inactivity_timeout_s: float = 0.0  # counts media only; 0: off
    start_timeout_s: float = 5.0  # the platform's start message must come this soon; 0: off
    # Non-media messages (marks, DTMF, pings, ``connected``...): a steady rate and a burst.
    message_rate_per_s: float = 20.0  # 0: no limit
    message_burst: int = 100
    # Wake for the PBX's socket once the next chunk's audio is there, not for every frame
    # (media_connection.py); other messages then wait at most until that chunk is due.
    read_batching: bool = False
    recording: Recordings | None = None  # [recording] enabled: a WAV per call (recording.py)
    dialog: DialogOptions | None = None  # an in-process handler gets a CallHandle per call


class Call:
    """One PBX connection from its first message to ``call_ended``.

    The server builds one per websocket and awaits :meth:`run` once; it returns after the
    socket is closed, every channel has drained and ``call_ended`` is on the bus. To end the
    call early (shutdown), call :meth:`request_stop` and keep awaiting ``run``; read
    ``end_reason`` afterwards.
    """

    def __init__(
        self,
        *,
        call_id: str,
        dialect: Dialect,
        stream: MessageStream,
        recognizer: Recognizer,
        options: CallOptions,
        bus: EventBus,
        clock: Clock = SYSTEM_CLOCK,
        metrics: Metrics | None = None,
    ) -> None:
        self.call_id = call_id
        self._metrics = metrics
        self._dialect = dialect
        self._stream = stream
        self._recognizer = recognizer
        self._options = options
        self._bus = bus
        self._clock = clock
        self._log = logger.bind(call_id=call_id, dialect=dialect.name)
        self._seq = 0
        self._started: CallStarted | None = None
        self._started_at = clock.now()
        self._channels: dict[str, RecognitionChannel] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._messages = 0
        self._dtmf = 0
        self._stop_requested = False
        self._stop: tuple[str, tuple[int, str]] = ("shutdown", (1001, "bridge shutting down"))
        self._reader: asyncio.Task[Any] | None = None
        self._recorder: CallRecorder | None = None
        self._send_lock = asyncio.Lock()  # frames leave in the order the dialect queued them
        self._outbox: deque[str | bytes] = deque()  # the dialect's frames, on their way out
        self._flusher: asyncio.Task[int] | None = None  # sends the outbox on the push path
        self._pushed: asyncio.Future[tuple[str, tuple[int, str] | None]] | None = None
        self._push_context = contextvars.Context()
        self._silence_mark: dict[str, int] = {}  # channel -> ledger silence at its last audio
        self.handle: CallHandle | None = None  # the dialog handler's view, from call start
        self._handler_task: asyncio.Task[None] | None = None
        self._last_media = self._started_at  # media inactivity counts from here
        # Read batching: PCM bytes per ms of audio (from the start message) and the fewest wire
        # bytes per ms of audio seen in a media message.
        self._pcm_per_ms = 0.0
        self._wire_per_ms = _UNKNOWN_RATE
        self._bucket = (
            TokenBucket(options.message_rate_per_s, options.message_burst, self._started_at)
            if options.message_rate_per_s > 0
            else None
        )
        self.end_reason = ""

    # ---- public ---------------------------------------------------------------------

    def request_stop(self) -> None:
        """Server shutdown: stop reading, finish recognition, close politely."""
        self._end_from_bridge("shutdown", (1001, "bridge shutting down"))

    @property
    def capabilities(self) -> frozenset[str]:
        """What :meth:`send` can carry on this call ("play", "mark", "clear", "event", ...)."""
        return self._dialect.capabilities

    async def send(self, request: OutboundRequest) -> None:
        """Send a request to the PBX now (play audio, mark, clear, an event, disconnect).

        Raises UnsupportedRequest when this call's platform cannot carry it. When the dialect
        then wants the socket closed (a Disconnect), the call ends: reading stops, recognition
        drains and call_ended follows, as for any other end.
        """
        self._dialect.send(request)
        await self._flush()
        close = self._dialect.close_to_send()
        if close is not None:
            self._end_from_bridge("disconnect", close)

    def _end_from_bridge(self, reason: str, close: tuple[int, str]) -> None:
        if self._stop_requested:
            return
        self._stop_requested = True
        self._stop = (reason, close)
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()

    async def run(self) -> None:
        """Read the PBX until the call ends, then finish recognition and emit call_ended.

        Await it once per connection; it returns after the socket is closed and every event of
        the call is on the bus. Everything the call does (its channel tasks included, which
        inherit the context) logs with ``call_id`` and ``dialect`` bound.
        """
        with structlog.contextvars.bound_contextvars(
            call_id=self.call_id, dialect=self._dialect.name
        ):
            await self._run()

    async def _run(self) -> None:
        reason = "hangup"
        close: tuple[int, str] | None = None
        self._reader = asyncio.current_task()
        try:
            try:
                reason, close = await self._read_loop()
            except asyncio.CancelledError:
                if not self._stop_requested:
                    raise
                # Our own shutdown request, not a cancellation from outside: finish politely.
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                reason, close = self._stop
        finally:
            self._reader = None
            self.end_reason = reason
            if close is not None:
                await self._goodbye(close)
            await self._finish(reason)

    # ---- the dialect's output ---------------------------------------------------------

    def _collect_output(self) -> bool:
        """Move the dialect's queued frames to the call's outbox; True if there were any."""
        frames = self._dialect.data_to_send()
        if frames:
            self._outbox.extend(frames)
        return bool(frames)

    async def _flush(self) -> int:
        """Send whatever the dialect has queued, in order; return how many frames."""
        sent = 0
        async with self._send_lock:
            self._collect_output()
            while self._outbox:
                await self._stream.send(self._outbox.popleft())
                sent += 1
        return sent

    async def _await_goodbye_reply(self) -> None:
        """Keep reading after our goodbye until the dialect wants the socket closed (the
        client's close answered), the peer hangs up, or GOODBYE_GRACE_S passes."""
        deadline = self._clock.now() + GOODBYE_GRACE_S
        while self._dialect.close_to_send() is None:
            remaining = deadline - self._clock.now()
            if remaining <= 0:
                self._log.info("goodbye_unanswered", grace_s=GOODBYE_GRACE_S)
                return
            try:
                message = await self._clock.wait_for(self._stream.recv(), remaining)
            except TimeoutError:
                continue
            if message is None:
                return
            try:
                events = self._feed(message)
            except DialectError as exc:
                self._log.warning("protocol_error_after_goodbye", reason=exc.reason)
                await self._flush()
                return
            self._handle_all(events)
            await self._flush()

    async def _goodbye(self, default: tuple[int, str]) -> None:
        """Let the dialect say goodbye in its protocol, send it, then close the socket with the
        dialect's close code (or ``default`` when it has none)."""
        try:
            awaits_reply = False
            if self._dialect.close_to_send() is None:
                self._dialect.close(default[1])
                # A goodbye message with no close of its own expects the client to answer.
                awaits_reply = self._dialect.close_to_send() is None
            sent = await self._flush()
            if awaits_reply and sent:
                await self._await_goodbye_reply()
            await self._stream.close(*(self._dialect.close_to_send() or default))
        except Exception:
            # The socket may already be gone; closing is best effort and must not stop _finish.
            self._log.debug("close_failed", exc_info=True)

    # ---- reading --------------------------------------------------------------------

    def _read_deadline(self) -> tuple[float, str] | None:
        """When reading must have produced something, and the reason if it has not: the
        start message before ``start_timeout_s``, then media within the inactivity timeout."""
        opts = self._options
        if self._started is None:
            if opts.start_timeout_s > 0:
                return self._started_at + opts.start_timeout_s, "start_timeout"
            return None
        if opts.media_inactivity_timeout_s > 0:
            return self._last_media + opts.media_inactivity_timeout_s, "media_timeout"
        return None

    def _feed(self, message: str | bytes) -> list[DialectEvent]:
        """One frame from the PBX into the dialect (counted); raises DialectError."""
        self._messages += 1
        if isinstance(message, str):
            return self._dialect.receive_text(message)
        return self._dialect.receive_bytes(message)

    async def _next_message(self) -> str | bytes | None:
        deadline = self._read_deadline()
        if deadline is None:
            return await self._stream.recv()
        at, reason = deadline
        try:
            # recv() is safe to cancel: a message is either returned or left for the next call.
            return await self._clock.wait_for(self._stream.recv(), at - self._clock.now())
        except TimeoutError:
            raise _StopReading(reason) from None

    async def _read_loop(self) -> tuple[str, tuple[int, str] | None]:
        if isinstance(self._stream, PushStream):
            return await self._push_loop(self._stream)
        while True:
            try:
                message = await self._next_message()
            except _StopReading as stop:
                return self._timed_out(stop.reason)
            if message is None:
                return self._on_eof(), None
            outcome = self._on_message(message)
            await self._flush()
            if outcome is not None:
                return outcome

    def _timed_out(self, reason: str) -> tuple[str, tuple[int, str]]:
        self._log.info("call_timed_out", reason=reason)
        if reason == "start_timeout":
            return reason, (1008, "no start message in time")
        return reason, (1000, "no media")

    def _on_message(self, message: str | bytes) -> tuple[str, tuple[int, str] | None] | None:
        """One PBX message through the dialect and on; the end of reading, if it ends it.

        Synchronous, so the push path runs it inside the transport's receive callback."""
        try:
            events = self._feed(message)
        except DialectError as exc:
            return self._protocol_error(exc)
        return self._dispatch(events, len(message) + _WS_HEADER)

    def _protocol_error(self, exc: DialectError) -> tuple[str, tuple[int, str]]:
        self._log.warning(
            "protocol_error",
            close_code=exc.close_code,
            reason=exc.reason,
            message_no=self._messages,
        )
        return "protocol_error", (exc.close_code, exc.reason)

    def _dispatch(
        self, events: list[DialectEvent], wire: int
    ) -> tuple[str, tuple[int, str] | None] | None:
        """A message's events on to the channels and the sink (``wire``: its frame bytes)."""
        if len(events) == 1 and type(events[0]) is Audio:  # a media frame: most messages
            self._last_media = self._clock.now()
            audio = events[0]
            if (
                self._options.read_batching and audio.pcm
            ):  # wire bytes per ms of audio: the fewest seen
                per_ms = wire * self._pcm_per_ms / len(audio.pcm)
                self._wire_per_ms = min(self._wire_per_ms, per_ms)
            self._on_audio(audio)
            close = self._dialect.close_to_send()
            return None if close is None else ("closed_by_dialect", close)
        if any(type(e) is Audio for e in events):  # exact type: the per-frame check
            self._last_media = self._clock.now()
        elif self._bucket is not None and not self._bucket.take(self._clock.now()):
            # A flood of marks, DTMF or pings: this call ends, the others never notice.
            self._log.warning("message_rate_exceeded", message_no=self._messages)
            return "rate_limited", (1008, "message rate limit exceeded")
        ended = self._handle_all(events)
        if ended is not None:
            return ended.reason, (1000, "call ended")
        close = self._dialect.close_to_send()
        if close is not None:
            return "closed_by_dialect", close
        return None

    # ---- the compiled frame scanner's media runs (media_connection.MediaRuns) ---------

    @property
    def media_layout(self) -> Any:
        """The dialect's compiled media layout (wsfast.py), once the stream has started."""
        return getattr(self._dialect, "compiled_layout", None)

    def take_run(self, wire: int, run: tuple[Any, ...]) -> None:
        """``count`` media messages at once (wsfast.scan's RUN): as ``count`` calls of
        ``_on_pushed``."""
        pushed = self._pushed
        if pushed is None or pushed.done():
            return
        _, _, count, track, seq, stamps, raw = run
        self._messages += 1  # the rest once taken: a refused run counts as one, as one frame
        outcome: tuple[str, tuple[int, str] | None] | None
        try:
            try:
                events = self._dialect.receive_media_run(count, track, seq, stamps, raw)  # type: ignore[attr-defined]
            except DialectError as exc:
                outcome = self._protocol_error(exc)
            else:
                self._messages += count - 1
                outcome = self._dispatch(events, wire)
        except Exception:
            self._log.exception("message_handling_failed", message_no=self._messages)
            outcome = ("internal_error", (1011, "internal error"))
        self._after_push(pushed, outcome)

    # ---- the push path: messages delivered by the transport, no task hop per frame ---

    async def _push_loop(self, stream: PushStream) -> tuple[str, tuple[int, str] | None]:
        """Reading when the transport pushes each message (server.py's media connection):
        wait for the end of reading, the socket's close, or the start/media deadline."""
        pushed: asyncio.Future[tuple[str, tuple[int, str] | None]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pushed = pushed
        # The transport calls back outside this task: events other than audio are handled in
        # the call's context, so the tasks they start (channels, sink lanes, the handler) and
        # their logs carry the call_id. Audio, 50 frames a second, starts nothing.
        self._push_context = contextvars.copy_context()
        closed: asyncio.Future[Any] = asyncio.ensure_future(stream.wait_closed())
        either: set[asyncio.Future[Any]] = {pushed, closed}
        stream.attach(
            self._on_pushed, self._read_hint if self._options.read_batching else None, self
        )
        try:
            while not (pushed.done() or closed.done()):
                deadline = self._read_deadline()
                waiting = asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if deadline is None:
                    await waiting
                    continue
                try:
                    await self._clock.wait_for(waiting, max(0.0, deadline[0] - self._clock.now()))
                except TimeoutError:
                    # The deadline moves with media: end only if it has really passed.
                    deadline = self._read_deadline()
                    if deadline is not None and self._clock.now() >= deadline[0]:
                        return self._timed_out(deadline[1])
            if not pushed.done():
                return self._on_eof(), None
            return pushed.result()
        finally:
            self._pushed = None
            stream.detach()
            closed.cancel()

    def _read_hint(self) -> tuple[int, float] | None:
        """Read batching: the wire bytes the next chunk still needs (half a 20 ms frame less,
        so a frame's variation never makes it wait for one more), and when they are due."""
        if not 0.0 < self._wire_per_ms < _UNKNOWN_RATE or not self._channels:
            return None
        ms = min(channel.ms_until_chunk() for channel in self._channels.values())
        if ms < _BATCH_MIN_MS:
            return None
        return int((ms - _BATCH_SLACK_MS) * self._wire_per_ms), (ms + _BATCH_MARGIN_MS) / 1000

    def _on_pushed(self, message: str | bytes) -> None:
        """The transport's consumer: runs inside its receive callback, never raises."""
        pushed = self._pushed
        if pushed is None or pushed.done():
            return  # reading has ended; the goodbye path reads what follows
        try:
            outcome = self._on_message(message)
        except Exception:
            # A bug must end this call, not the transport callback (or another call).
            self._log.exception("message_handling_failed", message_no=self._messages)
            outcome = ("internal_error", (1011, "internal error"))
        self._after_push(pushed, outcome)

    def _after_push(
        self,
        pushed: asyncio.Future[tuple[str, tuple[int, str] | None]],
        outcome: tuple[str, tuple[int, str] | None] | None,
    ) -> None:
        if self._collect_output() and (self._flusher is None or self._flusher.done()):
            self._flusher = self._push_context.run(asyncio.create_task, self._flush())
        if outcome is not None and not pushed.done():
            pushed.set_result(outcome)

    def _handle_all(self, events: list[DialectEvent]) -> CallEnded | None:
        """Hand events on in order; stop at CallEnded and return it."""
        for event in events:
            if type(event) is Audio:
                self._on_audio(event)
            elif isinstance(event, CallEnded):
                return event
            elif self._pushed is not None:  # the push path: see _push_loop
                self._push_context.run(self._handle, event)
            else:
                self._handle(event)
        return None

    def _on_eof(self) -> str:
        """The socket dropped: the dialect's last events, then the reason the call ended."""
        try:
            ended = self._handle_all(self._dialect.receive_eof())
        except DialectError as exc:
            self._log.warning("protocol_error_at_eof", reason=exc.reason)
            return "hangup"
        said = ended.reason if ended is not None else "hangup"
        # The transport may know better than "hangup": a frame too big, a ping unanswered...
        transport_reason = getattr(self._stream, "end_reason", None)
        if said == "hangup" and isinstance(transport_reason, str):
            return transport_reason
        return said

    def _on_audio(self, event: Audio) -> None:
        channel = self._channels.get(event.channel)
        if channel is not None:
            channel.push_audio(event.pcm, event.ulaw)
            if self._recorder is not None:
                self._recorder.on_audio(event.channel, event.pcm, channel.ledger.end)
            self._silence_mark[event.channel] = channel.ledger.inserted_silence

    def _handle(self, event: DialectEvent) -> None:
        if isinstance(event, Audio):
            self._on_audio(event)
        elif isinstance(event, MediaGap):
            self._on_gap(event)
        elif isinstance(event, CallStarted):
            self._start(event)
        elif isinstance(event, Dtmf):
            self._dtmf += 1
            self._emit(
                types.DtmfDigit(event.digit, event.duration_ms),
                event.channel,
                self._channel_ms(event.channel),
            )
        elif isinstance(event, Mark):
            self._emit(types.MarkPlayed(event.name), None, self._elapsed_ms())
        elif isinstance(event, Paused):
            self._emit(types.MediaPaused(), event.channel, self._elapsed_ms())
        elif isinstance(event, Resumed):
            self._emit(types.MediaResumed(), event.channel, self._elapsed_ms())

    def _on_gap(self, gap: MediaGap) -> None:
        """Put audio the PBX reports lost on the timeline, less the silence the keepalive
        already inserted for the same quiet spell (so a gap is never counted twice)."""
        names = [gap.channel] if gap.channel is not None else list(self._channels)
        for name in names:
            channel = self._channels.get(name)
            if channel is None:
                continue
            ledger = channel.ledger
            covered_ms = ledger.ms(ledger.inserted_silence - self._silence_mark.get(name, 0))
            channel.insert_gap(max(0, gap.duration_ms - covered_ms))
            self._silence_mark[name] = ledger.inserted_silence

    def _start(self, started: CallStarted) -> None:
        self._started = started
        if self._metrics is not None:
            self._metrics.call_started()
        self._started_at = self._clock.now()
        self._last_media = self._started_at
        self._pcm_per_ms = BYTES_PER_SAMPLE * started.sample_rate / 1000
        self._log.info(
            "call_started",
            channels=[c.name for c in started.channels],
            sample_rate=started.sample_rate,
        )
        opts = self._options
        if opts.dialog is not None:
            self._start_handler(opts.dialog, started)
        self._emit(
            types.CallStartedInfo(
                dialect=started.dialect,
                platform_call_id=started.platform_call_id,
                stream_id=started.stream_id,
                channels=started.channels,
                media_format=started.media_format,
                sample_rate=started.sample_rate,
                metadata=started.metadata,
                custom_parameters=started.custom_parameters,
            ),
            None,
            0,
        )
        for info in started.channels:
            channel = RecognitionChannel(
                name=info.name,
                sample_rate=started.sample_rate,
                recognizer=self._recognizer,
                session_config=replace(opts.session, sample_rate=started.sample_rate),
                policy=opts.policy,
                emit=self._channel_emitter(info.name),
                chunk_ms=opts.chunk_ms,
                buffer_s=opts.buffer_s,
                drain_timeout_s=opts.drain_timeout_s,
                clock=self._clock,
                request_id_prefix=self.call_id,
            )
            self._channels[info.name] = channel
            self._tasks.append(
                asyncio.create_task(self._run_channel(channel), name=f"{self.call_id}-{info.name}")
            )
        if opts.recording is not None:
            names = [info.name for info in started.channels]
            self._recorder = opts.recording.start_call(self.call_id, names, started.sample_rate)

    def _start_handler(self, dialog: DialogOptions, started: CallStarted) -> None:
        self.handle = CallHandle(
            self,
            started,
            clock=self._clock,
            queue_size=dialog.queue_size,
            barge_in=dialog.barge_in,
        )
        self._handler_task = asyncio.create_task(
            self._run_handler(dialog, self.handle), name=f"{self.call_id}-handler"
        )

    async def _run_handler(self, dialog: DialogOptions, handle: CallHandle) -> None:
        try:
            await dialog.handler(handle)
        except asyncio.CancelledError:
            self._log.warning("dialog_handler_cancelled", why="still running after call end")
            raise
        except CallGone:
            self._log.debug("dialog_handler_outlived_call")
        except Exception:
            # The handler is user code: its bug is logged, and the call goes on without it.
            self._log.exception("dialog_handler_failed")

    async def _stop_handler(self) -> None:
        """After call_ended: let the handler read to the end, then cancel it if it lingers."""
        task = self._handler_task
        if task is None:
            return
        if self.handle is not None:
            self.handle.close()
        timeout = self._options.dialog.finish_timeout_s if self._options.dialog else 0.0
        with contextlib.suppress(TimeoutError):
            await self._clock.wait_for(asyncio.wait([task]), timeout)
        if not task.done():
            task.cancel()
            await asyncio.wait([task])

    async def _run_channel(self, channel: RecognitionChannel) -> None:
        try:
            await channel.run()
        except Exception:
            # A bug in one channel must not take the call (or other calls) down.
            self._log.exception("channel_crashed", channel=channel.name)

    # ---- events ---------------------------------------------------------------------

    def _channel_emitter(self, name: str) -> EmitFn:
        def emit(payload: EventPayload, call_ms: int) -> None:
            self._emit(payload, name, call_ms)

        return emit

    def emit(self, payload: EventPayload) -> None:
        """A call-wide event of the bridge's own making (``barge_in``), timed now."""
        self._emit(payload, None, self._elapsed_ms())

    def _emit(self, payload: EventPayload, channel: str | None, call_ms: int) -> None:
        self._seq += 1
        event = UtteranceEvent.of(
            payload,
            call_id=self.call_id,
            channel=channel,
            seq=self._seq,
            call_ms=call_ms,
            wall_time=self._clock.wall(),
        )
        self._bus.publish(event)
        if self.handle is not None:
            self.handle.deliver(event)

    def _elapsed_ms(self) -> int:
        return max(0, round((self._clock.now() - self._started_at) * 1000))

    def _channel_ms(self, name: str) -> int:
        channel = self._channels.get(name)
        return channel.ledger.ms(channel.ledger.end) if channel else self._elapsed_ms()

    # ---- ending ---------------------------------------------------------------------

    async def _finish(self, reason: str) -> None:
        for channel in self._channels.values():
            channel.end_input()
        if self._tasks:
            # Each channel bounds its own drain; this outer limit only catches bugs.
            _, pending = await asyncio.wait(
                self._tasks, timeout=self._options.drain_timeout_s * 3 + 5
            )
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._started is None:
            self._log.info("connection_closed_before_start", reason=reason)
            if self._metrics is not None:
                self._metrics.connection_not_started(reason)
            return
        try:
            duration_ms = self._emit_ended(reason)
        finally:
            await self._stop_handler()
        await self._finish_recording(duration_ms)

    def _emit_ended(self, reason: str) -> int:
        accounting = CallAccounting({name: ch.counters() for name, ch in self._channels.items()})
        # Fast senders (tests, replays) can outrun the wall clock: the timeline is the longer.
        timelines = [ch.ledger.ms(ch.ledger.end) for ch in self._channels.values()]
        duration_ms = max([self._elapsed_ms(), *timelines])
        summary = types.CallEndedSummary(
            reason=reason,
            duration_ms=duration_ms,
            messages=self._messages,
            dtmf=self._dtmf,
            **accounting.to_json(),
            dialog_events_dropped=self.handle.dropped_events if self.handle else 0,
            wire=_wire_counters(self._dialect),
        )
        if self._metrics is not None:
            self._metrics.call_ended(reason, accounting)
            self._metrics.wire_counters(self._dialect.name, summary.wire)
        self._emit(summary, None, duration_ms)
        total = accounting.total
        self._log.info(
            "call_ended",
            reason=reason,
            duration_ms=duration_ms,
            sessions=total.sessions_opened,
            errors=total.errors,
        )
        return duration_ms

    async def _finish_recording(self, duration_ms: int) -> None:
        """Close the call's WAV; its transcript event follows later (recording.py)."""
        if self._recorder is None or self._options.recording is None:
            return
        ends = {name: ch.ledger.end for name, ch in self._channels.items()}

        def emit(kind: str, channel: str | None, call_ms: int, data: dict[str, Any]) -> None:
            self._emit(types.EVENT_TYPES[kind](**data), channel, call_ms)

        await self._options.recording.finish_call(self._recorder, ends, duration_ms, emit)


class _StopReading(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _wire_counters(dialect: Dialect) -> dict[str, int]:
    """The dialect's stream counters, for dialects that keep them (``counters.as_dict()``)."""
    counters = getattr(dialect, "counters", None)
    as_dict = getattr(counters, "as_dict", None)
    if not callable(as_dict):
        return {}
    return {str(k): int(v) for k, v in as_dict().items() if isinstance(v, int)}
