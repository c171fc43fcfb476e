"""A live bridge (tones engine, JSON-lines sink) for the abuse suite, a good call to run beside
each attack, and the leak check that follows every round.

Attackers connect from 127.0.0.2 and the good call from 127.0.0.1 (both loopback on Linux),
so the per-address cap can refuse the attacker without touching the good call.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge.app import BridgeApp
from ivr_bridge.config import (
    EmbeddedSettings,
    EventSettings,
    ServerSettings,
    SessionSettings,
    Settings,
    SpeechKitSettings,
)
from ivr_bridge.local.tones import synthesize_script
from ivr_bridge.simulate import simulate_pcm
from tests.integration.conftest import Collector

ATTACKER = "127.0.0.2"
GOOD_UTTERANCES = [["alpha", "bravo", "charlie"], ["account", "balance", "help"]]
GOOD_TEXTS = [" ".join(u) for u in GOOD_UTTERANCES]


def abuse_settings(jsonl: Path) -> Settings:
    return Settings(
        server=ServerSettings(
            port=0,
            max_calls=6,
            start_timeout_s=1.0,
            open_timeout_s=1.0,
            ping_interval_s=0.5,
            ping_timeout_s=0.5,
            max_message_bytes=4096,
            message_rate_per_s=20.0,
            message_burst=50,
            max_connections_per_ip=3,
            drain_timeout_s=5.0,
        ),
        speechkit=SpeechKitSettings(languages=("en-US",)),
        embedded=EmbeddedSettings(port=0, engine="tones", workers=0),
        session=SessionSettings(drain_timeout_s=30.0),
        events=EventSettings(jsonl=str(jsonl)),
    )


@dataclass
class Live:
    app: BridgeApp
    got: Collector
    jsonl: Path
    seen_before: set[str] = field(default_factory=set)  # calls ended before this round

    def url(self, path: str = "/twilio") -> str:
        return self.app.url(path)

    async def good_call(self) -> str:
        """One ordinary call; returns its call id once its call_ended is out."""
        tag = f"good-{len(self.got.events)}"
        pcm = synthesize_script(GOOD_UTTERANCES, pause_ms=1200)
        report = await simulate_pcm(self.url(), pcm, fast=True, custom_parameters={"tag": tag})
        assert report.close_code == 1000, report.close_reason
        while True:  # known by its tag: attackers' calls are Twilio calls too
            for event in self.got.events:
                if event.type == "call_started" and event.data["custom_parameters"] == {"tag": tag}:
                    await self.got.ended.setdefault(event.call_id, asyncio.Event()).wait()
                    return event.call_id
            await asyncio.sleep(0.02)

    def on_disk(self, call_id: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.jsonl.read_text().splitlines()]
        return [e for e in lines if e["call_id"] == call_id]

    async def assert_good(self, call_id: str) -> None:
        """The good call's finals, exact, at the in-process sink and in the JSON-lines file."""
        assert [e.data["text"] for e in self.got.of(call_id, "final")] == GOOD_TEXTS
        assert self.got.of(call_id, "call_ended")[0].data["reason"] == "stop"

        async def written() -> None:  # the file sink runs its own queue: let it catch up
            while not any(e["type"] == "call_ended" for e in self.on_disk(call_id)):
                await asyncio.sleep(0.02)

        await asyncio.wait_for(written(), 30)
        finals = [e["data"]["text"] for e in self.on_disk(call_id) if e["type"] == "final"]
        assert finals == GOOD_TEXTS

    def ended(self) -> dict[str, str]:
        """call_id -> call_ended reason, for every call so far."""
        return {e.call_id: e.data["reason"] for e in self.got.events if e.type == "call_ended"}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass(frozen=True)
class Snapshot:
    fds: int
    tasks: int


def snapshot() -> Snapshot:
    return Snapshot(open_fds(), len(asyncio.all_tasks()))


async def settle_to(before: Snapshot, limit_s: float = 20.0) -> Snapshot:
    """Wait (up to a generous limit) for connections, tasks and fds to wind down."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    now = snapshot()
    while (now.fds > before.fds or now.tasks > before.tasks) and loop.time() < end:
        await asyncio.sleep(0.05)
        now = snapshot()
    return now


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    got = Collector()
    from ivr_bridge.events.console import CallbackSink

    jsonl = tmp_path / "events.jsonl"
    app = BridgeApp(abuse_settings(jsonl), sinks=[CallbackSink(got)])
    await app.start()
    live = Live(app, got, jsonl)
    try:
        # Warm up (gRPC channel, first session) so the leak baseline is the steady state.
        await live.assert_good(await live.good_call())
        yield live
    finally:
        await app.stop()


@pytest.fixture
async def no_leaks(live: Live) -> AsyncIterator[None]:
    """Fds and asyncio tasks after the round are back to what they were before it."""
    before = snapshot()
    yield
    after = await settle_to(before)
    assert after.fds <= before.fds, f"fds {before.fds} -> {after.fds}"
    assert after.tasks <= before.tasks, f"tasks {before.tasks} -> {after.tasks}"
