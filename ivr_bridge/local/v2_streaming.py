"""The embedded recognizer's SpeechKit API v2 streaming service (SttService/StreamingRecognize).

v2 streaming is v3 streaming with other messages: a ``config`` first, then raw
``audio_content``; results as ``chunks`` with ``final`` and ``end_of_utterance`` flags. So
this module does not run sessions itself. It wraps the gRPC call context in ``V2Context``,
which translates each v2 request into the v3 request the session engine (``server.py``)
already validates and recognizes, and each v3 response back into the v2 response. Every
session rule (5 minutes, 10 MB, 5 s idle, auth, fault injection, outages) is therefore the
same for both APIs, as SpeechKit documents.

v2-specific rules, all INVALID_ARGUMENT (messages are stable):

* the first message must be ``config`` ("the first message must be config"); a second one:
  "config must be sent exactly once"; an empty request: "request has neither config nor
  audio_content";
* ``specification.audio_encoding`` must be LINEAR16_PCM: OGG_OPUS (also the v2 default when
  unset) "OGG_OPUS is not supported by the embedded recognizer; use LINEAR16_PCM", MP3 "MP3
  is accepted only by long-running recognition";
* ``sample_rate_hertz`` 8000, 16000 or 48000 (0 means the documented default 48000);
* ``audio_channel_count`` at most 1 ("streaming recognition takes one channel");
* ``folder_id`` at most 50 characters; ``audio_content`` whole 16-bit samples.

Responses: partials only with ``partial_results``; a final is sent with
``end_of_utterance`` set when the utterance ends (with ``raw_results`` false its text and
words are the normalized ones); with ``single_utterance`` nothing follows the first
utterance's end (the server waits for the client to close). No status messages: v2 has none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from ivr_bridge._proto import stt_v2_pb2 as pb2
from ivr_bridge._proto import stt_v2_pb2_grpc as pb2_grpc
from ivr_bridge._proto import stt_v3_pb2 as pb3
from ivr_bridge.local.rules import SAMPLE_RATES, SessionError

if TYPE_CHECKING:  # server.py imports this module
    from ivr_bridge.local.server import EmbeddedSpeechKitServer

_add_servicer: Callable[[Any, Any], None] = pb2_grpc.add_SttServiceServicer_to_server

DEFAULT_RATE = 48000  # v2's documented default for LINEAR16_PCM
MAX_FOLDER_ID = 50

MSG_CONFIG_FIRST = "the first message must be config"
MSG_CONFIG_TWICE = "config must be sent exactly once"
MSG_EMPTY = "request has neither config nor audio_content"
MSG_OPUS = "OGG_OPUS is not supported by the embedded recognizer; use LINEAR16_PCM"
MSG_MP3 = "MP3 is accepted only by long-running recognition"
MSG_RATE = "specification.sample_rate_hertz must be 8000, 16000 or 48000 (got {rate})"
MSG_CHANNELS = "streaming recognition takes one channel (got audio_channel_count {n})"
MSG_FOLDER = "folder_id must be at most 50 characters"
MSG_ODD = "audio_content must be whole 16-bit samples (got {size} bytes)"


def session_options(config: pb2.RecognitionConfig) -> pb3.StreamingRequest:
    """The v3 session_options equivalent to a v2 config; SessionError if v2 rejects it."""
    spec = config.specification
    if len(config.folder_id) > MAX_FOLDER_ID:
        raise SessionError("INVALID_ARGUMENT", MSG_FOLDER)
    if spec.audio_encoding == pb2.RecognitionSpec.MP3:
        raise SessionError("INVALID_ARGUMENT", MSG_MP3)
    if spec.audio_encoding != pb2.RecognitionSpec.LINEAR16_PCM:
        raise SessionError("INVALID_ARGUMENT", MSG_OPUS)
    rate = spec.sample_rate_hertz or DEFAULT_RATE
    if rate not in SAMPLE_RATES:
        raise SessionError("INVALID_ARGUMENT", MSG_RATE.format(rate=rate))
    if spec.audio_channel_count > 1:
        raise SessionError("INVALID_ARGUMENT", MSG_CHANNELS.format(n=spec.audio_channel_count))
    normalization = (
        pb3.TextNormalizationOptions.TEXT_NORMALIZATION_DISABLED
        if spec.raw_results
        else pb3.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED
    )
    model = pb3.RecognitionModelOptions(
        model=spec.model or "general",
        audio_format=pb3.AudioFormatOptions(
            raw_audio=pb3.RawAudio(
                audio_encoding=pb3.RawAudio.LINEAR16_PCM,
                sample_rate_hertz=rate,
                audio_channel_count=1,
            )
        ),
        text_normalization=pb3.TextNormalizationOptions(
            text_normalization=normalization,
            profanity_filter=spec.profanity_filter,
            literature_text=spec.literature_text,
        ),
        language_restriction=pb3.LanguageRestrictionOptions(
            restriction_type=pb3.LanguageRestrictionOptions.WHITELIST,
            language_code=[spec.language_code or "ru-RU"],
        ),
    )
    return pb3.StreamingRequest(session_options=pb3.StreamingOptions(recognition_model=model))


def _duration(ms: int) -> dict[str, int]:
    """A google.protobuf.Duration, in the form message constructors accept."""
    return {"seconds": ms // 1000, "nanos": (ms % 1000) * 1_000_000}


def v2_alternative(update: pb3.AlternativeUpdate) -> list[pb2.SpeechRecognitionAlternative]:
    return [
        pb2.SpeechRecognitionAlternative(
            text=alt.text,
            words=[
                pb2.WordInfo(
                    start_time=_duration(w.start_time_ms),
                    end_time=_duration(w.end_time_ms),
                    word=w.text,
                )
                for w in alt.words
            ],
        )
        for alt in update.alternatives
    ]


class V2Context:
    """A v2 call seen by the v3 session engine: requests up-converted, responses down."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self._configured = False
        self._failed = False
        self._partials = True
        self._single = False
        self._normalize = False
        self._utterance_done = False
        self._held: pb2.SpeechRecognitionChunk | None = None  # a final awaiting its EOU

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()

    def set_code(self, code: Any) -> None:
        self._context.set_code(code)

    def set_details(self, details: str) -> None:
        self._context.set_details(details)

    async def read(self) -> Any:
        request = await self._context.read()
        if request is grpc.aio.EOF or self._failed:
            return request if request is grpc.aio.EOF else pb3.StreamingRequest()
        try:
            return self._up(request)
        except SessionError:
            self._failed = True  # report once; what the client sends after is drained
            raise

    def _up(self, request: pb2.StreamingRecognitionRequest) -> pb3.StreamingRequest:
        kind = request.WhichOneof("streaming_request")
        if not self._configured:
            if kind != "config":
                raise SessionError("INVALID_ARGUMENT", MSG_CONFIG_FIRST)
            self._configured = True
            spec = request.config.specification
            self._partials = spec.partial_results
            self._single = spec.single_utterance
            self._normalize = not spec.raw_results
            return session_options(request.config)
        if kind == "audio_content":
            data = request.audio_content
            if len(data) % 2:
                raise SessionError("INVALID_ARGUMENT", MSG_ODD.format(size=len(data)))
            return pb3.StreamingRequest(chunk=pb3.AudioChunk(data=data))
        if kind == "config":
            raise SessionError("INVALID_ARGUMENT", MSG_CONFIG_TWICE)
        raise SessionError("INVALID_ARGUMENT", MSG_EMPTY)

    async def write(self, response: pb3.StreamingResponse) -> None:
        for chunk in self._down(response):
            await self._context.write(pb2.StreamingRecognitionResponse(chunks=[chunk]))

    def _down(self, response: pb3.StreamingResponse) -> list[pb2.SpeechRecognitionChunk]:
        if self._utterance_done:
            return []  # single_utterance: the first utterance is all the client gets
        kind = response.WhichOneof("Event")
        out: list[pb2.SpeechRecognitionChunk] = []
        if kind == "partial" and self._partials:
            out.append(pb2.SpeechRecognitionChunk(alternatives=v2_alternative(response.partial)))
        elif kind == "final":
            if self._held is not None:
                out.append(self._held)  # the utterance goes on after a forced final
            self._held = pb2.SpeechRecognitionChunk(
                alternatives=v2_alternative(response.final), final=True
            )
        elif kind == "final_refinement" and self._normalize and self._held is not None:
            refined = response.final_refinement.normalized_text
            self._held = pb2.SpeechRecognitionChunk(
                alternatives=v2_alternative(refined), final=True
            )
        elif kind == "eou_update" and self._held is not None:
            held, self._held = self._held, None
            held.end_of_utterance = True
            out.append(held)
            self._utterance_done = self._single
        return out


class V2Servicer(pb2_grpc.SttServiceServicer):
    def __init__(self, owner: EmbeddedSpeechKitServer) -> None:
        self._owner = owner

    async def StreamingRecognize(self, request_iterator: Any, context: Any) -> None:
        await self._owner.handle(V2Context(context))


def add_v2_streaming(owner: EmbeddedSpeechKitServer, server: Any) -> None:
    """Serve SttService/StreamingRecognize on the embedded recognizer's gRPC server."""
    _add_servicer(V2Servicer(owner), server)
