"""Shared builders for the Twilio-family media tests: a started dialect per platform, and
media messages laid out exactly as that platform's simulator encoder lays them out."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ivr_bridge.dialects.exotel import ExotelDialect
from ivr_bridge.dialects.plivo import PlivoDialect
from ivr_bridge.dialects.signalwire import SignalWireDialect
from ivr_bridge.dialects.telnyx import TelnyxDialect
from ivr_bridge.dialects.twilio import TwilioDialect
from ivr_bridge.dialects.twilio_family import TwilioStyleDialect
from ivr_bridge.simulate import make_encoder
from ivr_bridge.simulators.twilio import TwilioStreamEncoder

STREAM_ID = "MZ0123456789abcdef"  # plain characters: the media layout applies


@dataclass(frozen=True)
class Platform:
    name: str
    dialect: Callable[[], TwilioStyleDialect]
    tracks: str  # the simulator's tracks option: "inbound" or "both"
    frame_bytes: int  # one 20 ms frame in the platform's codec (whole 16-bit samples for L16)


PLATFORMS = [
    Platform("twilio", lambda: TwilioDialect(fill_timestamp_gaps=True), "both", 160),
    Platform("signalwire", lambda: SignalWireDialect(fill_timestamp_gaps=True), "both", 640),
    Platform("telnyx", lambda: TelnyxDialect(fill_timestamp_gaps=True), "inbound", 160),
    Platform("plivo", lambda: PlivoDialect(fill_timestamp_gaps=True), "both", 320),
    Platform("exotel", lambda: ExotelDialect(fill_timestamp_gaps=True), "inbound", 320),
]
NAMES = [p.name for p in PLATFORMS]


def encoder(platform: Platform) -> TwilioStreamEncoder:
    enc = make_encoder(platform.name, tracks=platform.tracks, stream_sid=STREAM_ID)
    assert isinstance(enc, TwilioStreamEncoder)
    return enc


def started(platform: Platform, enc: TwilioStreamEncoder) -> TwilioStyleDialect:
    """A dialect that has taken the platform's opening frames (so media may follow)."""
    dialect = platform.dialect()
    for frame in enc.opening():
        assert isinstance(frame, str)
        dialect.receive_text(frame)
    assert dialect.started
    return dialect


def media_message(
    enc: TwilioStreamEncoder,
    seq: int,
    *,
    track: str = "inbound",
    chunk: int = 1,
    timestamp: int = 0,
    payload: bytes = b"",
) -> dict[str, Any]:
    """The platform's media message as a dict, its keys in the platform's own order."""
    b64 = base64.b64encode(payload).decode("ascii")
    return enc._media_message(str(seq), track, str(chunk), str(timestamp), b64)


def compact(message: dict[str, Any]) -> str:
    """JSON as the platforms send it: no spaces, keys in the dict's order."""
    return json.dumps(message, separators=(",", ":"))
