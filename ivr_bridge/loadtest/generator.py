"""The load generator: N calls in one process, 20 ms frames on absolute schedules.

One ticker drives every call: tick k is due at ``t0 + k * 20 ms`` (absolute, so lateness never
accumulates), and at each tick every live call sends its next frame. Calls join over the ramp,
each on the tick its start falls on. Send times are kept per call for the runner to join with
the probe's receipts; lateness (actual send - schedule) is kept per frame.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from ivr_bridge.loadtest.tagging import tagged_frame

FRAME_S = 0.020


class CallClient(Protocol):
    """What the generator needs of a dialect's client side (the platform's frames)."""

    path: str

    def headers(self) -> Mapping[str, str]: ...

    def opening(self) -> list[str | bytes]: ...

    def media(self, mulaw: bytes) -> str | bytes: ...

    def closing(self) -> list[str | bytes]: ...


class TwilioClient:
    """Twilio Media Streams as Twilio sends them (one inbound track, mu-law 8 kHz)."""

    path = "/twilio"

    def __init__(self) -> None:
        from ivr_bridge.dialects.twilio import TwilioStreamEncoder

        self._enc = TwilioStreamEncoder()

    def headers(self) -> Mapping[str, str]:
        return {}

    def opening(self) -> list[str | bytes]:
        return [self._enc.connected(), self._enc.start()]

    def media(self, mulaw: bytes) -> str | bytes:
        return self._enc.media(mulaw)

    def closing(self) -> list[str | bytes]:
        return [self._enc.stop()]


CLIENTS: dict[str, Callable[[], CallClient]] = {"twilio": TwilioClient}


@dataclass(slots=True)
class CallRecord:
    call_no: int
    send_times: list[float] = field(default_factory=list)  # wall clock, one per frame sent
    lateness_ms: list[float] = field(default_factory=list)
    ok: bool = False
    error: str = ""


@dataclass(slots=True)
class _Live:
    record: CallRecord
    client: CallClient
    ws: ClientConnection
    frame: bytes
    frames_left: int


async def _drain(ws: ClientConnection) -> None:
    """Read and drop whatever the bridge sends (back-channel frames), until it closes."""
    try:
        async for _ in ws:
            pass
    except WebSocketException:
        return


async def _open(
    url: str, record: CallRecord, client: CallClient, frames: int, open_timeout: float
) -> _Live | None:
    try:
        ws = await connect(
            url + client.path,
            additional_headers=dict(client.headers()),
            open_timeout=open_timeout,
            compression=None,
            max_size=1 << 20,
        )
        for message in client.opening():
            await ws.send(message)
    except (OSError, TimeoutError, WebSocketException) as exc:
        record.error = type(exc).__name__
        return None
    asyncio.get_running_loop().create_task(_drain(ws))
    return _Live(record, client, ws, tagged_frame(record.call_no), frames)


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
) -> list[CallRecord]:
    """Play ``calls`` calls of ``duration_s`` each; returns one record per call."""
    make_client = CLIENTS[dialect]
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
                _open(url, records[next_call], make_client(), frames, open_timeout)
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
                await call.ws.send(call.client.media(call.frame))
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
