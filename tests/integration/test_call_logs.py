"""Every log line a call causes carries its call id, and none carries what the caller said.

A real bridge (embedded recognizer, tones engine) with a recognizer outage in the middle of
the call, logged through the production configuration (``configure_logging``, JSON lines) so
``merge_contextvars`` and the redaction step are the ones the service runs.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge.clock import ScaledClock
from ivr_bridge.local.faults import FaultPlan
from ivr_bridge.local.tones import VOCABULARY, synthesize_script
from ivr_bridge.logs import configure_logging
from ivr_bridge.simulate import simulate_pcm

# Modules whose every line during a call belongs to that call.
CALL_MODULES = ("ivr_bridge/call.py", "ivr_bridge/recognition/", "ivr_bridge/dialects/")


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    config = structlog.get_config()
    processors = list(config["processors"])
    # Where each line comes from, so the test can tell the call's lines from the recognizer's.
    processors.insert(
        0,
        structlog.processors.CallsiteParameterAdder(
            [structlog.processors.CallsiteParameter.PATHNAME]
        ),
    )
    structlog.configure(processors=processors)
    try:
        yield out
    finally:
        structlog.reset_defaults()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


async def test_call_with_an_outage_logs_its_id_on_every_line_and_no_transcript(
    bridge: Any, json_logs: io.StringIO
) -> None:
    clock = ScaledClock(speed=20)
    utterances = [
        [VOCABULARY[(i * 7 + j * 3) % len(VOCABULARY)] for j in range(3)] for i in range(6)
    ]
    app, got = await bridge(
        engine="tones",
        clock=clock,
        faults=FaultPlan(end_after_ms=4000, end_status="UNAVAILABLE", sessions=frozenset({1})),
    )
    await simulate_pcm(app.url(), synthesize_script(utterances), clock=clock, close_timeout_s=600)
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    finals = [str(e.data["text"]) for e in got.of(call_id, "final")]
    assert finals == [" ".join(u) for u in utterances]  # the outage lost nothing

    raw = json_logs.getvalue()
    records = [json.loads(line) for line in raw.splitlines() if line.strip()]
    mine = [r for r in records if str(r.get("pathname", "")).replace("\\", "/").endswith(".py")]
    call_lines = [
        r
        for r in mine
        if any(part in str(r["pathname"]).replace("\\", "/") for part in CALL_MODULES)
    ]
    events = {r["event"] for r in call_lines}
    # The outage shows in the logs: the session failed and was retried.
    assert "recognition_retry" in events, sorted(events)
    assert "call_started" in events and "call_ended" in events
    for record in call_lines:
        assert record.get("call_id") == call_id, record
        assert record.get("dialect") == "twilio", record
    # No transcript anywhere in the logs, the recognizer's lines included.
    vocabulary = set(VOCABULARY)
    for text in finals:
        assert text not in raw
    for record in records:
        assert not vocabulary.intersection(_strings(record)), record
