"""The embedded recognizer's v3 ``AsyncRecognizer`` and ``OperationService`` over gRPC.

``RecognizeFile`` validates the request and answers with an Operation at once (description
"STT v3 async recognition", response type google.protobuf.Empty when done);
``OperationService.Get`` polls it; ``GetRecognition`` streams the results (``final``,
``final_refinement`` with text normalization, ``eou_update``; ``channel_tag`` "0", "1", ...
per channel); ``DeleteRecognition`` forgets them. The jobs themselves live in
``async_jobs.py`` (shared with the v2 REST front).

Statuses: UNAUTHENTICATED as for streaming; INVALID_ARGUMENT for a request without audio or
audio_format ("recognition_model.audio_format is required"), an unsupported raw encoding, a
missing operation_id ("operation_id is required"); NOT_FOUND for an unknown (or expired)
operation; FAILED_PRECONDITION from GetRecognition before the operation is done; an operation
that failed makes GetRecognition end with its error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import empty_pb2

from ivr_bridge._proto import operation_pb2 as op_pb
from ivr_bridge._proto import operation_pb2_grpc as op_grpc
from ivr_bridge._proto import stt_v3_async_pb2 as apb
from ivr_bridge._proto import stt_v3_async_pb2_grpc as apb_grpc
from ivr_bridge._proto import stt_v3_pb2 as pb3
from ivr_bridge.local.async_jobs import AsyncJobs, AudioSpec
from ivr_bridge.local.rules import SessionError, check_authorization

if TYPE_CHECKING:  # server.py imports this module
    from ivr_bridge.local.server import EmbeddedSpeechKitServer

_add_async: Callable[[Any, Any], None] = apb_grpc.add_AsyncRecognizerServicer_to_server
_add_operations: Callable[[Any, Any], None] = op_grpc.add_OperationServiceServicer_to_server

DESCRIPTION = "STT v3 async recognition"
MSG_NO_FORMAT = "recognition_model.audio_format is required"
MSG_ENCODING = "raw_audio.audio_encoding must be LINEAR16_PCM"
MSG_NO_ID = "operation_id is required"
CONTAINERS = {
    pb3.ContainerAudio.WAV: "WAV",
    pb3.ContainerAudio.OGG_OPUS: "OGG_OPUS",
    pb3.ContainerAudio.MP3: "MP3",
}


def audio_spec(model: pb3.RecognitionModelOptions) -> AudioSpec:
    fmt = model.audio_format
    kind = fmt.WhichOneof("AudioFormat")
    if kind == "raw_audio":
        raw = fmt.raw_audio
        if raw.audio_encoding != pb3.RawAudio.LINEAR16_PCM:
            raise SessionError("INVALID_ARGUMENT", MSG_ENCODING)
        return AudioSpec("LPCM", int(raw.sample_rate_hertz), int(raw.audio_channel_count or 1))
    if kind == "container_audio" and fmt.container_audio.container_audio_type in CONTAINERS:
        return AudioSpec(CONTAINERS[fmt.container_audio.container_audio_type])
    raise SessionError("INVALID_ARGUMENT", MSG_NO_FORMAT)


class _Base:
    def __init__(self, owner: EmbeddedSpeechKitServer, jobs: AsyncJobs) -> None:
        self._owner = owner
        self._jobs = jobs

    def _auth(self, context: Any) -> None:
        metadata = {str(k).lower(): str(v) for k, v in (context.invocation_metadata() or ())}
        check_authorization(metadata, self._owner.config.api_key)

    @staticmethod
    async def _abort(context: Any, exc: SessionError) -> None:
        await context.abort(getattr(grpc.StatusCode, exc.code), exc.message)


class AsyncRecognizerServicer(_Base, apb_grpc.AsyncRecognizerServicer):
    async def RecognizeFile(self, request: apb.RecognizeFileRequest, context: Any) -> Any:
        try:
            self._auth(context)
            spec = audio_spec(request.recognition_model)
            source = request.WhichOneof("AudioSource")
            normalize = (
                request.recognition_model.text_normalization.text_normalization
                == pb3.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED
            )
            job = self._jobs.submit(
                "v3",
                spec,
                content=request.content if source == "content" else None,
                uri=request.uri if source == "uri" else "",
                normalize=normalize,
            )
        except SessionError as exc:
            await self._abort(context, exc)
            raise  # abort() raises; this line only satisfies the type checker
        return self._jobs.operation(job, DESCRIPTION)

    async def GetRecognition(self, request: apb.GetRecognitionRequest, context: Any) -> None:
        try:
            self._auth(context)
            if not request.operation_id:
                raise SessionError("INVALID_ARGUMENT", MSG_NO_ID)
            job = self._jobs.finished(request.operation_id)
        except SessionError as exc:
            await self._abort(context, exc)
            return
        for response in self._jobs.v3_responses(job):
            await context.write(response)

    async def DeleteRecognition(self, request: apb.DeleteRecognitionRequest, context: Any) -> Any:
        try:
            self._auth(context)
            self._jobs.delete(request.operation_id)
        except SessionError as exc:
            await self._abort(context, exc)
        return empty_pb2.Empty()


class OperationServicer(_Base, op_grpc.OperationServiceServicer):
    async def Get(self, request: op_pb.GetOperationRequest, context: Any) -> Any:
        try:
            self._auth(context)
            job = self._jobs.get(request.operation_id)
        except SessionError as exc:
            await self._abort(context, exc)
            raise
        description = DESCRIPTION if job.api == "v3" else "STT v2 long running recognition"
        return self._jobs.operation(job, description)

    async def Cancel(self, request: op_pb.CancelOperationRequest, context: Any) -> Any:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "recognition cannot be cancelled")


def add_async_services(owner: EmbeddedSpeechKitServer, jobs: AsyncJobs, server: Any) -> None:
    """Serve AsyncRecognizer and OperationService on the embedded recognizer's server."""
    _add_async(AsyncRecognizerServicer(owner, jobs), server)
    _add_operations(OperationServicer(owner, jobs), server)
