"""SpeechKit API v2 streaming client (SttService/StreamingRecognize).

The same Recognizer seam as the v3 client (``speechkit_v3.py``), for deployments still on v2.
v2 differs in three ways the channel depends on, and this module bridges them:

* No ``silence_chunk``: keepalive silence goes out as zero LPCM, counted like audio.
* No audio cursors: ``V2Cursors`` synthesizes them from what was sent and what came back
  (a final moves ``final_time_ms`` to its last word's end; without word times, to the audio
  sent when it arrived). See docs/speechkit-v2.md for what that costs at a seam.
* No status messages: a v2 server says nothing while it hears silence, which the channel
  would take for a stall. While everything sent since the last answer was quiet, the stream
  reports ``WORKING`` itself every ``LIVENESS_S``; a dead connection still fails the call
  through HTTP/2 keepalive pings, and a server that goes mute during speech is still a stall.

Only the SpeechKit client modules (this one, for ``grpc.aio.EOF``, ``grpc_transport.py`` and
``transcribe/``) import grpc on the bridge side; the streaming calls' own HTTP/2 client is
``h2_grpc.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

import grpc
import structlog

from ivr_bridge._proto import stt_v2_pb2 as pb
from ivr_bridge.audio.codecs import rms
from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.model import (
    Cursors,
    EndOfUtterance,
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
from ivr_bridge.recognition.pbwire import bytes_header

if TYPE_CHECKING:
    from ivr_bridge.recognition.credentials import Credentials

log = structlog.get_logger(__name__)

LIVENESS_S = 2.0  # the v3 server's status_code interval; v2 sends none
QUIET_RMS = 300  # audio below this is silence: a v2 server answers it with nothing
FRAME_MS = 10  # keepalive zeros keep the session's audio in whole frames
SILENCE_PIECE_MS = 1000  # keepalive zeros go out in pieces of at most this much audio
# StreamingRecognitionRequest.audio_content: the field the hand-framed audio request uses.
_AUDIO_CONTENT: Final = pb.StreamingRecognitionRequest.DESCRIPTOR.fields_by_name[
    "audio_content"
].number


def recognition_config(
    config: SessionConfig,
    *,
    folder_id: str = "",
    partial_results: bool = True,
    single_utterance: bool = False,
) -> pb.StreamingRecognitionRequest:
    """The first message of a v2 stream. ``folder_id`` only for user accounts.

    v2 takes one language; text normalization is the inverse of ``raw_results``.
    """
    spec = pb.RecognitionSpec(
        audio_encoding=pb.RecognitionSpec.LINEAR16_PCM,
        sample_rate_hertz=config.sample_rate,
        language_code=config.languages[0] if config.languages else "ru-RU",
        profanity_filter=config.profanity_filter,
        model=config.model,
        partial_results=partial_results,
        single_utterance=single_utterance,
        raw_results=not config.text_normalization,
        literature_text=config.literature_text,
    )
    return pb.StreamingRecognitionRequest(
        config=pb.RecognitionConfig(specification=spec, folder_id=folder_id)
    )


def _ms(duration: Any) -> int:
    return int(duration.seconds) * 1000 + int(duration.nanos) // 1_000_000


class V2Cursors:
    """Synthesized v3-style audio cursors for one v2 session (sans-I/O).

    Fed with the audio sent and the responses received; turns each response into model
    updates carrying cursors the channel can rely on: ``final_time_ms`` never passes a final
    the caller has received, and never goes backwards.
    """

    def __init__(self, sample_rate: int) -> None:
        self._rate = sample_rate
        self._sent_bytes = 0
        self._final_ms = 0
        self._finals = 0
        self._eou_ms = 0
        self.loud_since_response = False

    @property
    def received_ms(self) -> int:
        return self._sent_bytes * 1000 // (2 * self._rate)

    def on_sent(self, pcm: bytes) -> None:
        self._sent_bytes += len(pcm)
        if pcm and rms(pcm) >= QUIET_RMS:
            self.loud_since_response = True

    def cursors(self) -> Cursors:
        received = self.received_ms
        return Cursors(
            received_data_ms=received,
            partial_time_ms=received,
            final_time_ms=self._final_ms,
            final_index=max(self._finals - 1, 0),
            eou_time_ms=self._eou_ms,
        )

    def _hypothesis(self, chunk: pb.SpeechRecognitionChunk) -> Hypothesis:
        if not chunk.alternatives:
            return Hypothesis(text="", start_ms=self._final_ms, end_ms=self.received_ms)
        alt = chunk.alternatives[0]
        words = tuple(Word(w.word, _ms(w.start_time), _ms(w.end_time)) for w in alt.words)
        if words:
            start, end = words[0].start_ms, words[-1].end_ms
        else:
            # No word times: the text lies somewhere after the last final and before now.
            start, end = self._final_ms, self.received_ms
        return Hypothesis(
            text=alt.text, start_ms=start, end_ms=end, words=words, confidence=alt.confidence
        )

    def convert(self, resp: pb.StreamingRecognitionResponse) -> list[RecognitionUpdate]:
        self.loud_since_response = False
        out: list[RecognitionUpdate] = []
        for chunk in resp.chunks:
            hyp = self._hypothesis(chunk)
            if chunk.final:
                self._finals += 1
                self._final_ms = max(self._final_ms, min(hyp.end_ms, self.received_ms))
                out.append(FinalResult(hyp, self.cursors()))
            elif hyp.text:
                out.append(PartialResult(hyp, self.cursors()))
            if chunk.end_of_utterance:
                self._eou_ms = max(self._eou_ms, self._final_ms)
                out.append(EndOfUtterance(self._eou_ms, self.cursors()))
        return out


class SpeechKitV2Stream(GrpcStream):
    """One v2 StreamingRecognize call; cursors are kept here since v2 sends none."""

    def __init__(self, call: Any, sample_rate: int, clock: Clock) -> None:
        super().__init__(call)
        self._rate = sample_rate
        self._clock = clock
        self.cursors = V2Cursors(sample_rate)
        self._silence_owed_ms = 0

    async def send_audio(self, pcm: bytes) -> None:
        await self._write(pb.StreamingRecognitionRequest(audio_content=pcm))
        self.cursors.on_sent(pcm)

    def try_send_audio(self, pcm: bytes) -> bool:
        """``send_audio`` if it can finish now; False (nothing sent) otherwise."""
        if not self._try_write_serialized(bytes_header(_AUDIO_CONTENT, len(pcm)) + pcm):
            return False
        self.cursors.on_sent(pcm)
        return True

    async def send_silence(self, duration_ms: int) -> None:
        """v2 has no silence message: send that much zero LPCM (it counts as audio).

        Zeros go out in whole 10 ms (recognizers work in 10 ms frames, and audio from the
        PBX comes in multiples of it); the remainder is owed to the next silence, so the
        session's timeline never lags the call's by 10 ms or more.
        """
        self._silence_owed_ms += duration_ms
        left = self._silence_owed_ms - self._silence_owed_ms % FRAME_MS
        self._silence_owed_ms -= left
        while left > 0:
            piece = min(left, SILENCE_PIECE_MS)
            zeros = bytes(2 * (self._rate * piece // 1000))
            await self.send_audio(zeros)
            left -= piece

    async def updates(self) -> AsyncIterator[RecognitionUpdate]:
        pending: asyncio.Future[Any] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(self._call.read())
                try:
                    resp = await self._clock.wait_for(asyncio.shield(pending), LIVENESS_S)
                except TimeoutError:
                    if not self.cursors.loud_since_response:
                        yield StatusReport("WORKING", "v2 transport alive", self.cursors.cursors())
                    continue
                pending = None
                if resp is grpc.aio.EOF:
                    return
                for update in self.cursors.convert(resp):
                    yield update
        except CALL_ERRORS as exc:
            raise_mapped(exc)
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, *CALL_ERRORS):
                    await pending


STREAMING_RECOGNIZE = "/yandex.cloud.ai.stt.v2.SttService/StreamingRecognize"


class SpeechKitV2Recognizer(SpeechKitClient):
    """Opens v2 streaming sessions on shared HTTP/2 connections (``speechkit.api = "v2"``).

    ``folder_id`` goes into RecognitionConfig (v2 has no x-folder-id header); leave it empty
    under a service account.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        tls: bool = True,
        credentials: Credentials | None = None,
        folder_id: str = "",
        root_certificates: bytes | None = None,
        clock: Clock = SYSTEM_CLOCK,
        transport: str = "h2",
        coalesce_ms: int = 0,
    ) -> None:
        super().__init__(
            endpoint,
            tls=tls,
            credentials=credentials,
            folder_id=folder_id,
            root_certificates=root_certificates,
            transport=transport,
            coalesce_ms=coalesce_ms,
        )
        self._clock = clock

    async def open_stream(self, config: SessionConfig, *, request_id: str) -> SpeechKitV2Stream:
        """Open a session and send its config; the caller then sends audio and reads updates."""
        # v2 carries folder_id in the RecognitionConfig, not in an x-folder-id header.
        metadata = await self._metadata(request_id, folder_header=False)
        call = await self._open_call(STREAMING_RECOGNIZE, pb.StreamingRecognitionResponse, metadata)
        stream = SpeechKitV2Stream(call, config.sample_rate, self._clock)
        await stream._write(recognition_config(config, folder_id=self._folder_id))
        return stream
