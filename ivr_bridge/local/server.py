"""The embedded recognizer: a grpc.aio server for ``speechkit.stt.v3.Recognizer``.

It speaks SpeechKit's own API (same package, messages and field numbers) and enforces
SpeechKit's documented session rules, so the bridge's client code is identical for the cloud
and for this server; only the endpoint and credentials differ. Recognition is done by an
offline engine (``engine.py``; PocketSphinx by default) in a worker thread shared by all
sessions (``ENGINE_THREADS``), so decoding never runs on the event loop.

Session rules and the status each violation ends the call with (messages are stable):

=================  ===========================================================================
status             when / details
=================  ===========================================================================
UNAUTHENTICATED    an API key is configured and the ``authorization`` metadata is missing:
                   "missing authorization metadata (Api-Key <key> or Bearer <key>)"; or does
                   not carry that key: "invalid API key". Checked before anything is read.
INVALID_ARGUMENT   the first message is not session_options:
                   "the first message must be session_options";
                   the stream ends before it: "stream ended before session_options";
                   a second session_options: "session_options must be sent exactly once";
                   an empty request: "request has no event (session_options, chunk,
                   silence_chunk or eou)";
                   no audio_format: "recognition_model.audio_format is required
                   (raw_audio LINEAR16_PCM)";
                   container audio: "container_audio is not supported; use raw_audio
                   LINEAR16_PCM";
                   "raw_audio.audio_encoding must be LINEAR16_PCM";
                   "raw_audio.sample_rate_hertz must be 8000, 16000 or 48000 (got N)";
                   "raw_audio.audio_channel_count must be 1 (got N)";
                   "default_classifier.max_pause_between_words_hint_ms must not be negative";
                   "chunk data must be whole 16-bit samples (got N bytes)";
                   "silence_chunk duration_ms must not be negative".
DEADLINE_EXCEEDED  more than ``idle_timeout_s`` between client messages (measured on receipt,
                   by a timer, also before the first message; not after the half-close;
                   time the server spends with requests queued for the engine is not idle):
                   "no message received for more than 5 s; session terminated" (the number
                   is ``idle_timeout_s``).
OUT_OF_RANGE       audio (chunk audio + silence_chunk durations) beyond ``max_audio_ms``:
                   "Exceeded maximum allowed stream duration"; chunk bytes beyond
                   ``max_bytes``: "Exceeded maximum allowed stream size" (duration is
                   checked first). Results for audio accepted before may already be sent.
INTERNAL           the engine failed: "recognition engine failure".
OK                 the client half-closed; the engine was flushed (final and eou_update for
                   an open utterance) and everything was sent.
=================  ===========================================================================

A call cancelled by the client (or by ``stop()``) counts as CANCELLED in ``stats``. Before
an error status the server drains requests the client already sent (at most 250 ms), so a
grpc.aio client sees the real status rather than INTERNAL (see DRAIN_MAX_S).

End of utterance: 700 ms of non-speech after speech (450 ms with ``EouSensitivity.HIGH``;
``max_pause_between_words_hint_ms`` > 0 sets it, within 200-5000 ms); an utterance longer than
20 s gets a final at the first short pause after 15 s (or at 20 s) and goes on.

Responses: every message carries ``session_uuid`` (``user_request_id`` = the
``x-client-request-id`` metadata), ``audio_cursors`` and ``response_wall_time_ms``; events are
``partial`` (at most every 250 ms of audio, only when the text changed), ``final`` (fixed words
with times) followed by ``final_refinement`` (number words as digits) when
TEXT_NORMALIZATION_ENABLED, ``eou_update``, and ``status_code`` WORKING every 2 s of session
time. ``final_index`` counts finals from 0. ``eou`` requests are honoured only with the
external EOU classifier (then silence still yields finals, but ``eou_update`` comes only from
``eou`` and from the half-close); otherwise they are ignored. All times are session ms;
silence_chunk durations count as audio time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import structlog

from ivr_bridge._proto import stt_v3_pb2 as pb
from ivr_bridge._proto import stt_v3_service_pb2_grpc as pb_grpc
from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.local.engine import (
    Engine,
    EngineEou,
    EngineEvent,
    EngineFinal,
    EngineOptions,
    EnginePartial,
    EngineSession,
    EngineWord,
    get_engine,
)
from ivr_bridge.local.faults import FaultInjector, FaultPlan
from ivr_bridge.local.normalize import normalize_words

log = structlog.get_logger(__name__)

T = TypeVar("T")

# The generated grpc module is untyped; this is its one entry point used here.
_add_servicer: Callable[[Any, Any], None] = pb_grpc.add_RecognizerServicer_to_server

SAMPLE_RATES = (8000, 16000, 48000)
STATUS_INTERVAL_S = 2.0
# Before an error status the server keeps reading (and dropping) requests until the client
# pauses for DRAIN_QUIET_S, half-closes, or DRAIN_MAX_S passed (real time). A grpc.aio client
# whose write fails after the status arrived reports INTERNAL instead of the server's status
# (grpc/grpc#36066); draining lets a client's burst (options + first audio) land first.
DRAIN_QUIET_S = 0.05
DRAIN_MAX_S = 0.25
# Engine calls run in this many worker threads, shared by all sessions. PocketSphinx holds the
# GIL while it decodes, so more threads add no throughput; with one, the event loop gets the
# GIL back after every <= 30 ms decoder call instead of queueing behind several workers.
ENGINE_THREADS = 1
QUEUE_SIZE = 64  # requests read ahead of the engine (reading stays prompt; memory is bounded)
ENDPOINT_MS = 700
ENDPOINT_HIGH_MS = 450
MAX_UTTERANCE_MS = 20_000
PARTIAL_INTERVAL_MS = 250

MSG_NO_AUTH = "missing authorization metadata (Api-Key <key> or Bearer <key>)"
MSG_BAD_AUTH = "invalid API key"
MSG_OPTIONS_FIRST = "the first message must be session_options"
MSG_NO_OPTIONS = "stream ended before session_options"
MSG_OPTIONS_TWICE = "session_options must be sent exactly once"
MSG_EMPTY_REQUEST = "request has no event (session_options, chunk, silence_chunk or eou)"
MSG_NO_FORMAT = "recognition_model.audio_format is required (raw_audio LINEAR16_PCM)"
MSG_CONTAINER = "container_audio is not supported; use raw_audio LINEAR16_PCM"
MSG_ENCODING = "raw_audio.audio_encoding must be LINEAR16_PCM"
MSG_RATE = "raw_audio.sample_rate_hertz must be 8000, 16000 or 48000 (got {rate})"
MSG_CHANNELS = "raw_audio.audio_channel_count must be 1 (got {channels})"
MSG_PAUSE_HINT = "default_classifier.max_pause_between_words_hint_ms must not be negative"
MSG_ODD_CHUNK = "chunk data must be whole 16-bit samples (got {size} bytes)"
MSG_NEGATIVE_SILENCE = "silence_chunk duration_ms must not be negative"
MSG_IDLE = "no message received for more than {seconds:g} s; session terminated"
MSG_DURATION = "Exceeded maximum allowed stream duration"
MSG_SIZE = "Exceeded maximum allowed stream size"
MSG_ENGINE = "recognition engine failure"
MSG_INJECTED = "injected fault: session ended"
MSG_OUTAGE = "injected outage: connection lost"
MSG_REFUSED = "injected outage: not accepting sessions"


@dataclass(frozen=True, slots=True)
class LocalLimits:
    max_audio_ms: int = 300_000  # 5 minutes of audio per session (chunks + silence_chunks)
    max_bytes: int = 10 * 1024 * 1024  # 10 MB of audio bytes per session
    idle_timeout_s: float = 5.0  # more than this between client messages ends the session


@dataclass(frozen=True, slots=True)
class LocalRecognizerConfig:
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = None  # require "authorization: Api-Key <key>" (or "Bearer <key>")
    limits: LocalLimits = LocalLimits()
    engine: str = "pocketsphinx"
    # Fault injection (tests, chaos drills): a plan for every session, and whether a client
    # may ask for one with x-fault-* metadata. Never set either in front of real callers.
    faults: FaultPlan | None = None
    allow_fault_metadata: bool = False


@dataclass(slots=True)
class LocalStats:
    """Counters for tests and metrics (updated on the event loop)."""

    sessions_opened: int = 0
    sessions_active: int = 0
    ended: dict[str, int] = field(default_factory=dict)  # status code name -> sessions
    audio_ms: int = 0  # session audio accepted, all sessions
    finals: int = 0

    def count_end(self, code: str) -> None:
        self.ended[code] = self.ended.get(code, 0) + 1


class SessionError(Exception):
    """Ends a session with a gRPC status (code name, e.g. "OUT_OF_RANGE") and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# ---- requests after validation --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Audio:
    data: bytes


@dataclass(frozen=True, slots=True)
class _Silence:
    duration_ms: int


@dataclass(frozen=True, slots=True)
class _Eou:
    received_ms: int  # SpeechKit: an external EOU is at received_data_ms when eou arrived


@dataclass(frozen=True, slots=True)
class _End:
    pass


_Item = EngineOptions | _Audio | _Silence | _Eou | _End


@dataclass(frozen=True, slots=True)
class SessionSettings:
    engine: EngineOptions
    normalize: bool


def parse_options(options: pb.StreamingOptions) -> SessionSettings:
    """Validated session settings; raises SessionError(INVALID_ARGUMENT) on anything unsupported."""
    model = options.recognition_model
    fmt = model.audio_format
    kind = fmt.WhichOneof("AudioFormat")
    if kind is None:
        raise SessionError("INVALID_ARGUMENT", MSG_NO_FORMAT)
    if kind != "raw_audio":
        raise SessionError("INVALID_ARGUMENT", MSG_CONTAINER)
    raw = fmt.raw_audio
    if raw.audio_encoding != pb.RawAudio.LINEAR16_PCM:
        raise SessionError("INVALID_ARGUMENT", MSG_ENCODING)
    if raw.sample_rate_hertz not in SAMPLE_RATES:
        raise SessionError("INVALID_ARGUMENT", MSG_RATE.format(rate=raw.sample_rate_hertz))
    if raw.audio_channel_count not in (0, 1):
        raise SessionError(
            "INVALID_ARGUMENT", MSG_CHANNELS.format(channels=raw.audio_channel_count)
        )
    endpoint = ENDPOINT_MS
    external = options.eou_classifier.WhichOneof("Classifier") == "external_classifier"
    if options.eou_classifier.WhichOneof("Classifier") == "default_classifier":
        default = options.eou_classifier.default_classifier
        if default.max_pause_between_words_hint_ms < 0:
            raise SessionError("INVALID_ARGUMENT", MSG_PAUSE_HINT)
        if default.type == pb.DefaultEouClassifier.HIGH:
            endpoint = ENDPOINT_HIGH_MS
        if default.max_pause_between_words_hint_ms > 0:
            endpoint = min(max(int(default.max_pause_between_words_hint_ms), 200), 5000)
    normalize = (
        model.text_normalization.text_normalization
        == pb.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED
    )
    return SessionSettings(
        engine=EngineOptions(
            sample_rate=int(raw.sample_rate_hertz),
            endpoint_ms=endpoint,
            max_utterance_ms=MAX_UTTERANCE_MS,
            partial_interval_ms=PARTIAL_INTERVAL_MS,
            external_eou=external,
        ),
        normalize=normalize,
    )


def check_authorization(metadata: dict[str, str], api_key: str | None) -> None:
    if not api_key:
        return
    value = metadata.get("authorization", "")
    if not value:
        raise SessionError("UNAUTHENTICATED", MSG_NO_AUTH)
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() not in ("api-key", "bearer") or not hmac.compare_digest(
        token.strip().encode(), api_key.encode()
    ):
        raise SessionError("UNAUTHENTICATED", MSG_BAD_AUTH)


async def drain_requests(context: Any) -> None:
    """Read and drop requests until a pause of DRAIN_QUIET_S, the half-close or DRAIN_MAX_S."""
    loop = asyncio.get_running_loop()
    end = loop.time() + DRAIN_MAX_S
    while (left := end - loop.time()) > 0:
        try:
            request = await asyncio.wait_for(context.read(), min(DRAIN_QUIET_S, left))
        except TimeoutError:
            return
        if request is grpc.aio.EOF:
            return


def _alternative_update(
    text: str, start_ms: int, end_ms: int, words: tuple[EngineWord, ...]
) -> pb.AlternativeUpdate:
    alt = pb.Alternative(
        words=[pb.Word(text=w.text, start_time_ms=w.start_ms, end_time_ms=w.end_ms) for w in words],
        text=text,
        start_time_ms=start_ms,
        end_time_ms=end_ms,
    )
    return pb.AlternativeUpdate(alternatives=[alt], channel_tag="0")


class _Session:
    """One RecognizeStreaming call: a reader, a processor, an idle watchdog, a status ticker."""

    def __init__(
        self,
        owner: LocalRecognizer,
        context: Any,
        request_id: str,
        plan: FaultPlan | None = None,
    ) -> None:
        self._owner = owner
        self._plan = plan
        self._outage = owner.outage_event
        self._context = context
        self._clock = owner.clock
        self._limits = owner.config.limits
        self.uuid = str(uuid.uuid4())
        self._request_id = request_id
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(QUEUE_SIZE)
        self._done: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self._write_lock = asyncio.Lock()
        self._options_seen = asyncio.Event()
        # Idle rule state: the reader is waiting for the network since _waiting_since.
        self._reading = False
        self._waiting_since = self._clock.now()
        self._half_closed = False
        self._last_read = asyncio.get_running_loop().time()
        # Accounting of accepted audio (on receipt).
        self._rate = 0
        self._bytes = 0
        self._silence_ms = 0
        # Cursors.
        self._finals = 0
        self._eou_ms = 0
        self._engine_session: EngineSession | None = None
        self._engine_cursors = (0, 0)  # (processed_ms, final_time_ms), see _process
        self._inflight: concurrent.futures.Future[Any] | None = None
        self.settings: SessionSettings | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> tuple[str, str]:
        tasks = [
            asyncio.create_task(self._guard(self._read()), name="local-read"),
            asyncio.create_task(self._guard(self._process()), name="local-process"),
            asyncio.create_task(self._guard(self._watch_idle()), name="local-idle"),
            asyncio.create_task(self._guard(self._tick()), name="local-status"),
            asyncio.create_task(self._guard(self._watch_outage()), name="local-faults"),
        ]
        try:
            result = await asyncio.shield(self._done)
            if result[0] != "OK":
                await self._drain(tasks[0])
            return result
        finally:
            # Let a write in flight complete before cancelling the writers: grpc refuses to
            # finish a call while one of its write operations is still pending.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._write_lock.acquire(), 1.0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._release_engine()

    async def _drain(self, reader: asyncio.Task[None]) -> None:
        """Before an error status, take what the client already sent (see drain_requests)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + DRAIN_MAX_S
        while not reader.done():
            now = loop.time()
            quiet = now - self._last_read
            if quiet >= DRAIN_QUIET_S or now >= end:
                return
            await asyncio.wait({reader}, timeout=min(DRAIN_QUIET_S - quiet, end - now))

    def _finish(self, code: str, message: str = "") -> None:
        if not self._done.done():
            self._done.set_result((code, message))

    async def _guard(self, work: Any) -> None:
        try:
            await work
        except SessionError as exc:
            self._finish(exc.code, exc.message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("local_session_failed", session=self.uuid)
            self._finish("INTERNAL", MSG_ENGINE)

    async def _release_engine(self) -> None:
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            await asyncio.wait([asyncio.wrap_future(inflight)])
        session, self._engine_session = self._engine_session, None
        if session is None:
            return
        try:
            await self._owner.run_blocking(session.close)
        except RuntimeError:  # the pool is shutting down
            session.close()

    @property
    def finals(self) -> int:
        return self._finals

    # ---- reading -----------------------------------------------------------------------------

    @property
    def received_ms(self) -> int:
        if not self._rate:
            return self._silence_ms
        return self._bytes * 1000 // (2 * self._rate) + self._silence_ms

    async def _read(self) -> None:
        while True:
            self._waiting_since = self._clock.now()
            self._reading = True
            request = await self._context.read()
            self._reading = False
            self._last_read = asyncio.get_running_loop().time()
            if request is grpc.aio.EOF:
                self._half_closed = True
                if self._done.done():
                    return
                if not self._options_seen.is_set():
                    raise SessionError("INVALID_ARGUMENT", MSG_NO_OPTIONS)
                await self._queue.put(_End())
                return
            if self._done.done():
                continue  # the session is ending: drain what the client already sent
            try:
                item = self._accept(request)
            except SessionError as exc:
                self._finish(exc.code, exc.message)
                continue
            if item is not None:
                await self._queue.put(item)
            if self._plan is not None and self._plan.ends_at(self.received_ms):
                raise SessionError(self._plan.end_status, MSG_INJECTED)

    def _accept(self, request: pb.StreamingRequest) -> _Item | None:
        kind = request.WhichOneof("Event")
        if not self._options_seen.is_set():
            if kind != "session_options":
                raise SessionError("INVALID_ARGUMENT", MSG_OPTIONS_FIRST)
            self.settings = parse_options(request.session_options)
            self._rate = self.settings.engine.sample_rate
            self._options_seen.set()
            return self.settings.engine
        if kind == "chunk":
            data = request.chunk.data
            if len(data) % 2:
                raise SessionError("INVALID_ARGUMENT", MSG_ODD_CHUNK.format(size=len(data)))
            self._count(len(data), 0)
            return _Audio(data) if data else None
        if kind == "silence_chunk":
            ms = request.silence_chunk.duration_ms
            if ms < 0:
                raise SessionError("INVALID_ARGUMENT", MSG_NEGATIVE_SILENCE)
            self._count(0, ms)
            return _Silence(ms) if ms else None
        if kind == "eou":
            assert self.settings is not None
            return _Eou(self.received_ms) if self.settings.engine.external_eou else None
        if kind == "session_options":
            raise SessionError("INVALID_ARGUMENT", MSG_OPTIONS_TWICE)
        raise SessionError("INVALID_ARGUMENT", MSG_EMPTY_REQUEST)

    def _count(self, nbytes: int, silence_ms: int) -> None:
        before = self.received_ms
        self._bytes += nbytes
        self._silence_ms += silence_ms
        rate = self._rate
        limit = self._limits.max_audio_ms
        # Exact: bytes/(2*rate) s + silence ms > limit ms, in integers.
        if self._bytes * 1000 + self._silence_ms * 2 * rate > limit * 2 * rate:
            raise SessionError("OUT_OF_RANGE", MSG_DURATION)
        if self._bytes > self._limits.max_bytes:
            raise SessionError("OUT_OF_RANGE", MSG_SIZE)
        self._owner.stats.audio_ms += self.received_ms - before

    # ---- timers ------------------------------------------------------------------------------

    async def _watch_idle(self) -> None:
        timeout = self._limits.idle_timeout_s
        margin = max(timeout * 0.01, 0.001)
        while not self._half_closed:
            if self._reading:
                idle = self._clock.now() - self._waiting_since
                if idle > timeout:
                    raise SessionError("DEADLINE_EXCEEDED", MSG_IDLE.format(seconds=timeout))
                await self._clock.sleep(timeout - idle + margin)
            else:
                # Busy (handing a request to the engine queue): check again soon.
                await self._clock.sleep(min(timeout / 4, 0.5))

    async def _watch_outage(self) -> None:
        """End this session when the server has an injected outage (FaultInjector.outage)."""
        await self._outage.wait()
        raise SessionError("UNAVAILABLE", MSG_OUTAGE)

    async def _tick(self) -> None:
        await self._options_seen.wait()
        while True:
            await self._clock.sleep(STATUS_INTERVAL_S)
            await self._send(status_code=pb.StatusCode(code_type=pb.WORKING))

    # ---- processing --------------------------------------------------------------------------

    async def _process(self) -> None:
        options = await self._queue.get()
        assert isinstance(options, EngineOptions)
        settings = self.settings
        assert settings is not None
        engine = self._owner.engine
        self._engine_session = session = await self._engine_call(engine.open_session, options)
        while True:
            item = await self._queue.get()
            if isinstance(item, _Audio):
                events = await self._engine_call(session.feed, item.data)
            elif isinstance(item, _Silence):
                events = await self._engine_call(session.add_silence, item.duration_ms)
            elif isinstance(item, _Eou):
                events = await self._engine_call(session.force_endpoint)
                events = [
                    EngineEou(item.received_ms) if isinstance(e, EngineEou) else e for e in events
                ]
            elif isinstance(item, _End):
                events = await self._engine_call(session.finish)
                await self._emit(events, settings.normalize)
                self._finish("OK")
                return
            else:
                raise SessionError("INVALID_ARGUMENT", MSG_OPTIONS_TWICE)
            # Read the engine's cursors here, between engine calls (never while its thread
            # runs), and publish them only after the events they cover have been sent: a
            # client must never see final_time_ms pass a final it has not received.
            cursors = (session.processed_ms, session.final_time_ms)
            await self._emit(events, settings.normalize)
            self._engine_cursors = cursors

    async def _engine_call(self, fn: Callable[..., T], *args: Any) -> T:
        future = self._owner.submit(fn, *args)
        self._inflight = future
        return await asyncio.wrap_future(future)

    async def _emit(self, events: list[EngineEvent], normalize: bool) -> None:
        for event in events:
            if isinstance(event, EnginePartial):
                update = _alternative_update(event.text, event.start_ms, event.end_ms, event.words)
                await self._send(partial=update)
            elif isinstance(event, EngineFinal):
                # The message that carries a final is the first that may count it as final.
                processed, final_ms = self._engine_cursors
                self._engine_cursors = (processed, max(final_ms, event.end_ms))
                self._finals += 1
                self._owner.stats.finals += 1
                index = self._finals - 1
                update = _alternative_update(event.text, event.start_ms, event.end_ms, event.words)
                await self._send(final=update)
                if normalize:
                    words = normalize_words(event.words)
                    text = " ".join(w.text for w in words) if words else event.text
                    refined = _alternative_update(text, event.start_ms, event.end_ms, words)
                    await self._send(
                        final_refinement=pb.FinalRefinement(
                            final_index=index, normalized_text=refined
                        )
                    )
            elif isinstance(event, EngineEou):
                self._eou_ms = event.time_ms
                await self._send(eou_update=pb.EouUpdate(time_ms=event.time_ms))

    def _cursors(self) -> pb.AudioCursors:
        processed, final = self._engine_cursors
        return pb.AudioCursors(
            received_data_ms=self.received_ms,
            partial_time_ms=processed,
            final_time_ms=final,
            final_index=max(self._finals - 1, 0),
            eou_time_ms=self._eou_ms,
        )

    async def _send(self, **event: Any) -> None:
        plan = self._plan
        if plan is not None:
            if plan.stalls_at(self.received_ms):
                return  # an injected stall: keep reading, answer nothing
            if plan.delay_ms:
                await self._clock.sleep(plan.delay_ms / 1000)
        async with self._write_lock:
            response = pb.StreamingResponse(
                session_uuid=pb.SessionUuid(uuid=self.uuid, user_request_id=self._request_id),
                audio_cursors=self._cursors(),
                response_wall_time_ms=int(self._clock.wall() * 1000),
                channel_tag="0",
                **event,
            )
            await self._context.write(response)


class _Servicer(pb_grpc.RecognizerServicer):
    def __init__(self, owner: LocalRecognizer) -> None:
        self._owner = owner

    async def RecognizeStreaming(self, request_iterator: Any, context: Any) -> None:
        await self._owner.handle(context)


class LocalRecognizer:
    """The embedded SpeechKit v3 streaming recognizer (one grpc.aio server)."""

    def __init__(self, config: LocalRecognizerConfig, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self.clock = clock
        self.engine: Engine = get_engine(config.engine)
        self.stats = LocalStats()
        self.faults = FaultInjector(clock)
        self.outage_event = asyncio.Event()  # set (and replaced) by each injected outage
        self._server: Any = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._port = 0
        self._sessions: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        if not self._port:
            raise RuntimeError("local recognizer not started")
        host = self.config.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self._port}"

    async def start(self) -> int:
        workers = ENGINE_THREADS
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="local-asr"
        )
        server = grpc.aio.server(
            # RecognizeFile carries up to 60 MB of inline audio (base64-free in gRPC).
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 61 << 20)]
        )
        _add_servicer(_Servicer(self), server)
        # SpeechKit's other APIs (v2 streaming, asynchronous recognition) live in their own
        # modules, which import this one: hence the late import.
        from ivr_bridge.local.services import add_other_services

        add_other_services(self, server)
        host = self.config.host
        bind_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        try:
            port = server.add_insecure_port(f"{bind_host}:{self.config.port}")
        except RuntimeError as exc:
            raise OSError(f"cannot bind {bind_host}:{self.config.port}: {exc}") from exc
        if not port:
            raise OSError(f"cannot bind {bind_host}:{self.config.port}")
        # Load models before serving: loading blocks the process (PocketSphinx holds the GIL).
        await self.run_blocking(self.engine.warm_up)
        await server.start()
        self._server = server
        self._port = int(port)
        log.info(
            "local_recognizer_started",
            address=self.address,
            engine=self.config.engine,
            auth=bool(self.config.api_key),
            workers=workers,
        )
        return self._port

    async def stop(self, grace: float = 1.0) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
        if self._sessions:
            await asyncio.wait(set(self._sessions), timeout=grace + 5.0)
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)
        if server is not None:
            log.info("local_recognizer_stopped", stats=self.stats.ended)

    def outage(self, seconds: float) -> None:
        """Simulate losing the network: end every session now, refuse new ones for a while."""
        log.info("local_injected_outage", seconds=seconds, active=self.stats.sessions_active)
        self.faults.outage(seconds)
        event, self.outage_event = self.outage_event, asyncio.Event()
        event.set()

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        if self._executor is None:
            raise RuntimeError("local recognizer not started")
        return self._executor.submit(fn, *args)

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self.submit(fn, *args))

    async def handle(self, context: Any) -> None:
        metadata = {str(k).lower(): str(v) for k, v in (context.invocation_metadata() or ())}
        request_id = metadata.get("x-client-request-id", "")
        stats = self.stats
        stats.sessions_opened += 1
        stats.sessions_active += 1
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        started = self.clock.now()
        code, message = "CANCELLED", ""
        session: _Session | None = None
        try:
            check_authorization(metadata, self.config.api_key)
            if self.faults.refusing():
                raise SessionError("UNAVAILABLE", MSG_REFUSED)
            plan = self.config.faults
            if self.config.allow_fault_metadata:
                try:
                    plan = FaultPlan.from_metadata(metadata) or plan
                except ValueError as exc:
                    raise SessionError("INVALID_ARGUMENT", f"bad x-fault metadata: {exc}") from exc
            if plan is not None and not plan.applies_to(stats.sessions_opened):
                plan = None
            session = _Session(self, context, request_id, plan)
            code, message = await session.run()
        except SessionError as exc:
            code, message = exc.code, exc.message
            await drain_requests(context)
        finally:
            stats.sessions_active -= 1
            stats.count_end(code)
            if task is not None:
                self._sessions.discard(task)
            log.info(
                "local_session_ended",
                session=session.uuid if session else "",
                request_id=request_id,
                status=code,
                reason=message,
                audio_ms=session.received_ms if session else 0,
                finals=session.finals if session else 0,
                seconds=round(self.clock.now() - started, 3),
            )
        if code != "OK":
            context.set_code(getattr(grpc.StatusCode, code))
            context.set_details(message)


async def serve_forever(config: LocalRecognizerConfig) -> None:
    """Run until SIGINT/SIGTERM (the CLI's ``ivr-bridge local-recognizer``)."""
    recognizer = LocalRecognizer(config)
    await recognizer.start()
    log.info("local_recognizer_listening", address=recognizer.address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(RuntimeError):  # no signal handlers on this loop (Windows)
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        log.info("local_recognizer_stopping", address=recognizer.address)
        await recognizer.stop(grace=2.0)
