"""Scripted sessions per Twilio-family platform, stored in tests/data/dialects, replayed.

Each file is JSON lines: a frame as the platform sends it and the events the dialect made of
it, rendered compactly. Replaying them pins the wire format of both sides: a change to a
dialect or to an encoder that alters what is parsed shows up as a diff here. Regenerate
after an intended change with ``REGENERATE_SESSIONS=1`` set while running this module.
"""

from __future__ import annotations

import json
import os
from array import array
from pathlib import Path
from typing import Any

import pytest

from ivr_bridge.dialects.exotel import ExotelDialect
from ivr_bridge.dialects.plivo import PlivoDialect
from ivr_bridge.dialects.signalwire import SignalWireDialect
from ivr_bridge.dialects.telnyx import TelnyxDialect
from ivr_bridge.dialects.twilio import TwilioDialect
from ivr_bridge.dialects.twilio_family import TwilioStyleDialect
from ivr_bridge.model import Audio, CallEnded, CallStarted, Dtmf, Mark, MediaGap
from ivr_bridge.simulators.twilio import TwilioStreamEncoder
from ivr_bridge.simulators.twilio_family import (
    ExotelStreamEncoder,
    PlivoStreamEncoder,
    SignalWireStreamEncoder,
    TelnyxStreamEncoder,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "dialects"
PLATFORMS: dict[str, tuple[type[TwilioStyleDialect], type[TwilioStreamEncoder]]] = {
    "twilio": (TwilioDialect, TwilioStreamEncoder),
    "signalwire": (SignalWireDialect, SignalWireStreamEncoder),
    "telnyx": (TelnyxDialect, TelnyxStreamEncoder),
    "plivo": (PlivoDialect, PlivoStreamEncoder),
    "exotel": (ExotelDialect, ExotelStreamEncoder),
}


def render(event: Any) -> str:
    if isinstance(event, CallStarted):
        return (
            f"started {event.dialect} {event.platform_call_id} {event.stream_id}"
            f" {event.media_format.encoding}/{event.media_format.sample_rate}"
            f" -> {event.sample_rate} {','.join(c.name for c in event.channels)}"
            f" {json.dumps(dict(event.custom_parameters), sort_keys=True)}"
        )
    if isinstance(event, Audio):
        return f"audio {event.channel} {len(event.pcm)} {sum(event.pcm) % 65521}"
    if isinstance(event, Dtmf):
        return f"dtmf {event.channel} {event.digit} {event.duration_ms}"
    if isinstance(event, Mark):
        return f"mark {event.name}"
    if isinstance(event, MediaGap):
        return f"gap {event.channel} {event.duration_ms}"
    assert isinstance(event, CallEnded)
    return f"ended {event.reason}"


def script(name: str) -> list[str | bytes]:
    """A call: opening, 3 frames of a ramp, a key press, a 200 ms hole, a mark echo, goodbye."""
    _, enc_cls = PLATFORMS[name]
    enc = enc_cls(
        account_sid="AC0", call_sid="CALL0", stream_sid="STREAM0", custom_parameters={"p": "1"}
    )
    samples = enc.sample_rate * enc.frame_ms // 1000
    ramp = array("h", ((i * 37) % 4000 - 2000 for i in range(samples))).tobytes()
    frames: list[str | bytes] = list(enc.opening())
    frames += [enc.audio(ramp, "inbound")[0] for _ in range(3)]
    frames += enc.digit("5")
    enc.skip(200)
    frames.append(enc.audio(ramp, "inbound")[0])
    frames.append(enc.mark("prompt-1"))
    frames += enc.closing()
    return frames


def replay(name: str, frames: list[str | bytes]) -> list[dict[str, Any]]:
    dialect_cls, _ = PLATFORMS[name]
    dialect = dialect_cls(fill_timestamp_gaps=True)
    out: list[dict[str, Any]] = []
    for frame in frames:
        assert isinstance(frame, str)
        out.append({"frame": frame, "events": [render(e) for e in dialect.receive_text(frame)]})
    out.append({"frame": None, "events": [render(e) for e in dialect.receive_eof()]})
    return out


@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_recorded_session_replays_to_the_same_events(name: str) -> None:
    path = DATA / f"{name}.jsonl"
    if os.environ.get("REGENERATE_SESSIONS"):
        DATA.mkdir(parents=True, exist_ok=True)
        lines = replay(name, script(name))
        path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    recorded = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    frames = [line["frame"] for line in recorded if line["frame"] is not None]
    assert replay(name, frames) == recorded  # the dialect reads the recording as before
    assert script(name) == frames  # and the platform's encoder still writes it
    rendered = [e for line in recorded for e in line["events"]]
    assert rendered[0].startswith(f"started {name} CALL0 STREAM0")
    assert any(e.startswith("dtmf caller 5") for e in rendered)
    assert any(e.startswith("gap caller 200") for e in rendered)
    assert "mark prompt-1" in rendered
    assert rendered[-1] in ("ended stop", "ended hangup")
