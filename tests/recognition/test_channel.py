"""RecognitionChannel against the in-process word recognizer (tests/fakes.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
import structlog

from ivr_bridge.clock import ScaledClock
from ivr_bridge.recognition.base import SessionConfig
from ivr_bridge.recognition.channel import RecognitionChannel
from ivr_bridge.recognition.policy import PolicyConfig
from tests import fakes
from tests.fakes import FakeRecognizer, Fault, silence_pcm, word_pcm

RATE = 8000
Event = tuple[str, int, Mapping[str, Any]]


@pytest.fixture(autouse=True, params=["on", "off", "alternate"])
def sync_sends(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test with chunks written from push_audio when the stream takes them at once,
    with the sender's task writing them all, and with the two mixed."""
    monkeypatch.setattr(fakes, "SYNC_SENDS", request.param)
    return str(request.param)


def make_channel(
    rec: FakeRecognizer, policy: PolicyConfig | None = None, clock: Any = None, **kw: Any
) -> tuple[RecognitionChannel, list[Event]]:
    events: list[Event] = []
    ch = RecognitionChannel(
        name="caller",
        sample_rate=RATE,
        recognizer=rec,
        session_config=SessionConfig(sample_rate=RATE),
        policy=policy or PolicyConfig(),
        emit=lambda payload, ms: events.append((payload.TYPE, ms, payload)),
        **({"clock": clock} if clock else {}),
        **kw,
    )
    return ch, events


def utterance(ids: list[int], word_ms: int = 200, pause_ms: int = 1000) -> bytes:
    return b"".join(word_pcm(i, word_ms) for i in ids) + silence_pcm(pause_ms)


async def feed(ch: RecognitionChannel, pcm: bytes, frame_ms: int = 20) -> None:
    """Push audio in PBX-sized frames, letting the channel keep up (no real-time pacing)."""
    step = RATE * frame_ms // 1000 * 2
    for i in range(0, len(pcm), step):
        ch.push_audio(pcm[i : i + step])
        while ch.ledger.end - ch.ledger.sent_high_water > RATE * 2:
            await asyncio.sleep(0.001)
        if i % (step * 50) == 0:
            await asyncio.sleep(0)


def finals(events: list[Event]) -> list[str]:
    return [d["text"] for kind, _, d in events if kind == "final"]


def assert_accounting(ch: RecognitionChannel) -> None:
    acc = ch.accounting()
    assert acc["samples_received"] == acc["samples_sent_first"] + acc["samples_dropped"]


async def test_utterances_become_events_with_call_times(sync_sends: str) -> None:
    rec = FakeRecognizer()
    ch, events = make_channel(rec)
    task = asyncio.create_task(ch.run())
    await feed(ch, silence_pcm(500) + utterance([1, 2, 3]) + utterance([4, 5]))
    ch.end_input()
    await asyncio.wait_for(task, 10)
    assert finals(events) == ["w1 w2 w3", "w4 w5"]
    kinds = [k for k, _, _ in events]
    assert kinds[0] == "speech_started"
    assert kinds.count("speech_started") == 2 and kinds.count("eou") == 2
    first = next(d for k, _, d in events if k == "final")
    assert first["start_ms"] == 500 and first["end_ms"] == 1100
    assert [w["start_ms"] for w in first["words"]] == [500, 700, 900]
    second = [d for k, _, d in events if k == "final"][1]
    assert second["start_ms"] == 2100
    # 100 ms chunks: 8000 Hz * 0.1 s
    audio_msgs = [n for kind, n in rec.streams[0].messages if kind == "audio"]
    assert max(audio_msgs) == 800
    assert rec.streams[0].messages[-1] == ("finish", 0)
    assert_accounting(ch)
    # Every sample once, whoever wrote it: push_audio (a write the stream took at once) or
    # the sender's task (the writes it refused).
    stream = rec.streams[0]
    assert sum(audio_msgs) == ch.ledger.end
    assert (stream.sync_sent > 0) == (sync_sends != "off")
    assert (stream.sync_offers > stream.sync_sent) == (sync_sends != "on")


async def test_sixty_second_hold_is_bridged_by_keepalive() -> None:
    clock = ScaledClock(speed=40)
    rec = FakeRecognizer()
    ch, events = make_channel(rec, clock=clock)
    task = asyncio.create_task(ch.run())
    await feed(ch, utterance([1, 2], pause_ms=200))
    await clock.sleep(60)  # hold: the PBX sends nothing for 60 s
    await feed(ch, utterance([3]))
    ch.end_input()
    await asyncio.wait_for(task, 10)
    assert rec.opened == 1
    silences = [n for kind, n in rec.streams[0].messages if kind == "silence"]
    assert len(silences) >= 55
    assert max(silences) <= 1200
    assert 58_000 <= sum(silences) <= 62_000
    assert finals(events) == ["w1 w2", "w3"]
    w3 = [d for k, _, d in events if k == "final"][1]
    # The hold is part of the call's timeline: w3 starts about 60 s after the first utterance.
    assert 60_000 <= w3["start_ms"] <= 63_000
    assert ch.accounting()["keepalive_ms"] == sum(silences)


async def test_thirty_minute_call_rotates_without_losing_or_repeating() -> None:
    rec = FakeRecognizer(max_audio_ms=300_000)
    ch, events = make_channel(rec)
    task = asyncio.create_task(ch.run())
    expected = []
    audio = bytearray()
    word = 1
    while len(audio) < 30 * 60 * RATE * 2:
        ids = [word, word + 1, word + 2]
        word += 3
        expected.append(" ".join(f"w{i}" for i in ids))
        audio += utterance(ids, word_ms=300, pause_ms=1500)
    await feed(ch, bytes(audio))
    ch.end_input()
    await asyncio.wait_for(task, 120)
    assert finals(events) == expected
    assert ch.stats.rotations >= 5
    assert ch.stats.errors == 0  # never hit OUT_OF_RANGE
    times = [d["start_ms"] for k, _, d in events if k == "final"]
    assert times == sorted(times)
    assert times[-1] == pytest.approx((len(expected) - 1) * 2400, abs=1)
    assert_accounting(ch)


async def test_nonstop_talker_is_rotated_by_force_without_word_loss() -> None:
    rec = FakeRecognizer(max_audio_ms=300_000)
    ch, events = make_channel(rec)
    task = asyncio.create_task(ch.run())
    # 6 minutes of 270 ms words with 20 ms between them: never a pause long enough for an
    # end of utterance, and word edges that do not line up with any round number.
    ids = list(range(1, 6 * 60 * 1000 // 290 + 1))
    await feed(ch, b"".join(word_pcm(i, 270) + silence_pcm(20) for i in ids) + silence_pcm(1000))
    ch.end_input()
    await asyncio.wait_for(task, 60)
    words = " ".join(finals(events)).split()
    assert words == [f"w{i}" for i in ids]
    assert ch.stats.forced_rotations >= 1
    assert ch.stats.errors == 0


async def test_outage_mid_call_replays_from_last_final() -> None:
    rec = FakeRecognizer(faults=[Fault(session=1, after_ms=3500)])
    ch, events = make_channel(rec, policy=PolicyConfig(backoff_initial_s=0.01))
    task = asyncio.create_task(ch.run())
    script = [[1, 2], [3, 4], [5, 6]]
    await feed(ch, b"".join(utterance(u) for u in script))
    ch.end_input()
    await asyncio.wait_for(task, 10)
    assert finals(events) == ["w1 w2", "w3 w4", "w5 w6"]
    assert rec.opened == 2
    kinds = [k for k, _, _ in events]
    assert "recognition_degraded" in kinds and "recognition_restored" in kinds
    assert ch.accounting()["samples_replayed"] > 0
    assert_accounting(ch)


async def test_stalled_stream_is_detected_and_recovered() -> None:
    clock = ScaledClock(speed=20)
    rec = FakeRecognizer(faults=[Fault(session=1, after_ms=2000, stall=True)])
    ch, events = make_channel(
        rec, policy=PolicyConfig(stall_timeout_s=3, backoff_initial_s=0.01), clock=clock
    )
    task = asyncio.create_task(ch.run())
    await feed(ch, utterance([1, 2]) + utterance([3]))
    await clock.sleep(6)
    await feed(ch, utterance([4]))
    ch.end_input()
    await asyncio.wait_for(task, 10)
    assert ch.stats.stalls == 1
    assert finals(events) == ["w1 w2", "w3", "w4"]


async def test_invalid_argument_fails_once_and_keeps_counting_media() -> None:
    rec = FakeRecognizer(open_failures=["INVALID_ARGUMENT"])
    ch, events = make_channel(rec)
    task = asyncio.create_task(ch.run())
    await feed(ch, utterance([1]))
    ch.end_input()
    await asyncio.wait_for(task, 10)
    assert rec.opened == 0
    assert [k for k, _, _ in events] == ["recognition_failed"]
    acc = ch.accounting()
    assert acc["recognition_failed"] and acc["samples_dropped"] == acc["samples_received"] > 0


async def test_unauthenticated_refreshes_credentials_once() -> None:
    rec = FakeRecognizer(open_failures=["UNAUTHENTICATED"])
    ch, events = make_channel(rec)
    task = asyncio.create_task(ch.run())
    await feed(ch, utterance([1]))
    ch.end_input()
    await asyncio.wait_for(task, 10)
    assert rec.refreshes == 1
    assert finals(events) == ["w1"]


async def test_unauthenticated_twice_gives_up() -> None:
    rec = FakeRecognizer(open_failures=["UNAUTHENTICATED", "UNAUTHENTICATED"])
    ch, events = make_channel(rec)
    task = asyncio.create_task(ch.run())
    await feed(ch, utterance([1]))
    ch.end_input()
    await asyncio.wait_for(task, 10)
    assert rec.refreshes == 1
    assert "recognition_failed" in [k for k, _, _ in events]


async def test_drain_timeout_follows_the_injected_clock_and_logs_carry_the_call() -> None:
    # The recognizer stops answering before the call ends: the last drain times out. At
    # 2000x, a 600 s drain timeout is 0.3 s of real time; on real seconds it would be 10 min.
    clock = ScaledClock(speed=2000)
    rec = FakeRecognizer(faults=[Fault(session=1, after_ms=100, stall=True)])
    policy = PolicyConfig(keepalive=False, stall_timeout_s=100_000)
    ch, events = make_channel(rec, policy=policy, clock=clock, drain_timeout_s=600)
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        with structlog.contextvars.bound_contextvars(call_id="call-under-test"):
            task = asyncio.create_task(ch.run())
        await feed(ch, utterance([1]))
        ch.end_input()
        await asyncio.wait_for(task, 60)
    assert rec.streams[0].messages[-1] == ("finish", 0)
    timeouts = [entry for entry in logs if entry["event"] == "drain_timeout"]
    assert len(timeouts) == 1
    assert all(e["call_id"] == "call-under-test" and e["channel"] == "caller" for e in logs)
    assert finals(events) == []


async def test_a_stream_that_stops_answering_is_caught_while_audio_still_flows() -> None:
    """Chunks written from push_audio still pass the stall check: a silent server is caught
    mid-speech, not when the call's input ends."""
    clock = ScaledClock(speed=20)
    rec = FakeRecognizer(faults=[Fault(session=1, after_ms=2000, stall=True)])
    ch, events = make_channel(
        rec, policy=PolicyConfig(stall_timeout_s=3, backoff_initial_s=0.01), clock=clock
    )
    task = asyncio.create_task(ch.run())
    pcm = b"".join(utterance([i]) for i in range(1, 9))  # about 10 s, paced in clock time
    step = RATE * 20 // 1000 * 2
    for i in range(0, len(pcm), step):
        ch.push_audio(pcm[i : i + step])
        await clock.sleep(0.02)
    assert ch.stats.stalls == 1 and rec.opened == 2  # before the input ended
    ch.end_input()
    await asyncio.wait_for(task, 10)
    assert finals(events) == [f"w{i}" for i in range(1, 9)]
