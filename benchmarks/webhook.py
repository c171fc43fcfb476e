"""Webhook delivery under load: throughput to a slow receiver, and how late finals arrive.

    .venv/bin/python benchmarks/webhook.py                 # both parts
    .venv/bin/python benchmarks/webhook.py throughput --events 10000 --calls 200
    .venv/bin/python benchmarks/webhook.py latency --calls 20 --seconds 20

The receiver runs in its own process (a real HTTP/1.1 server on loopback) and answers every
request after ``--delay-ms`` (50 by default), as a busy dialog service would.

throughput: events of many calls published at once to a bus with one webhook sink; events
per second until the last is acknowledged.
latency: ordinary calls (tones engine, real bridge, real websockets) with the webhook sink,
optionally beside a dead second endpoint; for every final, receipt time at the receiver
minus its emission time (the event's ``time``), as p50 / p99 / max.
slowsink: the same calls with and without a webhook that takes 5 s per event; the audio
path's figures (simulator pacing lag, final emitted -> in-process callback) side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivr_bridge.events.bus import EventBus
from ivr_bridge.events.types import MarkPlayed
from ivr_bridge.events.webhook import WebhookSink
from ivr_bridge.model import UtteranceEvent
from tests.events.receiver import Received, Receiver


def _receiver_process(delay_s: float, conn: Connection) -> None:
    async def main() -> None:
        got: list[Received] = []

        def answer(rec: Received) -> int:
            got.append(rec)  # parsed after the run, to keep the receiver cheap meanwhile
            return 204

        receiver = await Receiver(answer=answer, delay_s=delay_s, keep=False).start()
        conn.send(receiver.port)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await receiver.stop()
        rows = []
        for rec in got:
            ev = rec.event
            rows.append((rec.at, ev["type"], ev["time"], ev["call_id"], ev["seq"]))
        conn.send(rows)

    asyncio.run(main())


class RemoteReceiver:
    def __init__(self, delay_s: float) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_receiver_process, args=(delay_s, child), daemon=True)

    def __enter__(self) -> str:
        self._proc.start()
        port = self._conn.recv()
        return f"http://127.0.0.1:{port}/hook"

    def rows(self) -> list[tuple[float, str, str, str, int]]:
        self._conn.send("stop")
        rows: list[tuple[float, str, str, str, int]] = self._conn.recv()
        return rows

    def __exit__(self, *exc: object) -> None:
        self._proc.join(timeout=10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def throughput(events: int, calls: int, in_flight: int, delay_s: float) -> list[str]:
    remote = RemoteReceiver(delay_s)
    with remote as url:
        bus = EventBus(queue_size=events, per_call_queue_size=events)
        sink = WebhookSink(url, max_in_flight=in_flight)
        bus.add_sink(sink)
        stats = bus.stats()[sink.name]
        per_call = events // calls
        batch = [
            UtteranceEvent.of(
                MarkPlayed(f"m{seq}"),
                call_id=f"call{c}",
                channel=None,
                seq=seq,
                call_ms=seq,
                wall_time=time.time(),
            )
            for seq in range(1, per_call + 1)
            for c in range(calls)
        ]
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        for event in batch:
            bus.publish(event)
        while stats.delivered + stats.failed < len(batch):
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        await bus.aclose()
        rows = remote.rows()
    in_order = _per_call_in_order(rows)
    return [
        f"| events x calls | {len(batch)} x {calls} (in flight <= {in_flight}) |",
        f"| receiver answers after | {delay_s * 1000:.0f} ms (separate process) |",
        f"| delivered / failed | {stats.delivered} / {stats.failed} |",
        f"| throughput | {len(batch) / elapsed:,.0f} events/s ({elapsed:.2f} s) |",
        f"| bridge CPU per event | {cpu / len(batch) * 1e6:.0f} us "
        f"({len(batch) / cpu:,.0f} events/s per core) |",
        f"| every call in order | {in_order} |",
        f"| machine load average | {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores |",
    ]


def _per_call_in_order(rows: list[tuple[float, str, str, str, int]]) -> bool:
    last: dict[str, int] = {}
    for _, _, _, call, seq in rows:
        if seq <= last.get(call, 0):
            return False
        last[call] = seq
    return True


async def latency(calls: int, seconds: float, delay_s: float, dead_endpoint: bool) -> list[str]:
    import ivr_bridge.local.tone_engine  # noqa: F401  (registers "tones")
    from ivr_bridge.app import BridgeApp
    from ivr_bridge.config import (
        EmbeddedSettings,
        EventSettings,
        ServerSettings,
        Settings,
        SpeechKitSettings,
    )
    from ivr_bridge.local.tones import VOCABULARY, synthesize_script
    from ivr_bridge.simulate import simulate_pcm

    remote = RemoteReceiver(delay_s)
    with remote as url:
        extra = ("http://127.0.0.1:9/dead",) if dead_endpoint else ()
        settings = Settings(
            server=ServerSettings(port=0, max_calls=calls + 10),
            speechkit=SpeechKitSettings(languages=("en-US",)),
            embedded=EmbeddedSettings(port=0, engine="tones"),
            events=EventSettings(webhook=url, webhooks=extra, drain_timeout_s=10.0),
        )
        app = BridgeApp(settings)
        await app.start()
        script = [[VOCABULARY[(i * 7 + j) % len(VOCABULARY)] for j in range(3)] for i in range(40)]
        pcm = synthesize_script(script, pause_ms=1000)[: int(seconds * 16000)]
        reports = await asyncio.gather(
            *(simulate_pcm(app.url(), pcm, close_timeout_s=60) for _ in range(calls))
        )
        await asyncio.sleep(1.0)
        assert app.bus is not None
        stats = {name: (s.delivered, s.dropped_queue_full) for name, s in app.bus.stats().items()}
        await app.stop()
        rows = remote.rows()
    lags_ms = [
        (at - datetime.fromisoformat(emitted.replace("Z", "+00:00")).timestamp()) * 1000
        for at, kind, emitted, _, _ in rows
        if kind == "final"
    ]
    ended = sum(1 for _, kind, _, _, _ in rows if kind == "call_ended")
    closed = sum(1 for r in reports if r.close_code == 1000)
    return [
        f"| calls x audio | {calls} x {seconds:.0f} s (tones engine, real bridge) |",
        f"| receiver answers after | {delay_s * 1000:.0f} ms (separate process) |",
        f"| dead second endpoint | {'yes' if dead_endpoint else 'no'} |",
        f"| calls closed normally / call_ended received | {closed} / {ended} |",
        f"| finals received | {len(lags_ms)} |",
        f"| final emitted -> received p50 | {statistics.median(lags_ms):.0f} ms |",
        f"| final emitted -> received p99 | {percentile(lags_ms, 0.99):.0f} ms |",
        f"| final emitted -> received max | {max(lags_ms):.0f} ms |",
        f"| sink stats (delivered, dropped) | {json.dumps(stats)} |",
        f"| every call in order | {_per_call_in_order(rows)} |",
    ]


async def slow_sink(calls: int, seconds: float, slow_s: float | None) -> list[float]:
    """[pacing lag p99 ms, final->callback p99 ms, finals] with an optional slow webhook."""
    import ivr_bridge.local.tone_engine  # noqa: F401  (registers "tones")
    from ivr_bridge.app import BridgeApp
    from ivr_bridge.config import (
        EmbeddedSettings,
        EventSettings,
        ServerSettings,
        Settings,
        SpeechKitSettings,
    )
    from ivr_bridge.events.console import CallbackSink
    from ivr_bridge.local.tones import VOCABULARY, synthesize_script
    from ivr_bridge.simulate import simulate_pcm

    lags: list[float] = []

    def on_event(e: UtteranceEvent) -> None:
        if e.type == "final":
            lags.append((time.time() - e.wall_time) * 1000)

    remote = RemoteReceiver(slow_s or 0.0)
    with remote as url:
        settings = Settings(
            server=ServerSettings(port=0, max_calls=calls + 10),
            speechkit=SpeechKitSettings(languages=("en-US",)),
            embedded=EmbeddedSettings(port=0, engine="tones"),
            events=EventSettings(webhook=url if slow_s else "", drain_timeout_s=0.1),
        )
        app = BridgeApp(settings, sinks=[CallbackSink(on_event)])
        await app.start()
        script = [[VOCABULARY[(i * 5 + j) % len(VOCABULARY)] for j in range(3)] for i in range(40)]
        pcm = synthesize_script(script, pause_ms=1000)[: int(seconds * 16000)]
        reports = await asyncio.gather(
            *(simulate_pcm(app.url(), pcm, close_timeout_s=60) for _ in range(calls))
        )
        await asyncio.sleep(0.5)
        await app.stop()
        remote.rows()
    pacing = [r.max_lag_ms for r in reports]
    return [percentile(pacing, 0.99), percentile(lags, 0.99), float(len(lags))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "part", nargs="?", choices=["throughput", "latency", "slowsink", "all"], default="all"
    )
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=0, help="200 for throughput, 20 for latency")
    parser.add_argument("--in-flight", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--dead-endpoint", action="store_true")
    args = parser.parse_args()
    delay = args.delay_ms / 1000
    out: list[str] = []
    if args.part in ("throughput", "all"):
        rows = asyncio.run(throughput(args.events, args.calls or 200, args.in_flight, delay))
        out += ["### Webhook throughput", "", "| | |", "|---|---|", *rows, ""]
    if args.part in ("latency", "all"):
        for dead in sorted({args.dead_endpoint, args.part == "all"}):
            rows = asyncio.run(latency(args.calls or 20, args.seconds, delay, dead))
            out += ["### Finals at the webhook", "", "| | |", "|---|---|", *rows, ""]
    if args.part in ("slowsink", "all"):
        calls = args.calls or 20
        base = asyncio.run(slow_sink(calls, args.seconds, None))
        slow = asyncio.run(slow_sink(calls, args.seconds, 5.0))
        out += [
            "### A webhook taking 5 s per event vs none",
            "",
            f"| {calls} calls x {args.seconds:.0f} s | no webhook | 5 s webhook |",
            "|---|---|---|",
            f"| simulator pacing lag p99 | {base[0]:.0f} ms | {slow[0]:.0f} ms |",
            f"| final emitted -> in-process callback p99 | {base[1]:.0f} ms | {slow[1]:.0f} ms |",
            f"| finals | {base[2]:.0f} | {slow[2]:.0f} |",
            "",
        ]
    print("\n".join(out))


if __name__ == "__main__":
    main()
