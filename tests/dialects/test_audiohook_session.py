"""A scripted AudioHook session (tests/data/audiohook_session.jsonl) replayed through the dialect.

Each line is one step: ``in`` (a client text message), ``audio`` (that many ms of PCMU on every
negotiated channel), ``out`` (the exact reply the bridge must have queued) or ``event`` (the next
model event, by type and the fields given). Replies and events are checked in order, and nothing
may be left over at the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ivr_bridge.dialects.audiohook import AudioHookDialect, SessionIdentity
from ivr_bridge.model import DialectEvent

SESSION = Path(__file__).resolve().parents[1] / "data" / "audiohook_session.jsonl"


def _steps() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SESSION.read_text().splitlines() if line.strip()]


def _matches(event: DialectEvent, expected: dict[str, Any]) -> bool:
    if type(event).__name__ != expected["type"]:
        return False
    for key, value in expected.items():
        if key == "type":
            continue
        actual = getattr(event, key)
        if key == "channels":
            actual = [c.name for c in actual]
        if actual != value:
            return False
    return True


def test_replay_scripted_session() -> None:
    steps = _steps()
    first = next(s["in"] for s in steps if "in" in s)
    dialect = AudioHookDialect(identity=SessionIdentity(session_id=first["id"]))
    replies: list[dict[str, Any]] = []
    events: list[DialectEvent] = []
    checked = 0
    for step in steps:
        if "in" in step:
            events += dialect.receive_text(json.dumps(step["in"]))
        elif "audio" in step:
            samples = step["audio"]["ms"] * 8
            events += dialect.receive_bytes(b"\xff" * samples * len(dialect.channels))
        elif "out" in step:
            replies += [json.loads(t) for t in dialect.data_to_send() if isinstance(t, str)]
            assert replies, f"no reply queued for {step['out']['type']}"
            assert replies.pop(0) == step["out"]
            checked += 1
        elif "event" in step:
            assert events, f"no event for {step['event']}"
            event = events.pop(0)
            assert _matches(event, step["event"]), (event, step["event"])
            checked += 1
    replies += [json.loads(t) for t in dialect.data_to_send() if isinstance(t, str)]
    assert replies == [] and events == []
    assert checked == sum(1 for s in steps if "out" in s or "event" in s)
    # The timeline: 0.8 s of audio + 3 s held + 0.5 s discarded = the final position, 4.3 s.
    assert dialect.counters.audio_samples + dialect.counters.gap_ms * 8 == 4300 * 8
    assert dialect.counters.discarded_reported_ms == 3500
    assert dialect.counters.last_rtt_ms == 12
    assert dialect.language == "es-US"
    assert dialect.close_to_send() == (1000, "session closed")
