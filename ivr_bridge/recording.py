"""Call recording (``[recording] enabled``) and the post-call transcript.

Per call, one WAV on the ledger's timeline: each channel's audio is written at the ledger
offset it was appended at, so silence the bridge inserted (PBX quiet, media gaps) is
silence in the file, and two channels line up as a stereo file (mono for one channel).

The audio path never waits: ``CallRecorder.on_audio`` only puts the frame on a bounded
queue; a writer task appends it to a per-channel raw file in a worker thread. A full queue
drops the frame (counted), and since every frame carries its ledger offset, a dropped frame
becomes silence rather than shifting the timeline. ``finish`` (called from the call's
ending, whatever the reason) pads the channels to the call's end, interleaves them into
``<directory>/<call_id>.wav`` and removes the raw files.

After hang-up, when ``transcribe`` is on, the recording goes through asynchronous
recognition (``ivr_bridge.transcribe``: inline for v3 up to 60 MB, through Object Storage
when configured or needed) and a ``transcript_ready`` event carries the result per channel
with word times, plus where the recording is (path, and URI when uploaded). Failures give a
``transcript_failed`` event with the reason; with ``transcribe`` off, ``recording_ready``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import soundfile
import structlog

from ivr_bridge.clock import Clock
from ivr_bridge.config import Settings
from ivr_bridge.transcribe.runner import Options, Progress, Transcriber
from ivr_bridge.transcribe.storage import ObjectStorage

if TYPE_CHECKING:
    from ivr_bridge.local.server import EmbeddedSpeechKitServer
    from ivr_bridge.recognition.credentials import Credentials

log = structlog.get_logger(__name__)

QUEUE_FRAMES = 4096  # about 80 s of 20 ms frames per call before frames are dropped
WRITE_BYTES = 64 * 1024  # a channel's buffered audio goes to disk in pieces of this size
INTERLEAVE_FRAMES = 1 << 18  # frames per step when building the stereo file

EmitFn = Callable[[str, str | None, int, dict[str, Any]], None]


@dataclass(slots=True)
class RecordingStats:
    frames_dropped: int = 0
    samples_written: dict[str, int] = field(default_factory=dict)


class CallRecorder:
    """One call's recording. Created by ``Recordings.start_call``; driven by the call."""

    def __init__(
        self,
        owner: Recordings,
        call_id: str,
        channels: Sequence[str],
        sample_rate: int,
    ) -> None:
        self._owner = owner
        self.call_id = call_id
        self.channels = list(channels)
        self.sample_rate = sample_rate
        self.path = owner.directory / f"{call_id}.wav"
        self.stats = RecordingStats(samples_written={name: 0 for name in channels})
        self._queue: asyncio.Queue[tuple[str, int, bytes] | None] = asyncio.Queue(QUEUE_FRAMES)
        self._raw: dict[str, Path] = {
            name: owner.directory / f".{call_id}.{i}.raw" for i, name in enumerate(channels)
        }
        self._files: dict[str, BinaryIO] = {}
        self._pending: dict[str, bytearray] = {name: bytearray() for name in channels}
        self._writer = asyncio.create_task(self._write_loop(), name=f"record-{call_id}")

    # ---- the audio path: never blocks --------------------------------------------------------

    def on_audio(self, channel: str, pcm: bytes, ledger_end: int) -> None:
        """``pcm`` was appended to ``channel``'s ledger, which now ends at ``ledger_end``."""
        if channel not in self._pending:
            return
        try:
            self._queue.put_nowait((channel, ledger_end - len(pcm) // 2, pcm))
        except asyncio.QueueFull:
            self.stats.frames_dropped += 1

    # ---- writing (event loop + worker thread) ---------------------------------------------

    def _place(self, channel: str, offset: int, pcm: bytes) -> None:
        """Append at ``offset`` samples: silence for a gap, overlap (never expected) cut."""
        written = self.stats.samples_written[channel]
        if offset > written:
            self._pending[channel] += bytes(2 * (offset - written))
            written = offset
        skip = max(0, written - offset)
        data = pcm[2 * skip :]
        self._pending[channel] += data
        self.stats.samples_written[channel] = written + len(data) // 2

    async def _flush(self, channel: str, force: bool = False) -> None:
        buf = self._pending[channel]
        if not buf or (len(buf) < WRITE_BYTES and not force):
            return
        data = bytes(buf)
        buf.clear()
        fh = self._files.get(channel)
        if fh is None:
            fh = self._files[channel] = await asyncio.to_thread(open, self._raw[channel], "wb")
        await asyncio.to_thread(fh.write, data)

    async def _write_loop(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            channel, offset, pcm = item
            self._place(channel, offset, pcm)
            await self._flush(channel)

    # ---- the end ------------------------------------------------------------------------

    async def finish(self, ends: dict[str, int]) -> Path | None:
        """Stop writing, pad every channel to the longest timeline, build the WAV."""
        await self._queue.put(None)
        await self._writer
        length = max([*ends.values(), *self.stats.samples_written.values(), 0])
        for name in self.channels:
            self._place(name, length, b"")
            await self._flush(name, force=True)
        for fh in self._files.values():
            await asyncio.to_thread(fh.close)
        if length == 0:
            return None
        await asyncio.to_thread(self._build_wav, length)
        return self.path

    def _build_wav(self, length: int) -> None:
        sources = [open(self._raw[name], "rb") for name in self.channels]  # noqa: SIM115
        try:
            with soundfile.SoundFile(
                self.path,
                "w",
                samplerate=self.sample_rate,
                channels=len(self.channels),
                format="WAV",
                subtype="PCM_16",
            ) as out:
                done = 0
                while done < length:
                    n = min(INTERLEAVE_FRAMES, length - done)
                    frames = np.zeros((n, len(sources)), dtype="<i2")
                    for i, src in enumerate(sources):
                        column = np.frombuffer(src.read(2 * n), dtype="<i2")
                        frames[: len(column), i] = column
                    out.write(frames)
                    done += n
        finally:
            for src in sources:
                src.close()
            for raw in self._raw.values():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(raw)

    async def abort(self) -> None:
        """Drop everything (the writer is cancelled; raw files removed)."""
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        for fh in self._files.values():
            fh.close()
        for raw in self._raw.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(raw)


class Recordings:
    """Recording for every call, and the post-call transcription jobs (bounded)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        transcriber: Transcriber | None = None,
        max_jobs: int = 4,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._transcriber = transcriber
        self._limit = asyncio.Semaphore(max_jobs)
        self._jobs: set[asyncio.Task[None]] = set()
        self.on_close: list[Callable[[], Any]] = []  # resources to release in aclose()

    def start_call(self, call_id: str, channels: Sequence[str], sample_rate: int) -> CallRecorder:
        return CallRecorder(self, call_id, channels, sample_rate)

    async def finish_call(
        self,
        recorder: CallRecorder,
        ends: dict[str, int],
        duration_ms: int,
        emit: EmitFn,
    ) -> None:
        """Close the recording now; recognize it in the background, then emit the result."""
        try:
            path = await recorder.finish(ends)
        except Exception:
            log.exception("recording_failed", call_id=recorder.call_id)
            await recorder.abort()
            return
        if path is None:
            return
        where = {
            "path": str(path),
            "channels": recorder.channels,
            "sample_rate": recorder.sample_rate,
            "frames_dropped": recorder.stats.frames_dropped,
        }
        log.info(
            "recording_saved", call_id=recorder.call_id, frames_dropped=where["frames_dropped"]
        )
        if self._transcriber is None:
            emit("recording_ready", None, duration_ms, {"recording": where})
            return
        task = asyncio.create_task(
            self._transcribe(recorder, path, where, duration_ms, emit),
            name=f"transcript-{recorder.call_id}",
        )
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _transcribe(
        self,
        recorder: CallRecorder,
        path: Path,
        where: dict[str, Any],
        duration_ms: int,
        emit: EmitFn,
    ) -> None:
        assert self._transcriber is not None
        async with self._limit:
            (outcome,) = await self._transcriber.run([str(path)])
        if outcome.uri:
            where["uri"] = outcome.uri
        if outcome.transcript is None:
            log.warning("transcript_failed", call_id=recorder.call_id)
            emit(
                "transcript_failed", None, duration_ms, {"recording": where, "error": outcome.error}
            )
            return
        channels: dict[str, Any] = {}
        for index, name in enumerate(recorder.channels):
            phrases = [p for p in outcome.transcript.phrases if p.channel == index]
            channels[name] = {
                "text": " ".join(p.text for p in phrases),
                "phrases": [
                    {
                        "text": p.text,
                        "start_ms": p.start_ms,
                        "end_ms": p.end_ms,
                        "words": [
                            {"text": w.text, "start_ms": w.start_ms, "end_ms": w.end_ms}
                            for w in p.words
                        ],
                    }
                    for p in phrases
                ],
            }
        emit(
            "transcript_ready",
            None,
            duration_ms,
            {"recording": where, "operation_id": outcome.operation_id, "channels": channels},
        )

    async def aclose(self, timeout_s: float = 30.0) -> None:
        """Wait (bounded) for transcriptions in flight, then release clients."""
        if self._jobs:
            _, pending = await asyncio.wait(set(self._jobs), timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        for close in self.on_close:
            result = close()
            if asyncio.iscoroutine(result):
                await result


class _LogProgress(Progress):
    """Transcription progress as debug log lines (states only, never text)."""

    def __init__(self) -> None:
        super().__init__()

    def update(self, source: str, state: str) -> None:
        log.debug("recording_transcribe_progress", state=state)


async def build_recordings(
    settings: Settings,
    *,
    clock: Clock,
    embedded: EmbeddedSpeechKitServer | None = None,
    endpoint: str = "",
    tls: bool = True,
    credentials: Credentials | None = None,
) -> Recordings | None:
    """The app's recording service per ``[recording]`` (None when disabled).

    Transcripts use the same recognizer as streaming: the embedded one (its v2 REST front is
    started here when ``api = "v2"``), or SpeechKit's asynchronous hosts.
    """
    rec = settings.recording
    if not rec.enabled:
        return None
    if not rec.transcribe:
        return Recordings(rec.directory)
    from ivr_bridge.transcribe.v2 import V2AsyncClient
    from ivr_bridge.transcribe.v3 import OPERATION_ENDPOINT, STT_ENDPOINT, V3AsyncClient

    sk = settings.speechkit
    storage = ObjectStorage(settings.storage) if settings.storage.bucket else None
    closers: list[Callable[[], Any]] = []
    v3: V3AsyncClient | None = None
    v2: V2AsyncClient | None = None
    if rec.api == "v3":
        if embedded is not None:
            v3 = V3AsyncClient(
                embedded.address, embedded.address, tls=False, credentials=credentials
            )
        elif endpoint and endpoint != STT_ENDPOINT:
            v3 = V3AsyncClient(endpoint, endpoint, tls=tls, credentials=credentials)
        else:
            v3 = V3AsyncClient(STT_ENDPOINT, OPERATION_ENDPOINT, credentials=credentials)
        closers.append(v3.close)
    else:
        if embedded is not None:
            from ivr_bridge.local.rest import LocalRestServer

            rest = LocalRestServer(embedded)
            await rest.start()
            closers.append(rest.stop)
            v2 = V2AsyncClient(
                f"{rest.url}/speech/stt/v2/longRunningRecognize",
                f"{rest.url}/operations/",
                credentials=credentials,
            )
        else:
            v2 = V2AsyncClient(credentials=credentials)
        closers.append(v2.close)
    options = Options(
        api=rec.api,
        language=sk.languages[0] if sk.languages else "ru-RU",
        model=sk.model,
        normalize=sk.text_normalization,
        folder_id=sk.folder_id,
        upload=storage is not None,
    )
    transcriber = Transcriber(
        options, v3=v3, v2=v2, storage=storage, progress=_LogProgress(), clock=clock
    )
    service = Recordings(rec.directory, transcriber=transcriber)
    service.on_close.extend(closers)
    return service
