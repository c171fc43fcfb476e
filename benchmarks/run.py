"""Benchmarks: per-frame cost of the audio path, and a loaded bridge on loopback.

    .venv/bin/python benchmarks/run.py            # all
    .venv/bin/python benchmarks/run.py micro      # parser, ledger, channel only
    .venv/bin/python benchmarks/run.py load --calls 50 --seconds 30

Results are printed as a Markdown table; the README's "Benchmarks" section records a run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import resource
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivr_bridge.audio.codecs import pcm16_to_ulaw
from ivr_bridge.dialects.twilio import TwilioDialect
from ivr_bridge.model import RecognitionUpdate
from ivr_bridge.recognition.base import SessionConfig
from ivr_bridge.recognition.channel import RecognitionChannel
from ivr_bridge.recognition.ledger import AudioLedger
from ivr_bridge.recognition.policy import PolicyConfig
from ivr_bridge.simulators.twilio import TwilioStreamEncoder

FRAME = 160  # 20 ms at 8 kHz


def timeit(fn: Callable[[], None], n: int) -> float:
    """Microseconds per call (best of 3 runs)."""
    best = float("inf")
    for _ in range(3):
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def bench_dialect() -> float:
    enc = TwilioStreamEncoder()
    dialect = TwilioDialect()
    dialect.receive_text(enc.connected())
    dialect.receive_text(enc.start())
    frames = enc.media_frames(pcm16_to_ulaw(bytes(2 * FRAME * 2000)))
    it = itertools.cycle(frames)
    return timeit(lambda: dialect.receive_text(next(it)), 15000)


def bench_ledger() -> float:
    led = AudioLedger(8000, 60)
    pcm = bytes(2 * FRAME)
    cursor = [0]

    def step() -> None:
        led.append_audio(pcm)
        piece = led.read(cursor[0], 800, 8000)
        if piece is not None and piece.length >= 800:
            led.note_sent(piece)
            cursor[0] = piece.end

    return timeit(step, 50000)


class _NullStream:
    def __init__(self) -> None:
        self.sent = 0

    async def send_audio(self, pcm: bytes) -> None:
        self.sent += len(pcm)

    async def send_silence(self, duration_ms: int) -> None:
        return None

    async def finish(self) -> None:
        return None

    async def updates(self) -> AsyncIterator[RecognitionUpdate]:
        await asyncio.sleep(3600)
        if False:  # pragma: no cover - makes this an async generator
            yield

    def cancel(self) -> None:
        return None


class _NullRecognizer:
    async def open_stream(self, config: SessionConfig, *, request_id: str) -> _NullStream:
        return _NullStream()

    async def refresh_credentials(self) -> bool:
        return False

    async def close(self) -> None:
        return None


async def _bench_channel(frames: int) -> float:
    ch = RecognitionChannel(
        name="caller",
        sample_rate=8000,
        recognizer=_NullRecognizer(),
        session_config=SessionConfig(sample_rate=8000),
        policy=PolicyConfig(),
        emit=lambda *a: None,
    )
    task = asyncio.create_task(ch.run())
    pcm = bytes(2 * FRAME)
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    for i in range(frames):
        ch.push_audio(pcm)
        if i % 5 == 0:
            await asyncio.sleep(0)
    while ch.ledger.sent_high_water < ch.ledger.end:
        await asyncio.sleep(0)
    elapsed = time.perf_counter() - t0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return elapsed / frames * 1e6


def micro() -> list[tuple[str, str]]:
    rows = []
    us = bench_dialect()
    rows.append(("Twilio media message -> PCM16 (parse, base64, mu-law)", f"{us:.1f} µs"))
    us = bench_ledger()
    rows.append(("ledger append 20 ms + read/send 100 ms chunks", f"{us:.2f} µs per frame"))
    us = asyncio.run(_bench_channel(50_000))
    rows.append(("channel: push 20 ms frame -> chunk sent to the stream", f"{us:.1f} µs per frame"))
    per_call = 50 * (bench_dialect() + us)
    rows.append(
        ("=> audio path CPU per real-time call (50 frames/s)", f"{per_call / 1e4:.2f} % of a core")
    )
    return rows


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def load(calls: int, seconds: float, engine: str) -> list[tuple[str, str]]:
    import ivr_bridge.local.tone_engine  # noqa: F401  (registers "tones")
    from ivr_bridge.app import BridgeApp
    from ivr_bridge.config import EmbeddedSettings, ServerSettings, Settings, SpeechKitSettings
    from ivr_bridge.events.console import CallbackSink
    from ivr_bridge.local.tones import VOCABULARY, synthesize_script
    from ivr_bridge.model import UtteranceEvent
    from ivr_bridge.simulate import simulate_pcm

    finals: dict[str, list[str]] = {}
    ended: list[UtteranceEvent] = []

    def collect(e: UtteranceEvent) -> None:
        if e.type == "final":
            finals.setdefault(e.call_id, []).append(str(e.data["text"]))
        elif e.type == "call_ended":
            ended.append(e)

    settings = Settings(
        server=ServerSettings(port=0, max_calls=calls + 10),
        speechkit=SpeechKitSettings(languages=("en-US",)),
        embedded=EmbeddedSettings(port=0, engine=engine),
    )
    app = BridgeApp(settings, sinks=[CallbackSink(collect)])
    await app.start()
    script = [[VOCABULARY[(i * 7 + j) % len(VOCABULARY)] for j in range(4)] for i in range(40)]
    pcm = synthesize_script(script, pause_ms=1200)[: int(seconds * 16000)]
    rss0 = rss_mb()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    reports = await asyncio.gather(
        *(simulate_pcm(app.url(), pcm, close_timeout_s=60) for _ in range(calls))
    )
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    deadline = time.perf_counter() + 30
    while len(ended) < calls and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    rss1 = rss_mb()
    await app.stop()
    lags = [r.max_lag_ms for r in reports if hasattr(r, "max_lag_ms")]
    failed = sum(1 for e in ended if e.data["errors"]) + (calls - len(ended))
    words = [len(" ".join(v).split()) for v in finals.values()]
    return [
        ("calls x audio", f"{calls} x {seconds:.0f} s ({engine} engine, same process)"),
        (
            "CPU (bridge + embedded recognizer + simulators)",
            f"{cpu / wall * 100:.0f} % of one core",
        ),
        ("CPU per call", f"{cpu / wall * 100 / calls:.2f} % of one core"),
        (
            "peak RSS growth",
            f"{rss1 - rss0:.1f} MB ({(rss1 - rss0) / calls * 1024:.0f} KB per call)",
        ),
        ("calls with errors or no call_ended", str(failed)),
        (
            "words recognized per call (min/median)",
            f"{min(words or [0])}/{statistics.median(words or [0]):.0f}",
        ),
        ("simulator send lag p-max", f"{max(lags or [0]):.0f} ms"),
    ]


def table(title: str, rows: list[tuple[str, str]]) -> str:
    out = [f"### {title}", "", "| Measure | Result |", "|---|---|"]
    out += [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", nargs="?", default="all", choices=("all", "micro", "load"))
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--engine", default="tones")
    args = parser.parse_args()
    from ivr_bridge.logs import configure_logging

    configure_logging("warning", "console")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if args.what in ("all", "micro"):
        print(table("Audio path (micro)", micro()))
    if args.what in ("all", "load"):
        print(table("Loaded bridge", asyncio.run(load(args.calls, args.seconds, args.engine))))


if __name__ == "__main__":
    main()
