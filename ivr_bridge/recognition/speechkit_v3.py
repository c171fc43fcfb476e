"""SpeechKit API v3 streaming client (grpc.aio, Recognizer/RecognizeStreaming).

It turns the session config into ``session_options``, audio into ``chunk``/``silence_chunk``
messages and responses into model updates; the channel, call handling and status mapping it
shares with the other SpeechKit clients are in ``grpc_transport.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

from ivr_bridge._proto import stt_v3_pb2 as pb
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
from ivr_bridge.recognition.grpc_transport import (
    CALL_ERRORS,
    GrpcStream,
    SpeechKitClient,
    raise_mapped,
)
from ivr_bridge.recognition.pbwire import nested_header

# StreamingRequest.chunk.data: the field numbers the hand-framed audio request uses.
_CHUNK: Final = pb.StreamingRequest.DESCRIPTOR.fields_by_name["chunk"].number
_CHUNK_DATA: Final = pb.AudioChunk.DESCRIPTOR.fields_by_name["data"].number


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


class SpeechKitV3Stream(GrpcStream):
    """One v3 RecognizeStreaming call: audio and silence out, model updates in."""

    async def send_audio(self, pcm: bytes) -> None:
        await self._write(pb.StreamingRequest(chunk=pb.AudioChunk(data=pcm)))

    def try_send_audio(self, pcm: bytes) -> bool:
        """``send_audio`` if it can finish now; False (nothing sent) otherwise."""
        return self._try_write_serialized(nested_header(_CHUNK, _CHUNK_DATA, len(pcm)) + pcm)

    async def send_silence(self, duration_ms: int) -> None:
        await self._write(
            pb.StreamingRequest(silence_chunk=pb.SilenceChunk(duration_ms=duration_ms))
        )

    async def updates(self) -> AsyncIterator[RecognitionUpdate]:
        try:
            async for resp in self._call:
                update = convert_response(resp)
                if update is not None:
                    yield update
        except CALL_ERRORS as exc:
            raise_mapped(exc)


RECOGNIZE_STREAMING = "/speechkit.stt.v3.Recognizer/RecognizeStreaming"


class SpeechKitV3Recognizer(SpeechKitClient):
    """Opens streaming sessions on shared HTTP/2 connections (calls multiplex on them)."""

    async def open_stream(self, config: SessionConfig, *, request_id: str) -> SpeechKitV3Stream:
        metadata = await self._metadata(request_id)
        call = await self._open_call(RECOGNIZE_STREAMING, pb.StreamingResponse, metadata)
        stream = SpeechKitV3Stream(call)
        await stream._write(session_options(config))
        return stream
