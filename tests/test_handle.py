"""The per-call handle: bounded events, commands to the dialect, barge-in."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ivr_bridge.clock import Clock
from ivr_bridge.dialects.base import ClearAudio, Disconnect, OutboundRequest, PlayAudio, SendMark
from ivr_bridge.handle import CallGone, CallHandle
from ivr_bridge.model import CallStarted, ChannelInfo, EventPayload, MediaFormat, UtteranceEvent


class ManualClock:
    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds

    async def wait_for(self, awaitable: Any, timeout: float | None) -> Any:
        """Whatever is not ready after a few loop turns times out, advancing the clock."""
        task = asyncio.ensure_future(awaitable)
        for _ in range(3):
            if task.done():
                return task.result()
            await asyncio.sleep(0)
        if timeout is None:
            return await task
        task.cancel()
        self.t += timeout
        raise TimeoutError


class Control:
    call_id = "call_1"

    def __init__(self) -> None:
        self.sent: list[OutboundRequest] = []
        self.emitted: list[tuple[str, dict[str, Any]]] = []
        self.payloads: list[EventPayload] = []

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({"play", "mark", "clear", "disconnect"})

    async def send(self, request: OutboundRequest) -> None:
        self.sent.append(request)

    def emit(self, payload: EventPayload) -> None:
        self.payloads.append(payload)
        self.emitted.append((payload.TYPE, dict(payload)))


STARTED = CallStarted(
    dialect="twilio",
    platform_call_id="CA1",
    stream_id="MZ1",
    channels=(ChannelInfo("caller", "inbound"),),
    media_format=MediaFormat("pcmu", 8000),
    sample_rate=8000,
)


def event(kind: str, seq: int, **data: Any) -> UtteranceEvent:
    return UtteranceEvent(kind, "call_1", "caller", seq, 0, 0.0, data)


def make(barge_in: bool = False, queue_size: int = 256) -> tuple[CallHandle, Control, ManualClock]:
    control, clock = Control(), ManualClock()
    clock_: Clock = clock
    return (
        CallHandle(control, STARTED, clock=clock_, queue_size=queue_size, barge_in=barge_in),
        control,
        clock,
    )


async def test_events_arrive_in_order_and_end_after_close() -> None:
    handle, _, _ = make()
    for i in range(3):
        handle.deliver(event("final", i, text=str(i)))
    handle.close()
    got = [e.seq async for e in handle.events()]
    assert got == [0, 1, 2]
    assert handle.call_id == "call_1" and handle.platform_call_id == "CA1"
    assert handle.channels == ("caller",)


async def test_a_full_queue_drops_partials_first_and_counts() -> None:
    handle, _, _ = make(queue_size=3)
    handle.deliver(event("final", 1))
    handle.deliver(event("partial", 2))
    handle.deliver(event("final", 3))
    handle.deliver(event("final", 4))  # drops the partial
    handle.deliver(event("final", 5))  # drops the oldest final
    handle.close()
    assert [e.seq async for e in handle.events()] == [3, 4, 5]
    assert handle.dropped_events == 2


async def test_play_sends_audio_and_a_prompt_mark() -> None:
    handle, control, _ = make()
    name = await handle.play(bytes(1600), sample_rate=8000, name="hello")
    assert name == "hello"
    assert control.sent == [PlayAudio(bytes(1600), 8000), SendMark("prompt:hello")]
    assert handle.playing
    handle.deliver(event("mark", 1, name="prompt:hello"))
    assert not handle.playing
    await handle.hangup("done")
    assert control.sent[-1] == Disconnect("done")


async def test_barge_in_clears_playback_and_says_where() -> None:
    handle, control, clock = make(barge_in=True)
    await handle.play(bytes(16000), sample_rate=8000, name="menu")  # 1 s
    clock.t += 0.4
    handle.deliver(event("speech_started", 1))
    await asyncio.sleep(0)
    assert ClearAudio() in control.sent
    assert control.emitted == [
        (
            "barge_in",
            {"prompt": "menu", "played_ms": 400, "duration_ms": 1000, "dropped_prompts": []},
        )
    ]
    assert not handle.playing


async def test_no_barge_in_when_off_or_nothing_plays() -> None:
    handle, control, _ = make(barge_in=False)
    await handle.play(bytes(1600))
    handle.deliver(event("speech_started", 1))
    handle2, control2, _ = make(barge_in=True)
    handle2.deliver(event("speech_started", 1))
    await asyncio.sleep(0)
    assert control.emitted == [] and control2.emitted == []
    assert ClearAudio() not in control.sent + control2.sent


async def test_next_event_times_out_on_silence_then_reports_the_end() -> None:
    handle, _, _ = make()
    assert await handle.next_event(timeout=5.0) is None  # ManualClock: no event within 5 s
    handle.deliver(event("dtmf", 1, digit="1", duration_ms=None))
    got = await handle.next_event(timeout=5.0)
    assert got is not None and got.data["digit"] == "1"
    handle.close()
    with pytest.raises(CallGone):
        await handle.next_event(timeout=5.0)


async def test_commands_after_the_call_ended_raise_call_gone() -> None:
    handle, control, _ = make()
    handle.close()
    assert handle.closed
    with pytest.raises(CallGone, match="has ended"):
        await handle.play(bytes(160))
    with pytest.raises(CallGone):
        await handle.send_event({"x": 1})
    assert control.sent == []


async def test_barge_in_event_follows_the_speech_that_caused_it() -> None:
    handle, control, clock = make(barge_in=True)
    await handle.play(bytes(16000), name="menu")
    handle.deliver(event("speech_started", 1))
    # what Call.emit does with the payload: back through deliver, after speech_started
    handle.deliver(
        UtteranceEvent.of(
            control.payloads[0], call_id="call_1", channel=None, seq=2, call_ms=0, wall_time=0.0
        )
    )
    handle.close()
    assert [e.type async for e in handle.events()] == ["speech_started", "barge_in"]
