"""SpeechKit v3 asynchronous recognition over gRPC: RecognizeFile, Operation polling,
GetRecognition.

The caller submits (inline content up to 60 MB, or an Object Storage URI), polls ``status``
until the operation is done, then reads ``results`` (every channel's finals, with
``channel_tag``). Statuses become ``TranscribeError`` with a message for the user.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from ivr_bridge._proto import operation_pb2 as op_pb
from ivr_bridge._proto import operation_pb2_grpc as op_grpc
from ivr_bridge._proto import stt_v3_async_pb2 as apb
from ivr_bridge._proto import stt_v3_async_pb2_grpc as apb_grpc
from ivr_bridge._proto import stt_v3_pb2 as pb3
from ivr_bridge.recognition.grpc_transport import open_channel
from ivr_bridge.transcribe.audio import Prepared
from ivr_bridge.transcribe.errors import GRPC_NUMBERS, TranscribeError, from_status

if TYPE_CHECKING:
    from ivr_bridge.recognition.credentials import Credentials

STT_ENDPOINT = "stt.api.cloud.yandex.net:443"
OPERATION_ENDPOINT = "operation.api.cloud.yandex.net:443"
CONTAINERS = {
    "WAV": pb3.ContainerAudio.WAV,
    "OGG_OPUS": pb3.ContainerAudio.OGG_OPUS,
    "MP3": pb3.ContainerAudio.MP3,
}


def recognize_request(
    audio: Prepared,
    *,
    uri: str = "",
    model: str = "general",
    language: str = "ru-RU",
    normalize: bool = False,
) -> apb.RecognizeFileRequest:
    """A RecognizeFileRequest: the file inline, or ``uri`` when given."""
    if audio.container == "LPCM":
        fmt = pb3.AudioFormatOptions(
            raw_audio=pb3.RawAudio(
                audio_encoding=pb3.RawAudio.LINEAR16_PCM,
                sample_rate_hertz=audio.sample_rate,
                audio_channel_count=audio.channels,
            )
        )
    else:
        fmt = pb3.AudioFormatOptions(
            container_audio=pb3.ContainerAudio(container_audio_type=CONTAINERS[audio.container])
        )
    options = pb3.RecognitionModelOptions(
        model=model,
        audio_format=fmt,
        text_normalization=pb3.TextNormalizationOptions(
            text_normalization=(
                pb3.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED
                if normalize
                else pb3.TextNormalizationOptions.TEXT_NORMALIZATION_DISABLED
            )
        ),
        language_restriction=pb3.LanguageRestrictionOptions(
            restriction_type=pb3.LanguageRestrictionOptions.WHITELIST, language_code=[language]
        ),
    )
    if uri:
        return apb.RecognizeFileRequest(uri=uri, recognition_model=options)
    return apb.RecognizeFileRequest(content=audio.data, recognition_model=options)


def _error(exc: grpc.aio.AioRpcError) -> TranscribeError:
    return from_status(exc.code().name, exc.details() or "")


class V3AsyncClient:
    """AsyncRecognizer and OperationService stubs on one or two channels."""

    def __init__(
        self,
        endpoint: str = STT_ENDPOINT,
        operation_endpoint: str = OPERATION_ENDPOINT,
        *,
        tls: bool = True,
        credentials: Credentials | None = None,
        folder_id: str = "",
    ) -> None:
        self._credentials = credentials
        self._folder_id = folder_id
        self._channels = []
        for target in dict.fromkeys((endpoint, operation_endpoint)):
            self._channels.append(open_channel(target, tls=tls))
        self._stt = apb_grpc.AsyncRecognizerStub(self._channels[0])  # type: ignore[no-untyped-call]
        self._ops = op_grpc.OperationServiceStub(self._channels[-1])  # type: ignore[no-untyped-call]

    async def _metadata(self) -> list[tuple[str, str]]:
        md = await self._credentials.metadata() if self._credentials else []
        if self._folder_id:
            md.append(("x-folder-id", self._folder_id))
        return md

    async def submit(self, request: apb.RecognizeFileRequest) -> str:
        """Start recognition; returns the operation id to poll."""
        try:
            op = await self._stt.RecognizeFile(request, metadata=await self._metadata())
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from exc
        return str(op.id)

    async def status(self, operation_id: str) -> bool:
        """True when done; TranscribeError when the operation failed."""
        try:
            op = await self._ops.Get(
                op_pb.GetOperationRequest(operation_id=operation_id),
                metadata=await self._metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from exc
        if op.done and op.WhichOneof("result") == "error":
            raise from_status(GRPC_NUMBERS.get(op.error.code, "INTERNAL"), op.error.message)
        return bool(op.done)

    async def results(self, operation_id: str) -> list[pb3.StreamingResponse]:
        out: list[pb3.StreamingResponse] = []
        try:
            call = self._stt.GetRecognition(
                apb.GetRecognitionRequest(operation_id=operation_id),
                metadata=await self._metadata(),
            )
            async for resp in call:
                out.append(resp)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from exc
        return out

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
