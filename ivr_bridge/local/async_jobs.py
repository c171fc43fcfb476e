"""Asynchronous recognition in the embedded recognizer: jobs, their operations and results.

SpeechKit's asynchronous APIs (v3 ``AsyncRecognizer.RecognizeFile``, v2
``longRunningRecognize``) take a whole file, inline or as an Object Storage URI, answer at
once with an ``Operation``, and recognize in the background; the caller polls the operation
(``OperationService.Get`` / ``GET /operations/{id}``) and then reads the result. This module
is the part both front ends share (``async_grpc.py`` for gRPC, ``rest.py`` for REST):
validating a request, fetching and decoding the audio, running the engine per channel, and
keeping the operations (bounded; results expire after 3 days, as documented).

Documented limits enforced here (all INVALID_ARGUMENT unless stated, messages stable):

* inline content at most 60 MB: "audio content exceeds 60 MB; use an Object Storage URI";
  a URI's object at most 1 GB: "audio file exceeds 1 GB";
* at most 4 hours of audio, all channels added up: "audio is longer than 4 hours (all
  channels added up)";
* the audio must decode as the declared format: "audio does not match the declared format
  (...)"; a URI that cannot be fetched: "cannot fetch audio from uri (...)";
* RESOURCE_EXHAUSTED past ``requests_per_hour`` recognition requests in a sliding hour:
  "quota exceeded: N recognition requests per hour".

Decoding and size/duration failures found after the request was accepted end the operation
with ``error`` set (``done: true``), like the service; request-shape errors fail the call.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import soundfile
import structlog
from google.protobuf import any_pb2, empty_pb2, timestamp_pb2
from google.rpc import status_pb2

from ivr_bridge._proto import operation_pb2 as op_pb
from ivr_bridge._proto import stt_v2_pb2 as pb2
from ivr_bridge._proto import stt_v3_pb2 as pb3
from ivr_bridge.audio.codecs import resample
from ivr_bridge.local.engine import EngineEou, EngineEvent, EngineFinal, EngineOptions
from ivr_bridge.local.normalize import normalize_words
from ivr_bridge.local.rules import SessionError

if TYPE_CHECKING:
    from ivr_bridge.local.server import EmbeddedSpeechKitServer

log = structlog.get_logger(__name__)

MAX_INLINE_BYTES = 60 * 1024 * 1024
MAX_URI_BYTES = 1024 * 1024 * 1024
MAX_AUDIO_S = 4 * 3600
RESULT_TTL_S = 3 * 24 * 3600
MAX_JOBS = 1000  # operations kept; the oldest finished ones go first
ENGINE_RATES = (8000, 16000)
FEED_MS = 100  # PCM per engine call, as a streaming client sends it (endpointing sees pauses)

GRPC_CODES = {
    "OK": 0,
    "INVALID_ARGUMENT": 3,
    "NOT_FOUND": 5,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "INTERNAL": 13,
    "UNAUTHENTICATED": 16,
}

MSG_TOO_BIG_INLINE = "audio content exceeds 60 MB; use an Object Storage URI"
MSG_TOO_BIG_URI = "audio file exceeds 1 GB"
MSG_TOO_LONG = "audio is longer than 4 hours (all channels added up)"
MSG_DECODE = "audio does not match the declared format ({why})"
MSG_FETCH = "cannot fetch audio from uri ({why})"
MSG_NO_AUDIO = "audio is required (content or uri)"
MSG_QUOTA = "quota exceeded: {n} recognition requests per hour"
MSG_NOT_FOUND = "operation {id} not found"
MSG_NOT_DONE = "operation {id} is not done yet"
MSG_BAD_URI = "uri must be an http(s) link to Object Storage"


@dataclass(frozen=True, slots=True)
class AudioSpec:
    """What the request declares about the audio (container, or raw LPCM with rate/channels)."""

    container: str  # "WAV" | "OGG_OPUS" | "MP3" | "LPCM"
    sample_rate: int = 0
    channels: int = 1


@dataclass(slots=True)
class ChannelResult:
    """One channel's finals and ends of utterance, in the order the engine produced them."""

    events: list[EngineFinal | EngineEou] = field(default_factory=list)

    @property
    def finals(self) -> list[EngineFinal]:
        return [e for e in self.events if isinstance(e, EngineFinal)]


@dataclass(slots=True)
class Job:
    id: str
    api: str  # "v3" | "v2"
    created_at: float
    modified_at: float
    normalize: bool
    done: bool = False
    error: tuple[str, str] | None = None
    channels: list[ChannelResult] = field(default_factory=list)


def _timestamp(wall: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(wall * 1e9))
    return ts


def decode(data: bytes, spec: AudioSpec) -> tuple[list[bytes], int]:
    """PCM16 per channel and the sample rate; SessionError when it does not decode."""
    try:
        if spec.container == "LPCM":
            frames, rate = soundfile.read(
                io.BytesIO(data),
                dtype="int16",
                always_2d=True,
                format="RAW",
                subtype="PCM_16",
                samplerate=spec.sample_rate,
                channels=spec.channels,
            )
        else:
            expected = {"WAV": "WAV", "OGG_OPUS": "OGG", "MP3": "MP3"}[spec.container]
            info = soundfile.info(io.BytesIO(data))
            if info.format != expected:
                raise SessionError(
                    "INVALID_ARGUMENT", MSG_DECODE.format(why=f"found {info.format}")
                )
            frames, rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise SessionError("INVALID_ARGUMENT", MSG_DECODE.format(why=str(exc)[:120])) from exc
    channels = [frames[:, i].tobytes() for i in range(frames.shape[1])]
    return channels, int(rate)


class AsyncJobs:
    """The embedded recognizer's asynchronous operations (one per RecognizeFile request)."""

    def __init__(self, owner: EmbeddedSpeechKitServer, *, requests_per_hour: int = 500) -> None:
        self._owner = owner
        self._jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._requests: deque[float] = deque()
        self.requests_per_hour = requests_per_hour  # the documented default quota

    # ---- requests ---------------------------------------------------------------------------

    def _admit(self) -> None:
        now = self._owner.clock.now()
        while self._requests and now - self._requests[0] >= 3600:
            self._requests.popleft()
        if len(self._requests) >= self.requests_per_hour:
            raise SessionError("RESOURCE_EXHAUSTED", MSG_QUOTA.format(n=self.requests_per_hour))
        self._requests.append(now)

    def submit(
        self,
        api: str,
        spec: AudioSpec,
        *,
        content: bytes | None = None,
        uri: str = "",
        normalize: bool = False,
        authorization: str = "",
    ) -> Job:
        """Accept a request (or raise SessionError) and start recognizing in the background."""
        if content is None and not uri:
            raise SessionError("INVALID_ARGUMENT", MSG_NO_AUDIO)
        if content is not None and len(content) > MAX_INLINE_BYTES:
            raise SessionError("INVALID_ARGUMENT", MSG_TOO_BIG_INLINE)
        if uri and not uri.startswith(("http://", "https://")):
            raise SessionError("INVALID_ARGUMENT", MSG_BAD_URI)
        self._admit()
        self._expire()
        wall = self._owner.clock.wall()
        job = Job(
            id=f"e03{uuid.uuid4().hex[:17]}",
            api=api,
            created_at=wall,
            modified_at=wall,
            normalize=normalize,
        )
        self._jobs[job.id] = job
        task = asyncio.create_task(self._run(job, spec, content, uri), name=f"async-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("async_job_accepted", operation=job.id, api=api, inline=content is not None)
        return job

    def get(self, operation_id: str) -> Job:
        self._expire()
        job = self._jobs.get(operation_id)
        if job is None:
            raise SessionError("NOT_FOUND", MSG_NOT_FOUND.format(id=operation_id))
        return job

    def finished(self, operation_id: str) -> Job:
        """The job, if it is done without error (else SessionError with the right status)."""
        job = self.get(operation_id)
        if not job.done:
            raise SessionError("FAILED_PRECONDITION", MSG_NOT_DONE.format(id=operation_id))
        if job.error is not None:
            raise SessionError(*job.error)
        return job

    def delete(self, operation_id: str) -> None:
        self.get(operation_id)
        del self._jobs[operation_id]

    def _expire(self) -> None:
        now = self._owner.clock.wall()
        for job_id, job in list(self._jobs.items()):
            if job.done and now - job.modified_at > RESULT_TTL_S:
                del self._jobs[job_id]
        done = [j for j in self._jobs.values() if j.done]
        for job in done[: max(0, len(self._jobs) - MAX_JOBS + 1)]:
            del self._jobs[job.id]

    @property
    def running(self) -> int:
        """Jobs recognizing in the background now."""
        return len(self._tasks)

    async def aclose(self) -> None:
        """Cancel the jobs still running (the embedded server is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---- work -------------------------------------------------------------------------------

    async def _fetch(self, uri: str) -> bytes:
        try:
            async with (
                httpx.AsyncClient(timeout=30.0) as client,
                client.stream("GET", uri) as resp,
            ):
                if resp.status_code != 200:
                    raise SessionError(
                        "INVALID_ARGUMENT", MSG_FETCH.format(why=f"HTTP {resp.status_code}")
                    )
                body = bytearray()
                async for piece in resp.aiter_bytes():
                    body += piece
                    if len(body) > MAX_URI_BYTES:
                        raise SessionError("INVALID_ARGUMENT", MSG_TOO_BIG_URI)
                return bytes(body)
        except httpx.HTTPError as exc:
            raise SessionError(
                "INVALID_ARGUMENT", MSG_FETCH.format(why=type(exc).__name__)
            ) from exc

    async def _run(self, job: Job, spec: AudioSpec, content: bytes | None, uri: str) -> None:
        try:
            data = content if content is not None else await self._fetch(uri)
            channels, rate = await asyncio.to_thread(decode, data, spec)
            seconds = sum(len(c) for c in channels) / (2 * rate) if rate else 0
            if seconds > MAX_AUDIO_S:
                raise SessionError("INVALID_ARGUMENT", MSG_TOO_LONG)
            for pcm in channels:
                job.channels.append(await self._recognize(pcm, rate))
        except SessionError as exc:
            job.error = (exc.code, exc.message)
        except Exception:
            log.exception("async_job_failed", operation=job.id)
            job.error = ("INTERNAL", "recognition engine failure")
        job.done = True
        job.modified_at = self._owner.clock.wall()
        log.info(
            "async_job_done",
            operation=job.id,
            status=job.error[0] if job.error else "OK",
            channels=len(job.channels),
        )

    async def _recognize(self, pcm: bytes, rate: int) -> ChannelResult:
        if rate not in ENGINE_RATES:
            target = 16000 if rate > 8000 else 8000
            pcm = await asyncio.to_thread(resample, pcm, rate, target)
            rate = target
        # Decoding goes through the server's engine pool like a streaming session: pinned to
        # the least-loaded worker, one call per turn, never on the event loop.
        engine = self._owner.pool.assign()
        result = ChannelResult()
        step = 2 * rate * FEED_MS // 1000
        try:
            await engine.open(EngineOptions(rate))
            for pos in range(0, len(pcm), step):
                reply = await engine.call("feed", pcm[pos : pos + step])
                self._collect(result, reply.events)
            self._collect(result, (await engine.call("finish")).events)
        finally:
            engine.release()
        return result

    @staticmethod
    def _collect(result: ChannelResult, events: Sequence[EngineEvent]) -> None:
        result.events.extend(e for e in events if isinstance(e, EngineFinal | EngineEou))

    # ---- shapes -----------------------------------------------------------------------------

    def operation(self, job: Job, description: str) -> op_pb.Operation:
        """The job as a yandex.cloud.operation.Operation."""
        out = op_pb.Operation(
            id=job.id,
            description=description,
            created_at=_timestamp(job.created_at),
            created_by="embedded",
            modified_at=_timestamp(job.modified_at),
            done=job.done,
        )
        if job.done and job.error is not None:
            code, message = job.error
            out.error.CopyFrom(status_pb2.Status(code=GRPC_CODES.get(code, 13), message=message))
        elif job.done:
            response = any_pb2.Any()
            if job.api == "v2":
                response.Pack(self.v2_response(job))
            else:
                response.Pack(empty_pb2.Empty())
            out.response.CopyFrom(response)
        return out

    def _words(self, final: EngineFinal, normalize: bool) -> tuple[str, Any]:
        words = normalize_words(final.words) if normalize else final.words
        text = " ".join(w.text for w in words) if (normalize and words) else final.text
        return text, words

    def v2_response(self, job: Job) -> pb2.LongRunningRecognitionResponse:
        """Chunks per final; ``channel_tag`` counts channels from 1, as the docs' example."""
        chunks = []
        for index, channel in enumerate(job.channels):
            for final in channel.finals:
                text, words = self._words(final, job.normalize)
                alt = pb2.SpeechRecognitionAlternative(
                    text=text,
                    words=[
                        pb2.WordInfo(
                            word=w.text,
                            start_time={
                                "seconds": w.start_ms // 1000,
                                "nanos": w.start_ms % 1000 * 10**6,
                            },
                            end_time={
                                "seconds": w.end_ms // 1000,
                                "nanos": w.end_ms % 1000 * 10**6,
                            },
                        )
                        for w in words
                    ],
                )
                chunks.append(
                    pb2.SpeechRecognitionResult(alternatives=[alt], channel_tag=index + 1)
                )
        return pb2.LongRunningRecognitionResponse(chunks=chunks)

    @staticmethod
    def _v3_update(
        text: str, final: EngineFinal, words: Sequence[Any], tag: str
    ) -> pb3.AlternativeUpdate:
        alt = pb3.Alternative(
            words=[
                pb3.Word(text=w.text, start_time_ms=w.start_ms, end_time_ms=w.end_ms) for w in words
            ],
            text=text,
            start_time_ms=final.start_ms,
            end_time_ms=final.end_ms,
        )
        return pb3.AlternativeUpdate(alternatives=[alt], channel_tag=tag)

    def v3_responses(self, job: Job) -> list[pb3.StreamingResponse]:
        """GetRecognition's stream: per channel, each final (+ refinement) then its EOU."""
        out: list[pb3.StreamingResponse] = []
        session = pb3.SessionUuid(uuid=job.id, user_request_id=job.id)
        for index, channel in enumerate(job.channels):
            tag = str(index)
            final_index = -1
            cursors = pb3.AudioCursors()
            for event in channel.events:
                if isinstance(event, EngineEou):
                    out.append(
                        pb3.StreamingResponse(
                            session_uuid=session,
                            audio_cursors=cursors,
                            eou_update=pb3.EouUpdate(time_ms=event.time_ms),
                            channel_tag=tag,
                        )
                    )
                    continue
                final_index += 1
                cursors = pb3.AudioCursors(
                    partial_time_ms=event.end_ms,
                    final_time_ms=event.end_ms,
                    final_index=final_index,
                )
                update = self._v3_update(event.text, event, event.words, tag)
                out.append(
                    pb3.StreamingResponse(
                        session_uuid=session, audio_cursors=cursors, final=update, channel_tag=tag
                    )
                )
                if job.normalize:
                    text, words = self._words(event, True)
                    refined = pb3.FinalRefinement(
                        final_index=final_index,
                        normalized_text=self._v3_update(text, event, words, tag),
                    )
                    out.append(
                        pb3.StreamingResponse(
                            session_uuid=session,
                            audio_cursors=cursors,
                            final_refinement=refined,
                            channel_tag=tag,
                        )
                    )
        return out
