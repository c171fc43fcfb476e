"""The sinks as ``BridgeApp`` builds them from settings, on a real call (tones engine): a live
webhook gets every event in order while a dead one beside it dead-letters its share at
shutdown, and the JSON-lines file has the same events."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import ivr_bridge.local.tone_engine  # noqa: F401  (registers "tones")
from ivr_bridge.app import BridgeApp
from ivr_bridge.config import EventSettings
from ivr_bridge.local.tones import synthesize_script
from ivr_bridge.simulate import simulate_pcm
from tests.integration.conftest import local_settings

from .receiver import Receiver


async def test_settings_build_live_dead_and_file_sinks(tmp_path: Path) -> None:
    alive = await Receiver().start()
    dead = await Receiver(refuse=True).start()
    base = local_settings("tones")
    events = EventSettings(
        jsonl=str(tmp_path / "events.jsonl"),
        webhook=alive.url,
        webhooks=(dead.url,),
        webhook_retry_total_s=600.0,
        dead_letter_file=str(tmp_path / "dead.jsonl"),
        drain_timeout_s=0.5,
    )
    app = BridgeApp(replace(base, events=events))
    await app.start()
    try:
        pcm = synthesize_script([["alpha", "bravo"], ["yes", "no"]], pause_ms=1200)
        report = await simulate_pcm(app.url(), pcm, fast=True)
        assert report.close_code == 1000
        assert app.bus is not None
        stats = app.bus.stats()
        health = app.bus.health()
    finally:
        await app.stop()
        await alive.stop()
        await dead.stop()
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert lines[-1]["type"] == "call_ended"
    assert [g.event["seq"] for g in alive.got] == [e["seq"] for e in lines]
    dead_letters = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert {d["sink"] for d in dead_letters} == {"webhook-2"}
    assert sorted(d["event"]["seq"] for d in dead_letters) == [e["seq"] for e in lines]
    assert stats["webhook-2"].dead_lettered == len(lines) and stats["webhook-2"].lost == 0
    assert health["webhook-2"]["consecutive_failures"] >= 1
    assert health["webhook"]["state"] == "closed"
