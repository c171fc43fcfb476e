"""SpeechKit API v3 streaming client (grpc.aio, Recognizer/RecognizeStreaming).

The only module of the bridge proper that talks gRPC. It turns the session config into
``session_options``, audio into ``chunk``/``silence_chunk`` messages, responses into model
updates, and gRPC statuses into the error tree, in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc
import structlog

from ivr_bridge._proto import stt_v3_pb2 as pb
from ivr_bridge._proto import stt_v3_service_pb2_grpc as pb_grpc
from ivr_bridge.errors import RecognitionUnavailable
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
from ivr_bridge.recognition.base import SessionConfig
from ivr_bridge.recognition.status import map_status

if TYPE_CHECKING:
    from ivr_bridge.recognition.credentials import Credentials

log = structlog.get_logger(__name__)

# SpeechKit results can exceed gRPC's 4 MB receive default; keepalive pings find dead peers.
CHANNEL_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
)


def session_options(config: SessionConfig) -> pb.StreamingRequest:
    norm = pb.TextNormalizationOptions(
        text_normalization=(
            pb.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED
            if config.text_normalization
            else pb.TextNormalizationOptions.TEXT_NORMALIZATION_DISABLED
        ),
        profanity_filter=config.profanity_filter,
        literature_text=config.literature_text,
    )
    model = pb.RecognitionModelOptions(
        model=config.model,
        audio_format=pb.AudioFormatOptions(
            raw_audio=pb.RawAudio(
                audio_encoding=pb.RawAudio.LINEAR16_PCM,
                sample_rate_hertz=config.sample_rate,
                audio_channel_count=1,
            )
        ),
        text_normalization=norm,
        language_restriction=pb.LanguageRestrictionOptions(
            restriction_type=pb.LanguageRestrictionOptions.WHITELIST,
            language_code=list(config.languages),
        ),
        audio_processing_type=pb.RecognitionModelOptions.REAL_TIME,
    )
    eou = pb.EouClassifierOptions(
        default_classifier=pb.DefaultEouClassifier(
            type=(
                pb.DefaultEouClassifier.HIGH
                if config.eou_sensitivity == "HIGH"
                else pb.DefaultEouClassifier.DEFAULT
            ),
            max_pause_between_words_hint_ms=config.max_pause_between_words_hint_ms,
        )
    )
    return pb.StreamingRequest(
        session_options=pb.StreamingOptions(recognition_model=model, eou_classifier=eou)
    )


def _cursors(resp: pb.StreamingResponse) -> Cursors:
    c = resp.audio_cursors
    return Cursors(
        received_data_ms=c.received_data_ms,
        partial_time_ms=c.partial_time_ms,
        final_time_ms=c.final_time_ms,
        final_index=c.final_index,
        eou_time_ms=c.eou_time_ms,
    )


def _hypothesis(update: pb.AlternativeUpdate) -> Hypothesis:
    if not update.alternatives:
        return Hypothesis(text="", start_ms=0, end_ms=0)
    alt = update.alternatives[0]
    words = tuple(Word(w.text, w.start_time_ms, w.end_time_ms) for w in alt.words)
    return Hypothesis(
        text=alt.text,
        start_ms=alt.start_time_ms,
        end_ms=alt.end_time_ms,
        words=words,
        confidence=alt.confidence,
    )


def convert_response(resp: pb.StreamingResponse) -> RecognitionUpdate | None:
    """A StreamingResponse as a model update; None for kinds the bridge does not request."""
    cursors = _cursors(resp)
    kind = resp.WhichOneof("Event")
    if kind == "partial":
        return PartialResult(_hypothesis(resp.partial), cursors)
    if kind == "final":
        return FinalResult(_hypothesis(resp.final), cursors)
    if kind == "eou_update":
        return EndOfUtterance(resp.eou_update.time_ms, cursors)
    if kind == "final_refinement":
        ref = resp.final_refinement
        return FinalRefinement(ref.final_index, _hypothesis(ref.normalized_text), cursors)
    if kind == "status_code":
        code = pb.CodeType.Name(resp.status_code.code_type)
        return StatusReport(code, resp.status_code.message, cursors)
    return None


class SpeechKitV3Stream:
    def __init__(self, call: Any) -> None:
        self._call = call
        self._closed_writing = False

    async def _write(self, request: pb.StreamingRequest) -> None:
        try:
            await self._call.write(request)
        except grpc.aio.AioRpcError as exc:
            raise map_status(exc.code().name, exc.details() or "") from exc
        except (grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
            # The call already ended (grpc.aio raises InvalidStateError on a finished call);
            # its real status surfaces through updates().
            raise RecognitionUnavailable("CANCELLED", "stream closed") from exc

    async def send_audio(self, pcm: bytes) -> None:
        await self._write(pb.StreamingRequest(chunk=pb.AudioChunk(data=pcm)))

    async def send_silence(self, duration_ms: int) -> None:
        await self._write(
            pb.StreamingRequest(silence_chunk=pb.SilenceChunk(duration_ms=duration_ms))
        )

    async def finish(self) -> None:
        if self._closed_writing:
            return
        self._closed_writing = True
        try:
            await self._call.done_writing()
        except (grpc.aio.AioRpcError, grpc.aio.UsageError):
            log.debug("half_close_after_end")

    async def updates(self) -> AsyncIterator[RecognitionUpdate]:
        try:
            async for resp in self._call:
                update = convert_response(resp)
                if update is not None:
                    yield update
        except grpc.aio.AioRpcError as exc:
            raise map_status(exc.code().name, exc.details() or "") from exc

    def cancel(self) -> None:
        self._call.cancel()


class SpeechKitV3Recognizer:
    """Opens streaming sessions on one shared channel (HTTP/2 multiplexes all calls)."""

    def __init__(
        self,
        endpoint: str,
        *,
        tls: bool = True,
        credentials: Credentials | None = None,
        folder_id: str = "",
        root_certificates: bytes | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._credentials = credentials
        self._folder_id = folder_id
        if tls:
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.aio.secure_channel(endpoint, creds, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.RecognizerStub(self._channel)  # type: ignore[no-untyped-call]

    async def refresh_credentials(self) -> bool:
        if self._credentials is None:
            return False
        return await self._credentials.refresh()

    async def _metadata(self, request_id: str) -> list[tuple[str, str]]:
        md: list[tuple[str, str]] = [("x-client-request-id", request_id)]
        if self._credentials is not None:
            md.extend(await self._credentials.metadata())
        if self._folder_id:
            md.append(("x-folder-id", self._folder_id))
        return md

    async def open_stream(self, config: SessionConfig, *, request_id: str) -> SpeechKitV3Stream:
        metadata = await self._metadata(request_id)
        call = self._stub.RecognizeStreaming(metadata=metadata)
        stream = SpeechKitV3Stream(call)
        await stream._write(session_options(config))
        return stream

    def connectivity(self) -> str:
        """The channel's state name (READY, IDLE, CONNECTING, TRANSIENT_FAILURE...) for
        /healthz; asking also makes an idle channel try to connect."""
        return str(self._channel.get_state(try_to_connect=True).name)

    async def close(self) -> None:
        await self._channel.close()
