"""call.py's slot rules without sockets: start timeout, media-only inactivity, the non-media
message rate limit and transport close reasons, on a ScaledClock."""

from __future__ import annotations

import asyncio

from ivr_bridge.call import Call, CallOptions
from ivr_bridge.clock import Clock, ScaledClock
from ivr_bridge.dialects.twilio import TwilioDialect
from ivr_bridge.events.bus import EventBus
from ivr_bridge.events.console import CallbackSink
from ivr_bridge.metrics import Metrics
from ivr_bridge.model import UtteranceEvent
from ivr_bridge.recognition.base import SessionConfig
from ivr_bridge.simulators.twilio import TwilioStreamEncoder
from tests.fakes import FakeRecognizer


class PacedStream:
    """Delivers (delay_s, message) pairs on the clock, then holds the socket open (or ends
    with ``end_reason`` set, as the websocket adapter does when the transport failed)."""

    def __init__(
        self,
        clock: Clock,
        script: list[tuple[float, str | bytes]],
        hold_open: bool = True,
        end_reason: str | None = None,
    ) -> None:
        self._clock = clock
        self._script = list(script)
        self._hold_open = hold_open
        self._final_reason = end_reason
        self.end_reason: str | None = None
        self.closed: tuple[int, str] | None = None
        self.received = 0

    async def recv(self) -> str | bytes | None:
        if self._script:
            delay, message = self._script[0]
            await self._clock.sleep(delay)
            self._script.pop(0)  # only once delivered: a cancelled wait loses nothing
            self.received += 1
            return message
        if self._hold_open:
            await asyncio.Event().wait()
        self.end_reason = self._final_reason
        return None

    async def send(self, message: str | bytes) -> None:
        return None

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def run(
    stream: PacedStream, clock: Clock, metrics: Metrics | None = None, **options: float
) -> tuple[list[UtteranceEvent], Call]:
    events: list[UtteranceEvent] = []
    bus = EventBus(clock=clock)
    bus.add_sink(CallbackSink(events.append))
    call = Call(
        call_id="call_slots",
        dialect=TwilioDialect(),
        stream=stream,
        recognizer=FakeRecognizer(),
        options=CallOptions(session=SessionConfig(sample_rate=8000), **options),  # type: ignore[arg-type]
        bus=bus,
        clock=clock,
        metrics=metrics,
    )
    await asyncio.wait_for(call.run(), 30)
    await bus.aclose()
    return events, call


async def test_a_connection_that_never_starts_is_closed_and_counted() -> None:
    clock = ScaledClock(speed=50)
    enc = TwilioStreamEncoder()
    metrics = Metrics()
    stream = PacedStream(clock, [(0.0, enc.connected())])
    events, call = await run(stream, clock, metrics, start_timeout_s=5.0)
    assert stream.closed == (1008, "no start message in time")
    assert call.end_reason == "start_timeout"
    assert events == []  # no call_ended for a call that never began
    assert metrics.connections_not_started == {"start_timeout": 1}
    assert "connections_not_started_total" in metrics.render({}, {})


async def test_connected_and_marks_do_not_hold_a_slot() -> None:
    clock = ScaledClock(speed=50)
    enc = TwilioStreamEncoder()
    marks: list[tuple[float, str | bytes]] = [(4.0, enc.mark(f"m{i}")) for i in range(20)]
    script: list[tuple[float, str | bytes]] = [(0.0, enc.connected()), (0.0, enc.start())]
    stream = PacedStream(clock, script + marks)
    events, call = await run(stream, clock, media_inactivity_timeout_s=10.0)
    assert call.end_reason == "media_timeout"
    assert stream.closed == (1000, "no media")
    assert stream.received <= 5  # ended about 10 s in, though a mark came every 4 s
    assert events[-1].type == "call_ended" and events[-1].data["reason"] == "media_timeout"


async def test_media_keeps_the_call_alive() -> None:
    clock = ScaledClock(speed=50)
    enc = TwilioStreamEncoder()
    media = [(4.0, frame) for frame in enc.media_frames(b"\xff" * 160 * 5)]
    script: list[tuple[float, str | bytes]] = [(0.0, enc.connected()), (0.0, enc.start())]
    stream = PacedStream(clock, [*script, *media, (0.0, enc.stop())], hold_open=False)
    events, call = await run(stream, clock, media_inactivity_timeout_s=10.0)
    assert call.end_reason == "stop" and stream.received == 8


async def test_a_mark_flood_closes_only_that_connection_with_1008() -> None:
    clock = ScaledClock(speed=0.001)  # time nearly stands still: the bucket never refills
    enc = TwilioStreamEncoder()
    flood: list[tuple[float, str | bytes]] = [(0.0, enc.mark(f"m{i}")) for i in range(500)]
    script: list[tuple[float, str | bytes]] = [(0.0, enc.connected()), (0.0, enc.start())]
    stream = PacedStream(clock, script + flood)
    events, call = await run(stream, clock, message_rate_per_s=20.0, message_burst=50)
    assert stream.closed == (1008, "message rate limit exceeded")
    assert call.end_reason == "rate_limited"
    # The burst of 50 covered `connected`, `start` and 48 marks; the 49th mark ended the call.
    assert sum(e.type == "mark" for e in events) == 48
    assert events[-1].data["reason"] == "rate_limited"


async def test_a_transport_failure_names_the_reason() -> None:
    clock = ScaledClock(speed=1)
    enc = TwilioStreamEncoder()
    script: list[tuple[float, str | bytes]] = [(0.0, enc.connected()), (0.0, enc.start())]
    stream = PacedStream(clock, script, hold_open=False, end_reason="too_big")
    events, call = await run(stream, clock)
    assert call.end_reason == "too_big" and events[-1].data["reason"] == "too_big"
    stream = PacedStream(clock, script, hold_open=False)
    events, call = await run(stream, clock)
    assert call.end_reason == "hangup"
