"""SpeechKit's streaming session rules, as plain code: protobuf messages in, decisions out.

Everything the embedded recognizer decides about a ``RecognizeStreaming`` call that does not
need a connection or a clock lives here, so it is tested with plain messages (no gRPC, no
asyncio): the credentials check, ``session_options`` validation, the order of messages, the
5-minute and 10 MB caps, and the response side (cursors, final indexes, the messages each
engine event becomes). The async session (``session.py``) feeds requests in and sends what
comes out; the idle rule (5 s between messages) needs a clock and lives there.

Statuses and messages are stable (tests and docs/embedded-recognizer.md compare them).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from ivr_bridge._proto import stt_v3_pb2 as pb
from ivr_bridge.local.engine import (
    EngineEvent,
    EngineFinal,
    EngineOptions,
    EnginePartial,
    EngineWord,
)
from ivr_bridge.local.normalize import normalize_words

SAMPLE_RATES = (8000, 16000, 48000)
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
    """SpeechKit's per-session limits (tests shrink them)."""

    max_audio_ms: int = 300_000  # 5 minutes of audio per session (chunks + silence_chunks)
    max_bytes: int = 10 * 1024 * 1024  # 10 MB of audio bytes per session
    idle_timeout_s: float = 5.0  # more than this between client messages ends the session


class SessionError(Exception):
    """Ends a session with a gRPC status (code name, e.g. "OUT_OF_RANGE") and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# ---- what a valid request asks the engine to do --------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioItem:
    data: bytes


@dataclass(frozen=True, slots=True)
class SilenceItem:
    duration_ms: int


@dataclass(frozen=True, slots=True)
class EouItem:
    received_ms: int  # SpeechKit: an external EOU is at received_data_ms when eou arrived


@dataclass(frozen=True, slots=True)
class EndItem:
    """The client half-closed: flush the engine, then end with OK."""


WorkItem = AudioItem | SilenceItem | EouItem | EndItem


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """What one call's ``session_options`` asked for, validated."""

    engine: EngineOptions
    normalize: bool  # send final_refinement (number words as digits) after each final


def parse_options(options: pb.StreamingOptions) -> StreamSettings:
    """Validated settings; raises SessionError(INVALID_ARGUMENT) on anything unsupported."""
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
    classifier = options.eou_classifier.WhichOneof("Classifier")
    if classifier == "default_classifier":
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
    return StreamSettings(
        engine=EngineOptions(
            sample_rate=int(raw.sample_rate_hertz),
            endpoint_ms=endpoint,
            max_utterance_ms=MAX_UTTERANCE_MS,
            partial_interval_ms=PARTIAL_INTERVAL_MS,
            external_eou=classifier == "external_classifier",
        ),
        normalize=normalize,
    )


def check_authorization(metadata: dict[str, str], api_key: str | None) -> None:
    """Raises SessionError(UNAUTHENTICATED) unless ``metadata`` carries ``api_key``."""
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


def alternative_update(
    text: str, start_ms: int, end_ms: int, words: tuple[EngineWord, ...]
) -> pb.AlternativeUpdate:
    alt = pb.Alternative(
        words=[pb.Word(text=w.text, start_time_ms=w.start_ms, end_time_ms=w.end_ms) for w in words],
        text=text,
        start_time_ms=start_ms,
        end_time_ms=end_ms,
    )
    return pb.AlternativeUpdate(alternatives=[alt], channel_tag="0")


# One response's event: the StreamingResponse field name and its message.
ResponseEvent = tuple[str, Any]


class SessionRules:
    """One call's protocol state: request validation, audio accounting and cursors.

    Feed every request to ``accept`` (and the half-close to ``end_of_stream``); each returns
    the work for the engine or raises SessionError with the status that ends the call. Turn
    each engine event into response events with ``render`` just before sending them, build
    each response with ``response`` (it stamps the cursors as of that moment), and report the
    engine's progress with ``engine_progress`` only after the events it covers were sent.
    """

    def __init__(self, limits: LocalLimits, uuid: str, request_id: str) -> None:
        self.limits = limits
        self.settings: StreamSettings | None = None
        self._session_uuid = pb.SessionUuid(uuid=uuid, user_request_id=request_id)
        self._rate = 0
        self._bytes = 0
        self._silence_ms = 0
        self.finals = 0
        self._eou_ms = 0
        self._processed_ms = 0
        self._final_ms = 0

    # ---- requests ----------------------------------------------------------------------------

    @property
    def options_seen(self) -> bool:
        return self.settings is not None

    @property
    def received_ms(self) -> int:
        """Session audio received (chunks and silence_chunks), in ms."""
        if not self._rate:
            return self._silence_ms
        return self._bytes * 1000 // (2 * self._rate) + self._silence_ms

    def accept(self, request: pb.StreamingRequest) -> EngineOptions | WorkItem | None:
        """The engine work one request asks for (None: nothing to do)."""
        kind = request.WhichOneof("Event")
        if self.settings is None:
            if kind != "session_options":
                raise SessionError("INVALID_ARGUMENT", MSG_OPTIONS_FIRST)
            self.settings = parse_options(request.session_options)
            self._rate = self.settings.engine.sample_rate
            return self.settings.engine
        if kind == "chunk":
            data = request.chunk.data
            if len(data) % 2:
                raise SessionError("INVALID_ARGUMENT", MSG_ODD_CHUNK.format(size=len(data)))
            self._count(len(data), 0)
            return AudioItem(data) if data else None
        if kind == "silence_chunk":
            ms = request.silence_chunk.duration_ms
            if ms < 0:
                raise SessionError("INVALID_ARGUMENT", MSG_NEGATIVE_SILENCE)
            self._count(0, ms)
            return SilenceItem(ms) if ms else None
        if kind == "eou":
            return EouItem(self.received_ms) if self.settings.engine.external_eou else None
        if kind == "session_options":
            raise SessionError("INVALID_ARGUMENT", MSG_OPTIONS_TWICE)
        raise SessionError("INVALID_ARGUMENT", MSG_EMPTY_REQUEST)

    def end_of_stream(self) -> EndItem:
        """The client half-closed."""
        if self.settings is None:
            raise SessionError("INVALID_ARGUMENT", MSG_NO_OPTIONS)
        return EndItem()

    def _count(self, nbytes: int, silence_ms: int) -> None:
        self._bytes += nbytes
        self._silence_ms += silence_ms
        rate = self._rate
        limit = self.limits.max_audio_ms
        # Exact: bytes/(2*rate) s + silence ms > limit ms, in integers. Duration first.
        if self._bytes * 1000 + self._silence_ms * 2 * rate > limit * 2 * rate:
            raise SessionError("OUT_OF_RANGE", MSG_DURATION)
        if self._bytes > self.limits.max_bytes:
            raise SessionError("OUT_OF_RANGE", MSG_SIZE)

    # ---- responses ---------------------------------------------------------------------------

    def render(self, event: EngineEvent) -> list[ResponseEvent]:
        """The response events for one engine event (a final also advances the cursors)."""
        if isinstance(event, EnginePartial):
            return [
                (
                    "partial",
                    alternative_update(event.text, event.start_ms, event.end_ms, event.words),
                )
            ]
        if isinstance(event, EngineFinal):
            # The message that carries a final is the first that may count it as final.
            self._final_ms = max(self._final_ms, event.end_ms)
            self.finals += 1
            out: list[ResponseEvent] = [
                ("final", alternative_update(event.text, event.start_ms, event.end_ms, event.words))
            ]
            if self.settings is not None and self.settings.normalize:
                words = normalize_words(event.words)
                text = " ".join(w.text for w in words) if words else event.text
                refined = alternative_update(text, event.start_ms, event.end_ms, words)
                out.append(
                    (
                        "final_refinement",
                        pb.FinalRefinement(final_index=self.finals - 1, normalized_text=refined),
                    )
                )
            return out
        self._eou_ms = event.time_ms
        return [("eou_update", pb.EouUpdate(time_ms=event.time_ms))]

    @staticmethod
    def working() -> ResponseEvent:
        """The periodic status message (the bridge's stall detector relies on traffic)."""
        return ("status_code", pb.StatusCode(code_type=pb.WORKING))

    def engine_progress(self, processed_ms: int, final_time_ms: int) -> None:
        """The engine's cursors after a call whose events have all been sent (as the engine
        reports them: an engine may take back a pause it had counted as final once it hears
        that speech had already begun in it)."""
        self._processed_ms = processed_ms
        self._final_ms = final_time_ms

    def cursors(self) -> pb.AudioCursors:
        return pb.AudioCursors(
            received_data_ms=self.received_ms,
            partial_time_ms=self._processed_ms,
            final_time_ms=self._final_ms,
            final_index=max(self.finals - 1, 0),
            eou_time_ms=self._eou_ms,
        )

    def response(self, event: ResponseEvent, wall_ms: int) -> pb.StreamingResponse:
        """The message to send now for ``event``; ``wall_ms`` is the clock's wall time."""
        name, message = event
        fields: dict[str, Any] = {name: message}
        return pb.StreamingResponse(
            session_uuid=self._session_uuid,
            audio_cursors=self.cursors(),
            response_wall_time_ms=wall_ms,
            channel_tag="0",
            **fields,
        )


def split_audio(item: AudioItem, max_bytes: int) -> list[AudioItem]:
    """Cut a long chunk into engine calls of at most ``max_bytes`` (whole samples).

    A single gRPC message may carry minutes of audio; decoding it in one engine call would
    hold the engine's worker for seconds and make every other session on it wait.
    """
    step = max(2, max_bytes - max_bytes % 2)
    data = item.data
    if len(data) <= step:
        return [item]
    return [AudioItem(data[i : i + step]) for i in range(0, len(data), step)]
