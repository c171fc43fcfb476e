from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

from ivr_bridge.events.bus import EventBus
from ivr_bridge.events.console import CallbackSink, ConsoleSink, render
from ivr_bridge.events.jsonl import JsonlSink
from ivr_bridge.model import EVENT_SCHEMA, UtteranceEvent


def event(seq: int, kind: str = "final", **data: Any) -> UtteranceEvent:
    return UtteranceEvent(
        type=kind,
        call_id="call_x",
        channel="caller",
        seq=seq,
        call_ms=1500 * seq,
        wall_time=1_700_000_000.25,
        data=data
        or {
            "text": "hello",
            "start_ms": 100,
            "end_ms": 900,
            "words": [{"text": "hello", "start_ms": 100, "end_ms": 900}],
            "final_index": 1,
            "session": 0,
        },
    )


def test_event_json_shape() -> None:
    j = event(3).to_json()
    assert j["schema"] == EVENT_SCHEMA
    assert j["id"].startswith("evt_") and len(j["id"]) == 36
    assert j["time"] == "2023-11-14T22:13:20.250Z"
    assert {k: j[k] for k in ("type", "call_id", "channel", "seq", "call_ms")} == {
        "type": "final",
        "call_id": "call_x",
        "channel": "caller",
        "seq": 3,
        "call_ms": 4500,
    }


async def test_jsonl_sink_appends_lines(tmp_path: Path) -> None:
    bus = EventBus()
    bus.add_sink(JsonlSink(tmp_path / "out" / "events.jsonl"))
    for i in range(1, 4):
        bus.publish(event(i))
    await bus.aclose()
    lines = (tmp_path / "out" / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]


async def test_slow_sink_drops_are_counted_and_others_unaffected() -> None:
    got: list[int] = []

    class Slow:
        name = "slow"

        async def deliver(self, e: UtteranceEvent) -> None:
            await asyncio.sleep(10)

        async def aclose(self) -> None:
            return None

    bus = EventBus(queue_size=10)
    bus.add_sink(Slow())
    bus.add_sink(CallbackSink(lambda e: got.append(e.seq)))
    for i in range(1, 51):
        bus.publish(event(i))
        await asyncio.sleep(0.001)  # the fast sink keeps up; the slow one cannot
    await asyncio.sleep(0.05)
    stats = bus.stats()
    assert stats["slow"].dropped_queue_full >= 39
    assert got == list(range(1, 51))
    await bus.aclose(timeout=0.1)


async def test_partials_can_be_filtered() -> None:
    got: list[str] = []
    bus = EventBus(include_partials=False)
    bus.add_sink(CallbackSink(lambda e: got.append(e.type)))
    bus.publish(event(1, "partial", text="he", start_ms=0, end_ms=10))
    bus.publish(event(2))
    await bus.aclose()
    assert got == ["final"]


async def test_console_rendering() -> None:
    out = io.StringIO()
    sink = ConsoleSink(out, include_partials=False)
    await sink.deliver(event(1, "partial", text="x"))
    await sink.deliver(event(1))
    await sink.deliver(event(2, "dtmf", digit="5"))
    await sink.deliver(event(3, "eou", end_ms=5))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("00:01.500 caller final") and "'hello'" in lines[0]
    assert "digit=5" in lines[1]
    assert "audio_gap" in render(event(4, "audio_gap", from_ms=1, to_ms=2))
