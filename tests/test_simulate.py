"""The Twilio call simulator against a tiny websockets server on port 0.

The server runs the real TwilioDialect, so every test is also a socket-level round trip.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ivr_bridge.audio.wav import pcm16_wav_bytes
from ivr_bridge.clock import SYSTEM_CLOCK, Clock, ScaledClock
from ivr_bridge.dialects.twilio import TwilioDialect
from ivr_bridge.model import Audio, CallEnded, CallStarted, DialectEvent, Dtmf
from ivr_bridge.simulate import SimulationReport, simulate_call, simulate_pcm
from ivr_bridge.simulators.twilio import TwilioStreamEncoder

_T = TypeVar("_T")


def tone_pcm(seconds: float, rate: int = 8000) -> bytes:
    n = int(seconds * rate)
    return array(
        "h", (int(6000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(n))
    ).tobytes()


@dataclass
class Received:
    clock: Clock
    texts: list[tuple[float, str]] = field(default_factory=list)
    events: list[DialectEvent] = field(default_factory=list)
    dialect: TwilioDialect = field(default_factory=TwilioDialect)

    def media(self) -> list[tuple[float, dict[str, Any]]]:
        return [
            (t, m["media"])
            for t, m in ((t, json.loads(x)) for t, x in self.texts)
            if m["event"] == "media"
        ]

    def kinds(self) -> list[str]:
        return [json.loads(x)["event"] for _, x in self.texts]


Behaviour = Callable[[ServerConnection, Received], Awaitable[None]]


async def bridge_like(ws: ServerConnection, got: Received) -> None:
    """Decode everything; close with 1000 after stop, as the bridge does."""
    async for message in ws:
        assert isinstance(message, str)
        got.texts.append((got.clock.now(), message))
        events = got.dialect.receive_text(message)
        got.events.extend(events)
        if any(isinstance(e, CallEnded) for e in events):
            await ws.close(1000, "call ended")
            return


@asynccontextmanager
async def server(
    behaviour: Behaviour = bridge_like, clock: Clock = SYSTEM_CLOCK
) -> AsyncIterator[tuple[str, Received]]:
    got = Received(clock)

    async def handler(ws: ServerConnection) -> None:
        await behaviour(ws, got)

    async with serve(handler, "127.0.0.1", 0, compression=None) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/twilio", got


# ---- order, counts, report ---------------------------------------------------------------------


async def test_message_order_and_counts_fast() -> None:
    async with server() as (url, got):
        report = await simulate_pcm(
            url, tone_pcm(1.0), fast=True, trailing_silence_s=0.2, custom_parameters={"a": "b"}
        )
    assert got.kinds() == ["connected", "start"] + ["media"] * 60 + ["stop"]
    assert report.frames_sent == 60 and report.audio_ms == 1200
    assert report.bytes_sent == 60 * 160
    assert report.messages_sent == 63 and report.stop_sent
    assert (report.close_code, report.close_reason) == (1000, "call ended")
    assert report.closed_by_server
    started = got.events[0]
    assert isinstance(started, CallStarted)
    assert started.platform_call_id == report.call_sid and started.stream_id == report.stream_sid
    assert dict(started.custom_parameters) == {"a": "b"}
    audio = [e for e in got.events if isinstance(e, Audio)]
    assert [a.timestamp_ms for a in audio] == list(range(0, 1200, 20))
    assert got.dialect.counters.sequence_gaps == got.dialect.counters.timestamp_gaps == 0
    text = report.format_report()
    assert report.call_sid in text and "60 frames" in text and "as fast as possible" in text
    assert "closed by the bridge: 1000 'call ended'" in text


async def test_partial_last_frame_is_padded() -> None:
    async with server() as (url, got):
        report = await simulate_pcm(url, tone_pcm(0.05), fast=True, trailing_silence_s=0)
    assert report.frames_sent == 3  # 400 samples -> 160 + 160 + 80 padded
    audio = [e for e in got.events if isinstance(e, Audio)]
    assert audio[-1].pcm[160:] == bytes(160)


async def test_both_tracks_send_outbound_silence() -> None:
    async with server() as (url, got):
        report = await simulate_pcm(
            url, tone_pcm(0.2), fast=True, tracks="both", trailing_silence_s=0
        )
    assert report.frames_sent == report.outbound_frames_sent == 10
    assert report.audio_ms == 200
    channels = [e.channel for e in got.events if isinstance(e, Audio)]
    assert channels == ["caller", "agent"] * 10
    agent = [e for e in got.events if isinstance(e, Audio) and e.channel == "agent"]
    assert all(a.pcm == bytes(320) for a in agent)


async def test_dtmf_is_sent_at_its_media_time() -> None:
    async with server() as (url, got):
        report = await simulate_pcm(
            url,
            tone_pcm(0.2),
            fast=True,
            trailing_silence_s=0,
            dtmf=[(0.1, "5"), (-3, "1"), (99, "#")],
        )
    assert report.dtmf_sent == 3
    kinds = got.kinds()
    assert kinds[2] == "dtmf"  # clamped to the start
    assert kinds[2 + 1 + 5] == "dtmf"  # before the frame at 100 ms
    assert kinds[-2:] == ["dtmf", "stop"]  # clamped to the end
    assert [e.digit for e in got.events if isinstance(e, Dtmf)] == ["1", "5", "#"]


async def test_custom_encoder_and_validation() -> None:
    encoder = TwilioStreamEncoder(call_sid="CA42", stream_sid="MZ42")
    async with server() as (url, _):
        report = await simulate_pcm(url, tone_pcm(0.04), fast=True, encoder=encoder)
    assert (report.call_sid, report.stream_sid) == ("CA42", "MZ42")
    with pytest.raises(ValueError, match="tracks"):
        await simulate_pcm("ws://unused", b"", tracks="outbound")
    with pytest.raises(ValueError, match="negative"):
        await simulate_pcm("ws://unused", b"", gap_at_s=1, gap_s=-1)
    with pytest.raises(ValueError, match="negative"):
        await simulate_pcm("ws://unused", b"", trailing_silence_s=-1)
    with pytest.raises(ValueError, match="encoder"):
        await simulate_pcm("ws://unused", b"", tracks="both", encoder=encoder)


async def test_simulate_call_reads_any_wav(tmp_path: Path) -> None:
    wide = tone_pcm(0.5, rate=16000)
    stereo = array("h")
    stereo.frombytes(wide)
    interleaved = array("h", [s for x in stereo for s in (x, x)]).tobytes()
    path = tmp_path / "call.wav"
    path.write_bytes(pcm16_wav_bytes(interleaved, 16000, channels=2))
    async with server() as (url, got):
        report = await simulate_call(url, path, fast=True, trailing_silence_s=0)
    assert report.frames_sent == 25 and report.audio_ms == 500
    assert sum(isinstance(e, Audio) for e in got.events) == 25


# ---- pacing and the gap ------------------------------------------------------------------------
#
# The schedule is checked on the injected clock from the times the simulator encoded each
# message, so the assertions are exact and no test depends on how busy the machine is.


class SteppedClock:
    """Time that moves only when a task sleeps on it; each sleep yields briefly for real.

    While the simulator is the only sleeper, ``now()`` at each send is exactly the time the
    schedule asked for. A sleep cut short (cancelled) does not move time at all.
    """

    REAL_PER_SECOND = 0.005  # real seconds spent per clock second, to let sockets interleave

    def __init__(self) -> None:
        self._t = 100.0

    def now(self) -> float:
        return self._t

    def wall(self) -> float:
        return 1_750_000_000.0 + self._t

    async def sleep(self, seconds: float) -> None:
        target = self._t + max(0.0, seconds)
        await asyncio.sleep(max(0.0, seconds) * self.REAL_PER_SECOND)
        self._t = max(self._t, target)

    async def wait_for(self, awaitable: Awaitable[_T], timeout: float | None) -> _T:
        real = None if timeout is None else max(0.0, timeout) * self.REAL_PER_SECOND
        return await asyncio.wait_for(awaitable, real)


class TimedEncoder(TwilioStreamEncoder):
    """Records the clock time at which the simulator produced each message: its send time."""

    def __init__(self, clock: Clock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.sent: list[tuple[str, float]] = []

    def media(
        self, mulaw: bytes, *, track: str = "inbound", timestamp_ms: int | None = None
    ) -> str:
        self.sent.append(("media", self.clock.now()))
        return super().media(mulaw, track=track, timestamp_ms=timestamp_ms)

    def stop(self) -> str:
        self.sent.append(("stop", self.clock.now()))
        return super().stop()

    def times(self, kind: str) -> list[float]:
        return [t for k, t in self.sent if k == kind]


async def test_real_time_pacing_follows_the_injected_clock() -> None:
    clock = SteppedClock()
    encoder = TimedEncoder(clock)
    async with server(clock=clock) as (url, got):
        report = await simulate_pcm(
            url, tone_pcm(2.0), clock=clock, trailing_silence_s=0, encoder=encoder
        )
    times = encoder.times("media")
    assert len(times) == 100 == len(got.media())
    # An absolute schedule: frame i goes out at start + i * 20 ms, so pacing never drifts.
    start = times[0]
    assert times == pytest.approx([start + i * 0.020 for i in range(100)], abs=1e-9)
    assert encoder.times("stop") == pytest.approx([start + 2.0], abs=1e-9)
    assert report.elapsed_s == pytest.approx(2.0, abs=1e-9)
    assert report.max_lag_ms == pytest.approx(0.0, abs=1e-6)
    assert "real time, max lag" in report.format_report()


async def test_gap_pauses_media_and_moves_timestamps_on() -> None:
    clock = SteppedClock()
    encoder = TimedEncoder(clock)
    async with server(clock=clock) as (url, got):
        report = await simulate_pcm(
            url,
            tone_pcm(1.0),
            clock=clock,
            gap_at_s=0.4,
            gap_s=2.0,
            trailing_silence_s=0,
            encoder=encoder,
        )
    media = got.media()
    assert len(media) == 50 and report.gap_ms == 2000
    stamps = [int(m["timestamp"]) for _, m in media]
    assert stamps[:20] == list(range(0, 400, 20))
    assert stamps[20:] == list(range(2400, 3000, 20))  # time passed during the gap
    intervals = [b - a for a, b in itertools.pairwise(encoder.times("media"))]
    # Only the interval between frame 19 and frame 20 holds the gap; nothing else paused.
    assert intervals == pytest.approx([0.02] * 19 + [2.02] + [0.02] * 29, abs=1e-9)
    assert got.dialect.counters.timestamp_gaps == 1
    assert got.dialect.counters.timestamp_gap_ms == 2000
    assert report.elapsed_s == pytest.approx(3.0, abs=1e-9)
    assert "gap: 2.00 s" in report.format_report()


async def test_gap_takes_time_even_when_fast() -> None:
    clock = SteppedClock()
    encoder = TimedEncoder(clock)
    async with server(clock=clock) as (url, got):
        report = await simulate_pcm(
            url, tone_pcm(0.2), fast=True, clock=clock, gap_at_s=0.1, gap_s=1.0,
            trailing_silence_s=0, encoder=encoder,
        )  # fmt: skip
    # Fast sending takes no clock time, but the gap is about time: exactly its length passes.
    assert report.elapsed_s == pytest.approx(1.0, abs=1e-9)
    times = encoder.times("media")
    assert times[:5] == [times[0]] * 5 and times[5:] == [times[0] + 1.0] * 5
    stamps = [int(m["timestamp"]) for _, m in got.media()]
    assert stamps == [0, 20, 40, 60, 80, 1100, 1120, 1140, 1160, 1180]


async def test_gap_beyond_the_audio_happens_before_stop() -> None:
    clock = SteppedClock()
    encoder = TimedEncoder(clock)
    async with server(clock=clock) as (url, _):
        report = await simulate_pcm(
            url, tone_pcm(0.1), fast=True, clock=clock, gap_at_s=5.0, gap_s=0.5,
            trailing_silence_s=0, encoder=encoder,
        )  # fmt: skip
    assert report.gap_ms == 500 and report.frames_sent == 5
    (stop_time,) = encoder.times("stop")
    assert stop_time - encoder.times("media")[-1] == pytest.approx(0.5, abs=1e-9)


async def test_pacing_on_a_scaled_clock_keeps_the_order_and_the_schedule() -> None:
    """ScaledClock (real time, accelerated) runs the same schedule; only lateness can vary."""
    clock = ScaledClock(speed=10)
    encoder = TimedEncoder(clock)
    async with server(clock=clock) as (url, got):
        report = await simulate_pcm(
            url, tone_pcm(0.5), clock=clock, trailing_silence_s=0, encoder=encoder
        )
    times = encoder.times("media")
    assert len(times) == 25 == len(got.media())
    # A frame may leave late (a busy machine), never early.
    assert all(t >= times[0] + i * 0.020 - 1e-6 for i, t in enumerate(times))
    assert report.elapsed_s >= 0.5


# ---- how calls end -----------------------------------------------------------------------------


async def test_bridge_that_never_closes_is_bounded() -> None:
    async def silent(ws: ServerConnection, got: Received) -> None:
        async for message in ws:
            assert isinstance(message, str)
            got.texts.append((0.0, message))

    async with server(silent) as (url, got):
        report = await simulate_pcm(
            url, tone_pcm(0.04), fast=True, trailing_silence_s=0, close_timeout_s=0.2
        )
    assert report.stop_sent and not report.closed_by_server
    assert report.close_code == 1000  # the server's echo of our close
    assert "closed by the simulator" in report.format_report()


async def test_bridge_that_rejects_the_call_mid_stream() -> None:
    async def strict(ws: ServerConnection, got: Received) -> None:
        async for message in ws:
            assert isinstance(message, str)
            got.texts.append((0.0, message))
            if json.loads(message)["event"] == "media":
                await ws.close(1007, "invalid media")
                return

    async with server(strict) as (url, got):
        report = await simulate_pcm(url, tone_pcm(2.0), fast=True)
    assert not report.stop_sent
    assert (report.close_code, report.close_reason) == (1007, "invalid media")
    assert report.closed_by_server
    assert report.frames_sent < 100


async def test_connection_dropped_without_a_close_frame() -> None:
    async def drop(ws: ServerConnection, got: Received) -> None:
        await ws.recv()
        ws.transport.abort()

    async with server(drop) as (url, _):
        report = await simulate_pcm(url, tone_pcm(1.0), fast=True)
    assert report.close_code == 1006 and report.close_reason == ""
    assert not report.stop_sent


async def test_back_channel_frames_are_collected() -> None:
    async def talk_back(ws: ServerConnection, got: Received) -> None:
        dialect = got.dialect
        async for message in ws:
            assert isinstance(message, str)
            events = dialect.receive_text(message)
            if any(isinstance(e, CallStarted) for e in events):
                dialect.send_mark("hello")
                dialect.send_clear()
                for reply in dialect.data_to_send():
                    await ws.send(reply)
                await ws.send(b"\x00\x01")
            if any(isinstance(e, CallEnded) for e in events):
                await ws.close()
                return

    async with server(talk_back) as (url, _):
        report = await simulate_pcm(url, tone_pcm(0.1), fast=True)
    assert [json.loads(t)["event"] for t in report.received] == ["mark", "clear"]
    assert report.text_frames_received == 2 and report.binary_received == 1


async def test_cancelling_the_simulation_closes_the_socket() -> None:
    closed = asyncio.Event()

    async def record(ws: ServerConnection, got: Received) -> None:
        try:
            await bridge_like(ws, got)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            got.texts.append((0.0, json.dumps({"event": "closed", "code": code})))
        closed.set()

    async with server(record) as (url, got):
        task = asyncio.create_task(simulate_pcm(url, tone_pcm(10.0)))
        while len(got.texts) < 4:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(closed.wait(), 5)
    assert got.kinds()[-2:] == ["media", "closed"]  # no stop: the call was cut off


def test_report_defaults_format() -> None:
    report = SimulationReport(
        url="ws://x", call_sid="CA1", stream_sid="MZ1", tracks=("inbound",), fast=False
    )
    text = report.format_report()
    assert text.splitlines()[0] == "simulated Twilio call CA1 -> ws://x"
    assert "stop: no" in text and "None" in text


async def test_yields_to_the_loop_when_fast() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        async with server() as (url, _):
            await simulate_pcm(url, tone_pcm(1.0), fast=True, trailing_silence_s=0)
    finally:
        task.cancel()
    assert ticks >= 50


def test_cli_refuses_an_unknown_dialect(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ivr_bridge import cli

    # main() would bind the process-wide logger to this test's captured (then closed) stdout.
    monkeypatch.setattr(cli, "configure_logging", lambda *args: None)
    main = cli.main
    assert main(["simulate", "--dialect", "nosuch", "--url", "ws://127.0.0.1:9/x", "a.wav"]) == 2
    assert "no simulator for dialect 'nosuch'" in capsys.readouterr().err


async def test_every_dialect_has_a_simulator_with_its_auth() -> None:
    from ivr_bridge.dialects.registry import SPECS
    from ivr_bridge.simulate import ENCODERS, make_encoder
    from ivr_bridge.simulators.base import ClientAuth

    assert {spec.name for spec in SPECS} <= set(ENCODERS)
    url = "ws://h:1/p"
    signed = make_encoder("twilio", auth=ClientAuth("signature", {"auth_token": "t"}))
    assert set(signed.upgrade(url)[1]) == {"X-Twilio-Signature"}
    plivo = make_encoder("plivo", auth=ClientAuth("token", {"token": "t"}))
    assert plivo.upgrade(url) == ("ws://h:1/p?token=t", {})
    exotel = make_encoder("exotel", auth=ClientAuth("basic", {"username": "u", "password": "p"}))
    assert exotel.upgrade(url)[1]["Authorization"].startswith("Basic ")
    assert make_encoder("signalwire", auth=ClientAuth("token", {"token": "t"})).upgrade(url)[1] == {
        "Authorization": "Bearer t"
    }
    with pytest.raises(ValueError, match="no simulator"):
        make_encoder("nosuch")
    with pytest.raises(ValueError, match="caller only"):
        make_encoder("exotel", tracks="both")
