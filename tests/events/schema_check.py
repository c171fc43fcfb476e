"""Every event published on an EventBus anywhere in the test suite is checked against the
shipped JSON Schema (tests/conftest.py makes this fixture autouse for the whole suite)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
import pytest

from ivr_bridge.events.bus import EventBus
from ivr_bridge.events.types import load_schema
from ivr_bridge.model import UtteranceEvent

CHECKED = {"events": 0}


@cache
def validator() -> Any:
    """The whole schema, as a receiver would use it."""
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@cache
def _envelope() -> Any:
    schema = {k: v for k, v in load_schema().items() if k != "allOf"}
    return jsonschema.Draft202012Validator(schema)


@cache
def _payload(kind: str) -> Any:
    schema = load_schema()
    if kind not in schema["$defs"]:
        return _envelope()  # the envelope's type enum reports it
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{kind}", "$defs": schema["$defs"]})


def problems(event: UtteranceEvent) -> list[str]:
    """The same verdict as ``validator()``, checked in two cheaper steps (envelope, then the
    type's payload) so the whole suite can afford it."""
    doc = event.to_json()
    if _envelope().is_valid(doc) and _payload(event.type).is_valid(doc["data"]):
        return []
    errors = list(_envelope().iter_errors(doc))
    if not errors:
        errors = list(_payload(event.type).iter_errors(doc["data"]))
    return [
        f"{event.type}: {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in errors
    ]


@pytest.fixture(autouse=True)
def validate_published_events(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Collect what is published, validate after the test: the check costs the audio path
    nothing, so accelerated-clock tests keep their timing."""
    seen: list[UtteranceEvent] = []
    original = EventBus.publish

    def publish(self: EventBus, event: UtteranceEvent) -> None:
        seen.append(event)
        original(self, event)

    monkeypatch.setattr(EventBus, "publish", publish)
    yield
    found: list[str] = []
    for event in seen:
        found.extend(problems(event))
    CHECKED["events"] += len(seen)
    if found:
        pytest.fail("events that do not match events.schema.json:\n" + "\n".join(found[:10]))
