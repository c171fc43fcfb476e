"""The load generator: N calls in one process, 20 ms frames on absolute schedules.

One ticker drives every call: tick k is due at ``t0 + k * 20 ms`` (absolute, so lateness never
accumulates), and at each tick every live call sends its next frame. Calls join over the ramp,
each on the tick its start falls on. Any dialect with a simulator encoder can be played;
its 20 ms frames carry the tagged audio. Send times are kept per call for the runner to join with
the probe's receipts; lateness (actual send - schedule) is kept per frame.
"""

from __future__ import annotations

import asyncio
import audioop
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from ivr_bridge.dialects.registry import SPECS
from ivr_bridge.loadtest.tagging import tagged_frame
from ivr_bridge.simulate import make_encoder
from ivr_bridge.simulators.base import ClientAuth, ClientEncoder

FRAME_S = 0.020


def frame_pcm(encoder: ClientEncoder, call_no: int) -> bytes:
    """One frame of the call's tagged audio as PCM16 at the encoder's rate.

    The tag is built as mu-law and decoded, so a mu-law platform re-encodes it exactly and an
    L16 platform carries the decoded samples unchanged; either way ``read_tag`` recovers it.
    """
    samples = encoder.sample_rate * encoder.frame_ms // 1000
    return audioop.ulaw2lin(tagged_frame(call_no, samples), 2)


@dataclass(slots=True)
class CallRecord:
    call_no: int
    frame_samples: int = 160
    send_times: list[float] = field(default_factory=list)  # wall clock, one per frame sent
    lateness_ms: list[float] = field(default_factory=list)
    ok: bool = False
    error: str = ""


@dataclass(slots=True)
class _Live:
    record: CallRecord
    client: ClientEncoder
    ws: ClientConnection
    frame: bytes
    frames_left: int


async def _answer(ws: ClientConnection, client: ClientEncoder) -> None:
    """Answer what the bridge sends (AudioHook's pongs, say) and drop the rest, until close."""
    try:
        async for frame in ws:
            for reply in client.on_server_frame(frame):
                await ws.send(reply)
    except WebSocketException:
        return


async def _open(
    url: str, record: CallRecord, client: ClientEncoder, frames: int, open_timeout: float
) -> _Live | None:
    target, headers = client.upgrade(url)
    try:
        ws = await connect(
            target,
            additional_headers=headers,
            open_timeout=open_timeout,
            compression=None,
            max_size=1 << 20,
        )
        for message in client.opening():
            await ws.send(message)
    except (OSError, TimeoutError, WebSocketException) as exc:
        record.error = type(exc).__name__
        return None
    asyncio.get_running_loop().create_task(_answer(ws, client))
    record.frame_samples = client.sample_rate * client.frame_ms // 1000
    return _Live(record, client, ws, frame_pcm(client, record.call_no), frames)


async def _finish(live: _Live) -> None:
    try:
        for message in live.client.closing():
            await live.ws.send(message)
        await live.ws.close()
        live.record.ok = True
    except WebSocketException as exc:
        live.record.error = type(exc).__name__


async def run_calls(
    url: str,
    *,
    dialect: str,
    calls: int,
    duration_s: float,
    ramp_s: float,
    progress: Callable[[int, int, int], None] | None = None,
    open_timeout: float = 10.0,
    auth: ClientAuth | None = None,
) -> list[CallRecord]:
    """Play ``calls`` calls of ``duration_s`` each; returns one record per call."""

    paths = {spec.name: spec.default_path for spec in SPECS}
    if dialect not in paths:
        raise ValueError(f"unknown dialect {dialect!r} (known: {sorted(paths)})")
    path = paths[dialect]

    def make_client() -> ClientEncoder:
        return make_encoder(dialect, auth=auth)

    frames = max(1, round(duration_s / FRAME_S))
    records = [CallRecord(n) for n in range(calls)]
    live: list[_Live] = []
    pending: set[asyncio.Task[_Live | None]] = set()
    finishing: set[asyncio.Task[None]] = set()
    t0 = time.monotonic() + 0.2
    wall_offset = time.time() - time.monotonic()
    start_tick = [round(ramp_s * n / max(1, calls) / FRAME_S) for n in range(calls)]
    next_call = 0
    tick = 0
    while next_call < calls or live or pending:
        due = t0 + tick * FRAME_S
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        while next_call < calls and start_tick[next_call] <= tick:
            task = asyncio.create_task(
                _open(url + path, records[next_call], make_client(), frames, open_timeout)
            )
            pending.add(task)
            next_call += 1
        for task in [t for t in pending if t.done()]:
            pending.discard(task)
            opened = task.result()
            if opened is not None:
                live.append(opened)
        still: list[_Live] = []
        for call in live:
            now = time.monotonic()
            try:
                frame, _ = call.client.audio(call.frame, "inbound")
                await call.ws.send(frame)
            except WebSocketException as exc:
                call.record.error = type(exc).__name__
                continue
            call.record.send_times.append(now + wall_offset)
            call.record.lateness_ms.append((now - due) * 1000)
            call.frames_left -= 1
            if call.frames_left > 0:
                still.append(call)
            else:
                finishing.add(asyncio.create_task(_finish(call)))
        live = still
        tick += 1
        if progress is not None and tick % 50 == 0:
            progress(tick, len(live), sum(1 for r in records if r.error))
    if finishing:
        await asyncio.wait(finishing)
    return records
