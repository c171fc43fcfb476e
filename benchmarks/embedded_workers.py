"""How many real-time talkers the embedded recognizer (PocketSphinx) sustains, by worker count.

    .venv/bin/python benchmarks/embedded_workers.py                   # the table in the docs
    .venv/bin/python benchmarks/embedded_workers.py --workers 0,2 --talkers 2,4,8 --paced-only

Every talker streams the bundled sample call (ivr_bridge/data/sample_call.wav, 25.4 s, 6
utterances) to an ``EmbeddedSpeechKitServer`` in this process over loopback gRPC. Two runs:

* fast: N talkers send as fast as flow control lets them; the aggregate speed (audio seconds
  per wall second, the inverse of the real-time factor) is how many talkers the server could
  keep up with.
* paced: N talkers send 100 ms every 100 ms on absolute schedules. Each final's delay is the
  time from sending the audio that ends its utterance (700 ms after its last word) to
  receiving it; "sustained" means p95 under 1 s. The paced runs of a worker count stop at the
  first talker count that is not sustained.

The event-loop lag (a 10 ms ticker in the server's process) shows whether decoding holds the
loop: with ``workers=0`` PocketSphinx decodes in a thread of this process and holds the GIL.
Every run also checks that each talker got the same transcript (results are deterministic per
session whatever the interleaving). Results are printed as Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
import structlog

from ivr_bridge._proto import stt_v3_pb2 as pb
from ivr_bridge._proto import stt_v3_service_pb2_grpc as pb_grpc
from ivr_bridge.audio.wav import read_wav
from ivr_bridge.local.server import EmbeddedServerConfig, EmbeddedSpeechKitServer

SAMPLE = Path(__file__).resolve().parents[1] / "ivr_bridge" / "data" / "sample_call.wav"
CHUNK_MS = 100
ENDPOINT_MS = 700
SUSTAINED_P95_S = 1.0


def session_options() -> pb.StreamingRequest:
    return pb.StreamingRequest(
        session_options=pb.StreamingOptions(
            recognition_model=pb.RecognitionModelOptions(
                audio_format=pb.AudioFormatOptions(
                    raw_audio=pb.RawAudio(
                        audio_encoding=pb.RawAudio.LINEAR16_PCM,
                        sample_rate_hertz=8000,
                        audio_channel_count=1,
                    )
                )
            )
        )
    )


@dataclass
class Talker:
    finals: list[str] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    status: str = ""


async def talk(address: str, pcm: bytes, paced: bool, offset_s: float) -> Talker:
    loop = asyncio.get_running_loop()
    out = Talker()
    step = 2 * 8000 * CHUNK_MS // 1000
    audio_ms = len(pcm) * 1000 // 16000
    await asyncio.sleep(offset_s)
    async with grpc.aio.insecure_channel(address) as channel:
        stub: Any = pb_grpc.RecognizerStub(channel)  # type: ignore[no-untyped-call]
        call = stub.RecognizeStreaming()
        await call.write(session_options())
        start = loop.time()

        async def read() -> None:
            async for response in call:
                if response.WhichOneof("Event") == "final":
                    alt = response.final.alternatives[0]
                    out.finals.append(alt.text)
                    trigger_ms = min(alt.end_time_ms + ENDPOINT_MS, audio_ms)
                    out.delays.append(max(0.0, loop.time() - (start + trigger_ms / 1000)))

        reader = asyncio.create_task(read())
        for i, off in enumerate(range(0, len(pcm), step)):
            if paced:
                await asyncio.sleep(max(0.0, start + i * CHUNK_MS / 1000 - loop.time()))
            await call.write(pb.StreamingRequest(chunk=pb.AudioChunk(data=pcm[off : off + step])))
        await call.done_writing()
        with contextlib.suppress(grpc.aio.AioRpcError):
            await reader
        out.status = (await call.code()).name
    return out


async def loop_lag(samples: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(0.01)
        samples.append(loop.time() - before - 0.01)


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Run:
    workers: int
    talkers: int
    mode: str
    wall_s: float
    audio_s: float
    delays: list[float]
    lag: list[float]
    transcripts: set[tuple[str, ...]]
    statuses: set[str]
    cpu_s: float


async def run(workers: int, talkers: int, paced: bool, pcm: bytes) -> Run:
    server = EmbeddedSpeechKitServer(EmbeddedServerConfig(workers=workers))
    await server.start()
    lag: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(loop_lag(lag, stop))
    cpu0 = _children_cpu() + time.process_time()
    started = time.perf_counter()
    # Paced talkers start 0.5 s apart so their utterances do not all end at once.
    offsets = [(i * 0.5) % 3.0 if paced else 0.0 for i in range(talkers)]
    results = await asyncio.gather(*(talk(server.address, pcm, paced, o) for o in offsets))
    wall = time.perf_counter() - started
    stop.set()
    await ticker
    await server.stop()
    cpu = _children_cpu() + time.process_time() - cpu0
    return Run(
        workers=workers,
        talkers=talkers,
        mode="paced" if paced else "fast",
        wall_s=wall,
        audio_s=talkers * len(pcm) / 16000,
        delays=[d for r in results for d in r.delays],
        lag=lag,
        transcripts={tuple(r.finals) for r in results},
        statuses={r.status for r in results},
        cpu_s=cpu,
    )


def _children_cpu() -> float:
    """CPU of finished child processes (the workers are reaped by server.stop())."""
    usage = os.times()
    return usage.children_user + usage.children_system


def row(r: Run) -> str:
    speed = r.audio_s / r.wall_s
    delays = (
        f"{statistics.median(r.delays):.2f} / {pct(r.delays, 0.95):.2f} / {max(r.delays):.2f}"
        if r.delays and r.mode == "paced"
        else "-"
    )
    sustained = ""
    if r.mode == "paced":
        sustained = "yes" if pct(r.delays, 0.95) < SUSTAINED_P95_S else "no"
    return (
        f"| {r.workers} | {r.talkers} | {r.mode} | {speed:.1f}x | {r.audio_s / r.cpu_s:.1f}x | "
        f"{delays} | {1000 * pct(r.lag, 0.99):.0f} / {1000 * max(r.lag, default=0):.0f} | "
        f"{sustained} | {'yes' if len(r.transcripts) == 1 else 'NO'} | "
        f"{','.join(sorted(r.statuses))} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default=f"0,1,{os.cpu_count() or 1}")
    parser.add_argument("--talkers", default="2,4,6,8")
    parser.add_argument("--fast-talkers", type=int, default=6)
    parser.add_argument("--paced-only", action="store_true")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    pcm = read_wav(SAMPLE, rate=8000)
    worker_counts = sorted({int(w) for w in args.workers.split(",")})
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"sample: {len(pcm) / 16000:.1f} s per talker")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print(
        "| workers | talkers | mode | audio/wall | audio/CPU | final delay s p50 / p95 / max "
        "| loop lag ms p99 / max | sustained | same transcript | status |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    transcripts: set[tuple[str, ...]] = set()
    for workers in worker_counts:
        if not args.paced_only:
            result = await run(workers, args.fast_talkers, False, pcm)
            transcripts |= result.transcripts
            print(row(result), flush=True)
        for talkers in (int(t) for t in args.talkers.split(",")):
            result = await run(workers, talkers, True, pcm)
            transcripts |= result.transcripts
            print(row(result), flush=True)
            if pct(result.delays, 0.95) >= SUSTAINED_P95_S:
                break  # more talkers will not do better
    print(f"\ndistinct transcripts over all runs: {len(transcripts)}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    asyncio.run(main())
