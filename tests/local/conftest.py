"""Fixtures for the embedded recognizer: a real server on port 0 and a real grpc.aio client."""

from __future__ import annotations

import asyncio
import audioop
import contextlib
import shutil
import subprocess
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from ivr_bridge._proto import stt_v3_pb2 as pb
from ivr_bridge._proto import stt_v3_service_pb2_grpc as pb_grpc
from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.local.server import EmbeddedServerConfig, EmbeddedSpeechKitServer, LocalLimits

ESPEAK = shutil.which("espeak-ng") or "/usr/bin/espeak-ng"


def options(
    rate: int = 8000,
    *,
    channels: int = 1,
    normalize: bool = False,
    external_eou: bool = False,
    raw: pb.RawAudio | None = None,
    audio_format: pb.AudioFormatOptions | None = None,
) -> pb.StreamingRequest:
    fmt = audio_format
    if fmt is None:
        fmt = pb.AudioFormatOptions(
            raw_audio=raw
            or pb.RawAudio(
                audio_encoding=pb.RawAudio.LINEAR16_PCM,
                sample_rate_hertz=rate,
                audio_channel_count=channels,
            )
        )
    norm = (
        pb.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED
        if normalize
        else pb.TextNormalizationOptions.TEXT_NORMALIZATION_DISABLED
    )
    eou = (
        pb.EouClassifierOptions(external_classifier=pb.ExternalEouClassifier())
        if external_eou
        else pb.EouClassifierOptions(default_classifier=pb.DefaultEouClassifier())
    )
    return pb.StreamingRequest(
        session_options=pb.StreamingOptions(
            recognition_model=pb.RecognitionModelOptions(
                model="general",
                audio_format=fmt,
                text_normalization=pb.TextNormalizationOptions(text_normalization=norm),
            ),
            eou_classifier=eou,
        )
    )


def chunk(data: bytes) -> pb.StreamingRequest:
    return pb.StreamingRequest(chunk=pb.AudioChunk(data=data))


def silence(ms: int) -> pb.StreamingRequest:
    return pb.StreamingRequest(silence_chunk=pb.SilenceChunk(duration_ms=ms))


def eou() -> pb.StreamingRequest:
    return pb.StreamingRequest(eou=pb.Eou())


def chunks(pcm: bytes, size: int = 4000) -> list[pb.StreamingRequest]:
    return [chunk(pcm[i : i + size]) for i in range(0, len(pcm), size)]


@dataclass
class Outcome:
    responses: list[pb.StreamingResponse] = field(default_factory=list)
    code: grpc.StatusCode | None = None
    details: str = ""

    def kinds(self) -> list[str]:
        return [str(r.WhichOneof("Event")) for r in self.responses]

    def of(self, kind: str) -> list[pb.StreamingResponse]:
        return [r for r in self.responses if r.WhichOneof("Event") == kind]

    def events(self) -> list[str]:
        """Event kinds without the periodic status messages."""
        return [k for k in self.kinds() if k != "status_code"]


class Client:
    """A raw grpc.aio client for one server (channel shared by the test's calls)."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub: Any = pb_grpc.RecognizerStub(self.channel)  # type: ignore[no-untyped-call]

    def open(self, metadata: Sequence[tuple[str, str]] = ()) -> Any:
        return self.stub.RecognizeStreaming(metadata=tuple(metadata))

    async def run(
        self,
        requests: Iterable[pb.StreamingRequest | float],
        *,
        metadata: Sequence[tuple[str, str]] = (),
        half_close: bool = True,
        clock: Clock = SYSTEM_CLOCK,
    ) -> Outcome:
        """Send the requests (a float is a pause in clock seconds), read everything."""
        call = self.open(metadata)
        out = Outcome()

        async def reader() -> None:
            async for resp in call:
                out.responses.append(resp)

        read_task = asyncio.create_task(reader())
        try:
            for item in requests:
                if read_task.done():
                    break
                if isinstance(item, float):
                    await clock.sleep(item)
                else:
                    await call.write(item)
            if half_close and not read_task.done():
                await call.done_writing()
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            pass  # the server ended the call; its status is read below
        with contextlib.suppress(grpc.aio.AioRpcError):
            await read_task
        out.code = await call.code()
        out.details = await call.details() or ""
        return out

    async def close(self) -> None:
        await self.channel.close()


StartFn = Callable[..., Awaitable[tuple[EmbeddedSpeechKitServer, Client]]]


@pytest.fixture
async def start_local() -> AsyncIterator[StartFn]:
    """start_local(limits=, api_key=, clock=, engine=, workers=) -> (server, client).

    Every server started is stopped after the test.
    """
    started: list[tuple[EmbeddedSpeechKitServer, Client]] = []

    async def start(
        *,
        limits: LocalLimits | None = None,
        api_key: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        engine: str = "pocketsphinx",
        workers: int = 0,
    ) -> tuple[EmbeddedSpeechKitServer, Client]:
        config = EmbeddedServerConfig(
            port=0, api_key=api_key, limits=limits or LocalLimits(), engine=engine, workers=workers
        )
        rec = EmbeddedSpeechKitServer(config, clock=clock)
        await rec.start()
        client = Client(rec.address)
        started.append((rec, client))
        return rec, client

    yield start
    for rec, client in started:
        await client.close()
        await rec.stop(grace=0.5)


# ---- speech ------------------------------------------------------------------------------


def synthesize(text: str, path: Path, rate: int = 8000) -> bytes:
    """PCM16 mono at ``rate`` spoken by espeak-ng (skips the test when it is missing)."""
    if not Path(ESPEAK).exists():
        pytest.skip("espeak-ng is not installed")
    wav = path / "speech.wav"
    subprocess.run(
        [ESPEAK, "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True, timeout=30
    )
    with wave.open(str(wav)) as w:
        pcm = w.readframes(w.getnframes())
        src = w.getframerate()
    out, _ = audioop.ratecv(pcm, 2, 1, src, rate, None)
    return bytes(out)


SPEECH_TEXT = "i need help with my order"


@pytest.fixture(scope="session")
def speech_8k(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Half a second of silence, the sentence, at 8 kHz."""
    pcm = synthesize(SPEECH_TEXT, tmp_path_factory.mktemp("speech"))
    return bytes(8000) + pcm
