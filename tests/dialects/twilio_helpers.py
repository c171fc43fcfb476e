"""Shared builders for the Twilio dialect tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ivr_bridge.dialects.twilio import TwilioDialect
from ivr_bridge.simulators.twilio import TwilioStreamEncoder

DELETE = object()
SECRET = "SECRET-4711"  # planted in bad values: must never show up in a close reason


def edit(text: str, path: Sequence[str], value: Any = DELETE) -> str:
    """Set (or delete) one field of a JSON message, addressed by key path."""
    message = json.loads(text)
    target = message
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return json.dumps(message)


def started(
    tracks: Sequence[str] = ("inbound",), **kwargs: Any
) -> tuple[TwilioDialect, TwilioStreamEncoder]:
    enc = TwilioStreamEncoder(tracks=tracks, **kwargs)
    dialect = TwilioDialect()
    assert dialect.receive_text(enc.connected()) == []
    dialect.receive_text(enc.start())
    return dialect, enc


FRAME = bytes(range(160))
