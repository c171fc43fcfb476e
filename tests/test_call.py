"""call.py without sockets: scripted Twilio frames in, events out, via the word fake."""

from __future__ import annotations

import asyncio
from typing import Any

from ivr_bridge.audio.codecs import pcm16_to_ulaw, ulaw_to_pcm16
from ivr_bridge.call import Call, CallOptions
from ivr_bridge.clock import ScaledClock
from ivr_bridge.dialects.twilio import TwilioDialect
from ivr_bridge.events.bus import EventBus
from ivr_bridge.events.console import CallbackSink
from ivr_bridge.metrics import Metrics
from ivr_bridge.model import Audio, CallEnded, DialectEvent, MediaGap, UtteranceEvent
from ivr_bridge.recognition.base import SessionConfig
from ivr_bridge.simulators.twilio import TwilioStreamEncoder
from tests.fakes import FakeRecognizer, silence_pcm
from tests.fakes import word_pcm as _word_pcm


def word_pcm(word_id: int, ms: int) -> bytes:
    """Word ids scaled to values that survive the G.711 round trip unchanged (id 5 -> 5000)."""
    return _word_pcm(ULAW_EXACT[word_id], ms)


def _ulaw_level(value: int) -> int:
    pcm = ulaw_to_pcm16(pcm16_to_ulaw(value.to_bytes(2, "little", signed=True)))
    return int.from_bytes(pcm, "little", signed=True)


# mu-law decodes to a fixed set of levels: map ids to levels that survive the round trip.
ULAW_EXACT = {i: _ulaw_level(i * 1000) for i in range(1, 10)}


def w(word_id: int) -> str:
    return f"w{ULAW_EXACT[word_id]}"


class ScriptedStream:
    """The PBX side of a websocket: messages to deliver, replies and close recorded."""

    def __init__(self, messages: list[str | bytes], hold_open: bool = False) -> None:
        self._messages = list(messages)
        self._hold_open = hold_open
        self.sent: list[str | bytes] = []
        self.closed: tuple[int, str] | None = None

    async def recv(self) -> str | bytes | None:
        await asyncio.sleep(0)
        if self._messages:
            return self._messages.pop(0)
        if self._hold_open:
            await asyncio.sleep(3600)
        return None

    async def send(self, message: str | bytes) -> None:
        self.sent.append(message)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def run_call(
    messages: list[str | bytes], rec: FakeRecognizer | None = None, **options: Any
) -> tuple[list[UtteranceEvent], ScriptedStream, Call]:
    events: list[UtteranceEvent] = []
    bus = EventBus()
    bus.add_sink(CallbackSink(events.append))
    stream = ScriptedStream(messages, hold_open=options.pop("hold_open", False))
    call = Call(
        call_id="call_test",
        dialect=TwilioDialect(),
        stream=stream,
        recognizer=rec or FakeRecognizer(),
        options=CallOptions(session=SessionConfig(sample_rate=8000), **options),
        bus=bus,
    )
    await asyncio.wait_for(call.run(), 20)
    await bus.aclose()
    return events, stream, call


def twilio_call(
    pcm: bytes, tracks: tuple[str, ...] = ("inbound",), dtmf_at: int = -1
) -> list[str | bytes]:
    enc = TwilioStreamEncoder(tracks=tracks, custom_parameters={"From": "+15550100"})
    frames: list[str | bytes] = [enc.connected(), enc.start()]
    per_track = [enc.media_frames(pcm16_to_ulaw(pcm), track=t) for t in tracks]
    media = [frame for group in zip(*per_track, strict=True) for frame in group]
    for i, frame in enumerate(media):
        frames.append(frame)
        if i == dtmf_at:
            frames.append(enc.dtmf("7"))
    frames.append(enc.stop())
    return frames


async def test_call_events_in_order_with_accounting() -> None:
    pcm = silence_pcm(300) + word_pcm(5, 300) + word_pcm(6, 300) + silence_pcm(1000)
    events, stream, call = await run_call(twilio_call(pcm, dtmf_at=10))
    kinds = [e.type for e in events]
    assert kinds[0] == "call_started" and kinds[-1] == "call_ended"
    assert "dtmf" in kinds and kinds.count("final") == 1
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    started = events[0].data
    assert started["custom_parameters"] == {"From": "+15550100"}
    final = next(e for e in events if e.type == "final")
    assert final.data["text"] == f"{w(5)} {w(6)}" and final.data["start_ms"] == 300
    dtmf = next(e for e in events if e.type == "dtmf")
    assert dtmf.data["digit"] == "7" and dtmf.channel == "caller"
    ended = events[-1].data
    assert ended["reason"] == "stop"
    assert ended["audio_ms_received"] == 1900 == ended["audio_ms_sent"]
    assert ended["sessions_opened"] == 1
    assert stream.closed == (1000, "call ended")
    assert call.end_reason == "stop"


async def test_protocol_error_closes_with_code_and_still_accounts() -> None:
    frames = twilio_call(word_pcm(3, 200))[:5] + ["{broken"]
    events, stream, call = await run_call(frames)
    assert stream.closed is not None and stream.closed[0] == 1007
    assert "{broken" not in stream.closed[1]
    assert events[-1].type == "call_ended" and events[-1].data["reason"] == "protocol_error"


async def test_binary_frame_is_refused() -> None:
    enc = TwilioStreamEncoder()
    events, stream, _ = await run_call([enc.connected(), enc.start(), b"\x00\x01"])
    assert stream.closed is not None and stream.closed[0] == 1003


async def test_hangup_without_stop_and_before_start() -> None:
    frames = twilio_call(word_pcm(3, 300) + silence_pcm(600))[:-1]
    events, stream, call = await run_call(frames)
    assert events[-1].data["reason"] == "hangup" and stream.closed is None
    assert [e.data["text"] for e in events if e.type == "final"] == [w(3)]
    events, _, _ = await run_call([TwilioStreamEncoder().connected()])
    assert events == []


async def test_both_tracks_are_separate_channels() -> None:
    rec = FakeRecognizer()
    frames = twilio_call(word_pcm(2, 300) + silence_pcm(600), tracks=("inbound", "outbound"))
    events, _, _ = await run_call(frames, rec)
    assert rec.opened == 2
    assert {e.channel for e in events if e.type == "final"} == {"caller", "agent"}


async def test_media_inactivity_timeout_ends_the_call() -> None:
    enc = TwilioStreamEncoder()
    frames: list[str | bytes] = [enc.connected(), enc.start()]
    events, stream, _ = await run_call(frames, hold_open=True, media_inactivity_timeout_s=0.2)
    assert events[-1].data["reason"] == "media_timeout"
    assert stream.closed == (1000, "no media")


async def test_request_stop_ends_a_live_call_politely() -> None:
    events: list[UtteranceEvent] = []
    bus = EventBus()
    bus.add_sink(CallbackSink(events.append))
    enc = TwilioStreamEncoder()
    stream = ScriptedStream([enc.connected(), enc.start()], hold_open=True)
    call = Call(
        call_id="c",
        dialect=TwilioDialect(),
        stream=stream,
        recognizer=FakeRecognizer(),
        options=CallOptions(session=SessionConfig(sample_rate=8000)),
        bus=bus,
    )
    task = asyncio.create_task(call.run())
    await asyncio.sleep(0.05)
    call.request_stop()
    await asyncio.wait_for(task, 5)
    await bus.aclose()
    assert stream.closed == (1001, "bridge shutting down")
    assert events[-1].data["reason"] == "shutdown"


# ---- the two-way dialect interface ------------------------------------------------------------


class EchoDialect:
    """A tiny protocol with a handshake, replies and a goodbye, to watch call.py drive it.

    "open" -> CallStarted and "opened"; "ping" -> "pong"; "gap N" -> MediaGap(N ms);
    "audio N" -> N ms of silence; "bye" -> "closed" and a close; "bad" -> DialectError with an
    "error" goodbye queued. close(reason) queues "disconnect:<reason>".
    """

    name = "echo"

    def __init__(self) -> None:
        self.out: list[str | bytes] = []
        self.close_code: tuple[int, str] | None = None
        self.eof = 0
        self.sent: list[object] = []

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({"mark", "disconnect"})

    def receive_text(self, text: str) -> list[DialectEvent]:
        from ivr_bridge.errors import DialectError
        from ivr_bridge.model import (
            CallStarted,
            ChannelInfo,
            MediaFormat,
        )

        if text == "open":
            self.out.append("opened")
            return [
                CallStarted("echo", "P1", "S1", (ChannelInfo("caller", "in"),),
                            MediaFormat("l16", 8000), 8000)
            ]  # fmt: skip
        if text == "ping":
            self.out.append("pong")
            return []
        if text.startswith("gap "):
            return [MediaGap("caller", int(text[4:]))]
        if text.startswith("audio "):
            return [Audio("caller", bytes(16 * int(text[6:])))]
        if text == "bye":
            self.out.append("closed")
            self.close_code = (1000, "echo closed")
            return []
        self.out.append("error")
        raise DialectError("bad message", 1002)

    def receive_bytes(self, data: bytes) -> list[DialectEvent]:
        return []

    def receive_eof(self) -> list[DialectEvent]:
        self.eof += 1
        return [CallEnded("dropped")]

    def send(self, request: object) -> None:
        from ivr_bridge.dialects.base import Disconnect, SendMark, UnsupportedRequest

        if isinstance(request, SendMark):
            self.out.append(f"mark:{request.name}")
        elif isinstance(request, Disconnect):
            self.out.append("disconnect:" + request.reason)
            self.close_code = (1000, request.reason)
        else:
            raise UnsupportedRequest("echo carries marks only")

    def close(self, reason: str) -> None:
        self.out.append("disconnect:" + reason)

    def data_to_send(self) -> list[str | bytes]:
        out, self.out = self.out, []
        return out

    def close_to_send(self) -> tuple[int, str] | None:
        return self.close_code


async def run_echo(
    messages: list[str | bytes], hold_open: bool = False
) -> tuple[list[UtteranceEvent], ScriptedStream, Call, EchoDialect]:
    events: list[UtteranceEvent] = []
    bus = EventBus()
    bus.add_sink(CallbackSink(events.append))
    stream = ScriptedStream(messages, hold_open=hold_open)
    dialect = EchoDialect()
    call = Call(
        call_id="call_echo",
        dialect=dialect,
        stream=stream,
        recognizer=FakeRecognizer(),
        options=CallOptions(session=SessionConfig(sample_rate=8000)),
        bus=bus,
    )
    await asyncio.wait_for(call.run(), 20)
    await bus.aclose()
    return events, stream, call, dialect


async def test_replies_are_flushed_after_each_message_and_the_dialect_closes() -> None:
    _, stream, call, _ = await run_echo(["open", "ping", "ping", "bye", "ping"])
    assert stream.sent == ["opened", "pong", "pong", "closed"]
    assert stream.closed == (1000, "echo closed")
    assert call.end_reason == "closed_by_dialect"


async def test_protocol_error_flushes_the_goodbye_before_closing() -> None:
    events, stream, call, _ = await run_echo(["open", "bad"])
    assert stream.sent == ["opened", "error", "disconnect:bad message"]
    assert stream.closed == (1002, "bad message")
    assert call.end_reason == "protocol_error" == events[-1].data["reason"]


async def test_socket_drop_tells_the_dialect() -> None:
    events, stream, call, dialect = await run_echo(["open"])
    assert dialect.eof == 1 and stream.closed is None
    assert call.end_reason == "dropped" == events[-1].data["reason"]


async def test_send_flushes_and_disconnect_ends_the_call() -> None:
    from ivr_bridge.dialects.base import Disconnect, SendEvent, SendMark, UnsupportedRequest

    bus = EventBus()
    events: list[UtteranceEvent] = []
    bus.add_sink(CallbackSink(events.append))
    stream = ScriptedStream(["open"], hold_open=True)
    call = Call(
        call_id="c",
        dialect=EchoDialect(),
        stream=stream,
        recognizer=FakeRecognizer(),
        options=CallOptions(session=SessionConfig(sample_rate=8000)),
        bus=bus,
    )
    task = asyncio.create_task(call.run())
    while "opened" not in stream.sent:
        await asyncio.sleep(0.01)
    assert call.capabilities == frozenset({"mark", "disconnect"})
    await call.send(SendMark("m1"))
    assert stream.sent[-1] == "mark:m1"
    try:
        await call.send(SendEvent({"x": 1}))
    except UnsupportedRequest:
        pass
    else:
        raise AssertionError("an unsupported request must raise")
    await call.send(Disconnect("transfer"))
    await asyncio.wait_for(task, 10)
    await bus.aclose()
    assert stream.sent[-1] == "disconnect:transfer"
    assert stream.closed == (1000, "transfer")
    assert call.end_reason == "disconnect" == events[-1].data["reason"]


class AnsweringStream(ScriptedStream):
    """A client that answers the bridge's goodbye ("disconnect:...") with "bye"."""

    async def recv(self) -> str | bytes | None:
        if self._messages:
            return await super().recv()
        while not any(str(m).startswith("disconnect:") for m in self.sent):
            await asyncio.sleep(0.01)
        if "bye" in self.sent_back:
            await asyncio.sleep(3600)
        self.sent_back.append("bye")
        return "bye"

    sent_back: list[str]


async def _stop_after_open(stream: ScriptedStream, clock: Any = None) -> None:
    bus = EventBus()
    call = Call(
        call_id="c",
        dialect=EchoDialect(),
        stream=stream,
        recognizer=FakeRecognizer(),
        options=CallOptions(session=SessionConfig(sample_rate=8000)),
        bus=bus,
        **({"clock": clock} if clock is not None else {}),
    )
    task = asyncio.create_task(call.run())
    while "opened" not in stream.sent:
        await asyncio.sleep(0.01)
    call.request_stop()
    await asyncio.wait_for(task, 30)
    await bus.aclose()


async def test_shutdown_lets_the_dialect_say_goodbye() -> None:
    # The client never answers: the bridge waits GOODBYE_GRACE_S (clock time), then closes.
    stream = ScriptedStream(["open"], hold_open=True)
    await _stop_after_open(stream, ScaledClock(1000))
    assert stream.sent[-1] == "disconnect:bridge shutting down"
    assert stream.closed == (1001, "bridge shutting down")


async def test_goodbye_answered_by_the_client_closes_as_the_dialect_says() -> None:
    stream = AnsweringStream(["open"])
    stream.sent_back = []
    await _stop_after_open(stream)
    assert stream.sent[-2:] == ["disconnect:bridge shutting down", "closed"]
    assert stream.closed == (1000, "echo closed")


async def test_reported_gaps_go_on_the_timeline_once() -> None:
    events, _, _, _ = await run_echo(["open", "audio 100", "gap 400", "audio 100"])
    ended = events[-1].data
    caller = ended["channels"]["caller"]
    # 200 ms of audio plus the 400 ms the PBX reported lost: the timeline is 600 ms.
    assert ended["audio_ms_received"] == 200
    assert ended["duration_ms"] >= 600
    assert caller["keepalive_ms"] == 400


class StepClock:
    """A clock that moves only when told: keepalive decisions become deterministic."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0.001)

    async def wait_for(self, awaitable: Any, timeout: float | None) -> Any:
        return await asyncio.wait_for(awaitable, None)


class QueuedStream(ScriptedStream):
    """Messages arrive when the test puts them."""

    def __init__(self) -> None:
        super().__init__([])
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def recv(self) -> str | bytes | None:
        return await self.queue.get()


async def test_a_gap_already_covered_by_keepalive_is_not_counted_twice() -> None:
    clock = StepClock()
    events: list[UtteranceEvent] = []
    bus = EventBus()
    bus.add_sink(CallbackSink(events.append))
    stream = QueuedStream()
    call = Call(
        call_id="c",
        dialect=EchoDialect(),
        stream=stream,
        recognizer=FakeRecognizer(),
        options=CallOptions(session=SessionConfig(sample_rate=8000)),
        bus=bus,
        clock=clock,
    )
    task = asyncio.create_task(call.run())
    for message in ("open", "audio 100"):
        await stream.queue.put(message)
    await asyncio.sleep(0.05)
    clock.t += 3.0  # the PBX goes quiet for 3 s: the keepalive fills it with silence
    await asyncio.sleep(0.05)
    # ... then says 3.5 s were lost: only the 0.5 s the keepalive did not cover is added.
    for last in ("gap 3500", "audio 100", None):
        await stream.queue.put(last)
    await asyncio.wait_for(task, 10)
    await bus.aclose()
    caller = events[-1].data["channels"]["caller"]
    assert caller["audio_ms_received"] == 200
    assert caller["keepalive_ms"] == 3500  # 3000 by the keepalive + 500 from the gap


async def test_wire_anomalies_are_reported_in_call_ended_and_metrics() -> None:
    frames = twilio_call(silence_pcm(200))
    # Twilio numbers every message: drop two media messages so the sequence jumps once.
    del frames[4:6]
    events: list[UtteranceEvent] = []
    bus = EventBus()
    bus.add_sink(CallbackSink(events.append))
    metrics = Metrics()
    call = Call(
        call_id="call_wire",
        dialect=TwilioDialect(),
        stream=ScriptedStream(frames),
        recognizer=FakeRecognizer(),
        options=CallOptions(session=SessionConfig(sample_rate=8000)),
        bus=bus,
        metrics=metrics,
    )
    await asyncio.wait_for(call.run(), 20)
    await bus.aclose()
    wire = events[-1].data["wire"]
    assert wire["sequence_gaps"] == 1 and wire["sequence_missing"] == 2
    assert wire["media_frames"] == 8
    text = metrics.render({}, {})
    assert 'ivr_bridge_dialect_wire_total{dialect="twilio",counter="sequence_gaps"} 1' in text
