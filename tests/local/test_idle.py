"""The 5-second rule, enforced by a timer on message receipt (time scaled 20x)."""

from __future__ import annotations

import contextlib
from typing import Any

import grpc

from ivr_bridge._proto import stt_v3_pb2 as pb
from ivr_bridge.clock import ScaledClock
from ivr_bridge.local import rules
from tests.local.conftest import StartFn, chunk, options, silence
from tests.markers import realtime

pytestmark = realtime

SPEED = 20.0


async def status_of(call: Any) -> grpc.StatusCode:
    """Read to the end (grpc.aio surfaces the status to a reading client) and return it."""
    with contextlib.suppress(grpc.aio.AioRpcError):
        async for _ in call:
            pass
    code: grpc.StatusCode = await call.code()
    return code


async def test_session_ends_after_more_than_5s_without_a_message(start_local: StartFn) -> None:
    clock = ScaledClock(SPEED)
    rec, client = await start_local(clock=clock)
    call = client.open()
    await call.write(options())
    await call.write(chunk(bytes(4000)))
    sent = clock.now()
    # No more writes: the server's timer must end the call by itself.
    code = await status_of(call)
    elapsed = clock.now() - sent
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await call.details() == "no message received for more than 5 s; session terminated"
    assert 5.0 < elapsed < 10.0  # fired by the timer (no later message ever came)
    assert rec.stats.ended == {"DEADLINE_EXCEEDED": 1}


async def test_idle_rule_applies_before_the_first_message(start_local: StartFn) -> None:
    clock = ScaledClock(SPEED)
    _, client = await start_local(clock=clock)
    call = client.open()
    started = clock.now()
    assert await status_of(call) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 5.0 < clock.now() - started < 8.0


async def test_silence_chunks_every_second_keep_the_session_alive(start_local: StartFn) -> None:
    clock = ScaledClock(SPEED)
    rec, client = await start_local(clock=clock)
    requests: list[pb.StreamingRequest | float] = [options()]
    for _ in range(12):
        requests += [silence(1000), 1.0]
    out = await client.run(requests, clock=clock)
    assert out.code == grpc.StatusCode.OK, out.details
    statuses = out.of("status_code")
    assert len(statuses) >= 4  # WORKING every 2 s of session time
    assert {s.status_code.code_type for s in statuses} == {pb.WORKING}
    assert statuses[-1].audio_cursors.received_data_ms >= 8000
    assert rec.stats.ended == {"OK": 1}


async def test_a_gap_below_the_limit_is_fine(start_local: StartFn) -> None:
    clock = ScaledClock(SPEED)
    _, client = await start_local(clock=clock)
    out = await client.run([options(), chunk(bytes(4000)), 3.5, chunk(bytes(4000))], clock=clock)
    assert out.code == grpc.StatusCode.OK, out.details


async def test_limits_are_configurable(start_local: StartFn) -> None:
    clock = ScaledClock(SPEED)
    _, client = await start_local(clock=clock, limits=rules.LocalLimits(idle_timeout_s=1.0))
    out = await client.run([options(), 2.0, chunk(bytes(4000))], clock=clock)
    assert out.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert out.details == "no message received for more than 1 s; session terminated"
