"""One flooding connection costs only that call: the caller beside it gets all its finals.

The flooder sends minutes of audio in 20-second messages as fast as gRPC takes them, on an
engine that decodes at 40x real time; the normal caller streams a short script at 20x real
time (ScaledClock). Without bounded read-ahead, slices and round-robin turns, each flood
message would hold the engine for half a second and the normal call would finish long after
the flood. With them, the normal call gets every final while the flood is still going, and
the flooder is slowed by flow control (its reader waited for room).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc

import ivr_bridge.local.tone_engine  # noqa: F401  (registers "tones")
from ivr_bridge._proto import stt_v3_pb2 as pb
from ivr_bridge.clock import ScaledClock
from ivr_bridge.local.engine import EngineEvent, EngineOptions, register_engine
from ivr_bridge.local.rules import LocalLimits
from ivr_bridge.local.tone_engine import ToneSession
from ivr_bridge.local.tones import synthesize_script
from tests.local.conftest import StartFn, chunk, options, silence

DECODE_SPEED = 40.0  # the slow engine takes 1 s to decode 40 s of audio
SCRIPT = [["hello", "agent"], ["account", "balance"], ["one", "two", "three"], ["thanks"]]
FLOOD_MESSAGE = bytes(2 * 8000 * 20)  # 20 s of 8 kHz audio in one message


class SlowToneSession(ToneSession):
    """The tone engine, made to cost time like a real decoder (sleeping, as I/O would)."""

    def feed(self, pcm: bytes) -> list[EngineEvent]:
        time.sleep(len(pcm) / (2 * self._options.sample_rate) / DECODE_SPEED)
        return super().feed(pcm)


class SlowToneEngine:
    name = "test-slow-tones"
    parallel = False

    def open_session(self, options: EngineOptions) -> SlowToneSession:
        return SlowToneSession(options)

    def warm_up(self) -> None:
        pass


async def test_a_flood_costs_only_the_flooding_call(start_local: StartFn) -> None:
    register_engine("test-slow-tones", SlowToneEngine)
    clock = ScaledClock(20)
    limits = LocalLimits(max_audio_ms=3_600_000, max_bytes=100 * 1024 * 1024)
    rec, client = await start_local(engine="test-slow-tones", clock=clock, limits=limits)

    flood = client.open()
    flood_done = asyncio.Event()

    async def send_flood() -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError):
            await flood.write(options())
            for _ in range(30):  # 10 minutes of audio
                await flood.write(chunk(FLOOD_MESSAGE))
            await flood.done_writing()

    async def read_flood() -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for _ in flood:
                pass
        flood_done.set()

    flood_tasks = [asyncio.create_task(send_flood()), asyncio.create_task(read_flood())]
    while rec.stats.audio_ms < 60_000:  # the flood is in before the caller starts
        await asyncio.sleep(0.01)

    audio = synthesize_script(SCRIPT, pause_ms=1000)
    requests: list[pb.StreamingRequest | float] = [options()]
    for off in range(0, len(audio), 1600):  # 100 ms every 100 ms (of scaled time)
        requests += [chunk(audio[off : off + 1600]), 0.1]
    requests.append(silence(1000))
    out = await client.run(requests, clock=clock)

    flood_was_running = not flood_done.is_set()
    flood.cancel()
    await asyncio.gather(*flood_tasks, return_exceptions=True)
    assert out.code == grpc.StatusCode.OK, out.details
    assert [r.final.alternatives[0].text for r in out.of("final")] == [" ".join(u) for u in SCRIPT]
    assert len(out.of("eou_update")) == len(SCRIPT)
    assert flood_was_running  # the caller finished first, though the flood came first
    assert rec.stats.throttled >= 1  # the flooder waited: flow control, not an unbounded queue
