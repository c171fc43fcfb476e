"""Typed events and the shipped JSON Schema: one class per type, the schema in step with the
classes, the schema able to reject a wrong event, and the mapping view of a typed payload."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, cast

import pytest

from ivr_bridge.events.types import EVENT_TYPES, PAYLOADS, load_schema
from ivr_bridge.model import UtteranceEvent

from .factories import make
from .schema_check import problems

ROOT = Path(__file__).resolve().parents[2]


def test_schema_covers_every_type_with_the_class_fields() -> None:
    schema = load_schema()
    assert sorted(schema["properties"]["type"]["enum"]) == sorted(EVENT_TYPES)
    for name, cls in EVENT_TYPES.items():
        names = [f.name for f in dataclasses.fields(cast(Any, cls))]  # each is a dataclass
        data_schema = schema["$defs"][name]
        assert sorted(data_schema["required"]) == sorted(names), name
        assert sorted(data_schema["properties"]) == sorted(names), name
    assert len(PAYLOADS) == len(EVENT_TYPES)


def test_the_repo_file_is_the_packaged_file() -> None:
    on_disk = json.loads((ROOT / "ivr_bridge" / "schema" / "events.schema.json").read_text())
    assert on_disk == load_schema()
    assert "events.schema.json" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("kind", ["final", "partial", "dtmf", "mark", "call_started", "call_ended"])
def test_typed_events_validate(kind: str) -> None:
    assert problems(make("c", 1, kind)) == []


def test_the_schema_rejects_what_is_wrong() -> None:
    wrong = UtteranceEvent("final", "c", None, 1, 0, 0.0, {"text": "x"})
    assert any("start_ms" in p for p in problems(wrong))
    unknown = UtteranceEvent("mystery", "c", None, 1, 0, 0.0, {})
    assert problems(unknown)
    extra = UtteranceEvent("eou", "c", None, 1, 0, 0.0, {"end_ms": 5, "transcript": "secret"})
    assert problems(extra)


def test_a_typed_payload_reads_like_its_json() -> None:
    event = make("c", 2, "final", channel="caller")
    assert event.type == "final"
    assert event.data["words"] == [{"text": "hello", "start_ms": 100, "end_ms": 900}]
    assert dict(event.data) == event.to_json()["data"]
    assert "TYPE" not in event.data and len(event.data) == 6
    with pytest.raises(KeyError):
        event.data["TYPE"]
    with pytest.raises(ValueError, match="not a 'partial' event"):
        UtteranceEvent("partial", "c", None, 1, 0, 0.0, make("c", 1, "dtmf").data)
