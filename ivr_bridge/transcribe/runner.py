"""Transcribe several files (or URIs) with bounded concurrency and a progress display.

For each input: read and probe it (``audio``), convert only if the API needs it, upload to
Object Storage when a URI is needed (v2 always; v3 above the 60 MB inline limit or when
``upload`` is asked for), submit, poll within the quota (``polling``), then fetch and build
the transcript (``results``). One failing file never stops the others: its result carries
the error message instead.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, TextIO
from urllib.parse import urlparse

from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.transcribe import audio as audio_mod
from ivr_bridge.transcribe.audio import MAX_INLINE_BYTES, AudioFile, Prepared
from ivr_bridge.transcribe.errors import TranscribeError
from ivr_bridge.transcribe.polling import V2_CHECKS_PER_S, V3_CHECKS_PER_S, Pacer, poll_delay
from ivr_bridge.transcribe.results import Transcript, from_v2, from_v3
from ivr_bridge.transcribe.storage import ObjectStorage
from ivr_bridge.transcribe.v2 import V2AsyncClient, request_body
from ivr_bridge.transcribe.v3 import V3AsyncClient, recognize_request

EXTENSIONS = {".wav": "WAV", ".ogg": "OGG_OPUS", ".opus": "OGG_OPUS", ".mp3": "MP3"}


@dataclass(frozen=True, slots=True)
class Options:
    api: str = "v3"
    language: str = "ru-RU"
    model: str = "general"
    normalize: bool = False
    folder_id: str = ""
    concurrency: int = 4
    raw_rate: int | None = None  # inputs are headerless 16-bit LPCM at this rate
    raw_channels: int = 1
    upload: bool = False  # v3: send through Object Storage even when inline would do
    poll_initial_s: float = 1.0
    poll_max_s: float = 30.0
    max_wait_s: float = 24 * 3600.0  # deferred recognition may take up to a day


@dataclass(frozen=True, slots=True)
class Outcome:
    source: str
    transcript: Transcript | None = None
    error: str = ""
    operation_id: str = ""
    uri: str = ""


class Progress:
    """One line per state change on ``stream`` (stderr): no transcripts, only states."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr

    def update(self, source: str, state: str) -> None:
        print(f"{source}: {state}", file=self._stream, flush=True)


def _uri_spec(uri: str, options: Options) -> Prepared:
    """How to declare a file we only know by URI (from its extension, or --rate for LPCM)."""
    if options.raw_rate is not None:
        return Prepared(b"", "LPCM", options.raw_rate, options.raw_channels)
    suffix = PurePosixPath(urlparse(uri).path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise TranscribeError(
            f"{uri}: cannot tell the format from the name; use .wav/.ogg/.opus/.mp3 or --rate"
        )
    return Prepared(b"", EXTENSIONS[suffix], 0, 1)


class Transcriber:
    def __init__(
        self,
        options: Options,
        *,
        v3: V3AsyncClient | None = None,
        v2: V2AsyncClient | None = None,
        storage: ObjectStorage | None = None,
        progress: Progress | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._options = options
        self._v3 = v3
        self._v2 = v2
        self._storage = storage
        self._progress = progress or Progress()
        self._clock = clock
        rate = V3_CHECKS_PER_S if options.api == "v3" else V2_CHECKS_PER_S
        self._pacer = Pacer(rate, clock)

    async def run(self, inputs: Sequence[str]) -> list[Outcome]:
        """Every input's outcome, in input order."""
        limit = asyncio.Semaphore(max(1, self._options.concurrency))

        async def one(source: str) -> Outcome:
            async with limit:
                try:
                    return await self._one(source)
                except TranscribeError as exc:
                    self._progress.update(source, "failed")
                    return Outcome(source, error=str(exc))

        return list(await asyncio.gather(*(one(s) for s in inputs)))

    def _load(self, source: str) -> AudioFile:
        o = self._options
        return audio_mod.read(source, raw_rate=o.raw_rate, raw_channels=o.raw_channels)

    async def _uri_for(self, source: str, prepared: Prepared, name: str) -> str:
        if self._storage is None:
            raise TranscribeError(
                f"{source}: this needs Object Storage (set storage.bucket and keys), "
                "or give an Object Storage URI"
            )
        self._progress.update(source, "uploading")
        return await self._storage.upload(name, prepared.data, prepared.container)

    async def _one(self, source: str) -> Outcome:
        o = self._options
        is_uri = source.startswith(("http://", "https://"))
        uri = source if is_uri else ""
        channels = 1
        if is_uri:
            prepared = _uri_spec(source, o)
        else:
            loaded = await asyncio.to_thread(self._load, source)
            channels = loaded.channels
            convert = audio_mod.for_v3 if o.api == "v3" else audio_mod.for_v2
            prepared = await asyncio.to_thread(convert, loaded)
            needs_uri = o.api == "v2" or o.upload or len(prepared.data) > MAX_INLINE_BYTES
            if needs_uri:
                uri = await self._uri_for(source, prepared, loaded.name)
        if o.api == "v3":
            transcript, op_id = await self._v3_run(source, prepared, uri, channels)
        else:
            transcript, op_id = await self._v2_run(source, prepared, uri, channels)
        self._progress.update(source, f"done: {len(transcript.phrases)} phrases")
        return Outcome(source, transcript, operation_id=op_id, uri=uri)

    async def _wait(self, source: str, check: Callable[[], Awaitable[Any]]) -> None:
        """Poll ``check()`` (truthy when done) with backoff, within the shared quota."""
        o = self._options
        started = self._clock.now()
        attempt = 0
        while True:
            await self._clock.sleep(poll_delay(attempt, o.poll_initial_s, o.poll_max_s))
            await self._pacer.wait()
            if await check():
                return
            attempt += 1
            waited = self._clock.now() - started
            if waited > o.max_wait_s:
                raise TranscribeError(f"{source}: not recognized after {waited:.0f} s; gave up")
            self._progress.update(source, f"waiting ({waited:.0f} s)")

    async def _v3_run(
        self, source: str, prepared: Prepared, uri: str, channels: int
    ) -> tuple[Transcript, str]:
        assert self._v3 is not None
        o = self._options
        request = recognize_request(
            prepared, uri=uri, model=o.model, language=o.language, normalize=o.normalize
        )
        op_id = await self._v3.submit(request)
        self._progress.update(source, f"submitted (operation {op_id})")
        v3 = self._v3
        await self._wait(source, lambda: v3.status(op_id))
        responses = await v3.results(op_id)
        tags = {int(r.channel_tag or "0") for r in responses}
        return from_v3(source, max([channels, *(t + 1 for t in tags)]), responses), op_id

    async def _v2_run(
        self, source: str, prepared: Prepared, uri: str, channels: int
    ) -> tuple[Transcript, str]:
        assert self._v2 is not None
        o = self._options
        body = request_body(
            prepared,
            uri,
            language=o.language,
            model=o.model,
            normalize=o.normalize,
            folder_id=o.folder_id,
        )
        op_id = await self._v2.submit(body)
        self._progress.update(source, f"submitted (operation {op_id})")
        done: dict[str, Any] = {}
        v2 = self._v2

        async def check() -> bool:
            op = await v2.status(op_id)
            if op is not None:
                done.update(op)
            return op is not None

        await self._wait(source, check)
        chunks = done.get("response", {}).get("chunks", [])
        tags = {int(c.get("channelTag", "1")) for c in chunks}
        return from_v2(source, max([channels, *tags]), done), op_id
