"""Admission control: past a limit new calls get 503 with a reason; calls in progress go on."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from ivr_bridge import overload
from ivr_bridge.call import CallOptions
from ivr_bridge.dialects.registry import build_routes
from ivr_bridge.events.bus import EventBus
from ivr_bridge.events.console import CallbackSink
from ivr_bridge.model import UtteranceEvent
from ivr_bridge.overload import AdmissionPolicy, LoadMonitor, OverloadLimits
from ivr_bridge.recognition.base import SessionConfig
from ivr_bridge.server import BridgeServer
from ivr_bridge.simulate import SimulationReport, simulate_pcm
from tests.fakes import FakeRecognizer, silence_pcm, word_pcm
from tests.markers import realtime


def test_policy_refuses_on_each_limit_and_counts_by_reason() -> None:
    policy = AdmissionPolicy(OverloadLimits(max_calls=2, max_loop_lag_ms=100, max_cpu=0.8))
    assert policy.check(1) is None
    refusal = policy.check(2)
    assert refusal is not None and refusal.reason == "max_calls"
    policy.observe(lag_ms=250, cpu_fraction=0.1)
    refusal = policy.check(0)
    assert refusal is not None and refusal.reason == "loop_lag" and "250 ms" in refusal.detail
    for _ in range(10):  # the late sample ages out of the one-second average
        policy.observe(lag_ms=1, cpu_fraction=0.95)
    refusal = policy.check(0)
    assert refusal is not None and refusal.reason == "cpu"
    assert policy.refused == {"max_calls": 1, "loop_lag": 1, "cpu": 1}


def test_descriptors_near_the_soft_limit_refuse_new_calls() -> None:
    """Always on: within the reserve of RLIMIT_NOFILE a call is refused before accept()
    would fail; an unknown limit (no /proc) never refuses."""
    policy = AdmissionPolicy(OverloadLimits(max_calls=100, max_loop_lag_ms=0))
    assert policy.check(0) is None  # nothing observed yet
    policy.observe_fds(900, 1024)
    assert policy.check(0) is None and not policy.fd_pressure
    policy.observe_fds(1024 - overload.fd_reserve(1024), 1024)
    refusal = policy.check(0)
    assert refusal is not None and refusal.reason == "fd_limit"
    assert "1004 of 1024" in refusal.detail
    assert overload.fd_reserve(96) == 8  # small limits keep a floor of free descriptors


def test_descriptor_count_when_none_is_left_to_read_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing /proc/self/fd needs a descriptor: EMFILE there means all are in use, and the
    monitor reports the pressure (uvloop drops connections past the limit silently)."""
    import errno

    def exhausted(path: str) -> list[str]:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr("ivr_bridge.overload.os.listdir", exhausted)
    assert overload.open_fds() == overload.fd_soft_limit()
    pressured: list[int] = []
    policy = AdmissionPolicy(OverloadLimits())
    LoadMonitor(policy, lambda: pressured.append(policy.fds)).sample_fds()
    assert pressured == [overload.fd_soft_limit()] and policy.fd_pressure

    def missing(path: str) -> list[str]:
        raise FileNotFoundError(errno.ENOENT, "no /proc")

    monkeypatch.setattr("ivr_bridge.overload.os.listdir", missing)
    assert overload.open_fds() is None


def test_zero_turns_a_signal_off() -> None:
    policy = AdmissionPolicy(OverloadLimits(max_calls=5, max_loop_lag_ms=0, max_cpu=0))
    policy.observe(lag_ms=5000, cpu_fraction=1.0)
    assert policy.check(4) is None
    assert policy.loop_lag_ms == 5000 and policy.cpu == 1.0


@pytest.fixture
async def server() -> AsyncIterator[tuple[BridgeServer, list[UtteranceEvent]]]:
    events: list[UtteranceEvent] = []
    bus = EventBus()
    bus.add_sink(CallbackSink(events.append))
    srv = BridgeServer(
        routes=build_routes({}),
        recognizer=FakeRecognizer(),
        bus=bus,
        options=CallOptions(session=SessionConfig(sample_rate=8000)),
        port=0,
        overload=OverloadLimits(max_calls=2, max_loop_lag_ms=100),
    )
    await srv.start()
    yield srv, events
    await srv.drain(0)
    await bus.aclose()


async def refusal_of(url: str) -> dict[str, str]:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, open_timeout=30):
            pass
    assert info.value.response.status_code == 503
    assert info.value.response.headers["Retry-After"] == "1"
    body: dict[str, str] = json.loads(info.value.response.body)
    return body


def finals(events: list[UtteranceEvent]) -> list[str]:
    return [str(e.data["text"]) for e in events if e.type == "final"]


async def wait_until_calm(srv: BridgeServer) -> None:
    while srv.admission.loop_lag_ms > 100:
        await asyncio.sleep(0.05)


@realtime
async def test_busy_process_refuses_new_calls_and_keeps_the_live_ones_whole(
    server: tuple[BridgeServer, list[UtteranceEvent]],
) -> None:
    srv, events = server
    url = f"ws://127.0.0.1:{srv.port}/twilio"
    # Word values mu-law keeps exactly (the fake recognizer names a word by its sample value).
    speech = b"".join(word_pcm(w, 300) + silence_pcm(600) for w in (988, 1980, 3004))

    def call() -> asyncio.Task[SimulationReport]:
        return asyncio.create_task(simulate_pcm(url, speech, trailing_silence_s=0))

    await wait_until_calm(srv)
    first = call()
    while srv.active_calls < 1:
        await asyncio.sleep(0.01)

    # The process falls behind (something hogs its event loop): while that lasts a new call
    # is refused with the reason, and the call in progress still gets every word.
    hogging = True

    async def hog() -> None:
        while hogging:
            time.sleep(0.5)  # blocks the loop, as a process past its capacity does
            await asyncio.sleep(0.1)

    hog_task = asyncio.create_task(hog())
    while srv.admission.loop_lag_ms <= 100:
        await asyncio.sleep(0.05)
    refusal = await refusal_of(url)
    assert refusal["error"] == "overloaded" and refusal["reason"] == "loop_lag"
    hogging = False
    await hog_task

    # Calm again: a second call fits; a third is past max_calls=2 and refused for that.
    await wait_until_calm(srv)
    second = call()
    while srv.active_calls < 2:
        await asyncio.sleep(0.01)
    assert (await refusal_of(url))["reason"] == "max_calls"

    reports = await asyncio.gather(first, second)
    assert [r.close_code for r in reports] == [1000, 1000]
    while sum(e.type == "call_ended" for e in events) < 2:
        await asyncio.sleep(0.01)
    assert sorted(finals(events)) == sorted(["w988", "w1980", "w3004"] * 2)
    ended = [e for e in events if e.type == "call_ended"]
    assert all(e.data["channels"]["caller"]["samples_dropped"] == 0 for e in ended)
    assert srv.admission.refused == {"loop_lag": 1, "max_calls": 1}
