"""SignalWire cXML ``<Stream>``: Twilio's wire shape, with L16 audio and DTMF durations.

Frames are Twilio's (``connected``, ``start`` with streamSid/callSid/accountSid/tracks/
mediaFormat/customParameters, ``media``, ``dtmf``, ``mark``, ``stop``) with three
differences: ``mediaFormat`` may be ``audio/x-L16`` at 8, 16 or 24 kHz besides mu-law 8 kHz,
``dtmf`` carries a ``duration``, and SignalWire acknowledges our ``clear``. Its documentation
shows frames inside a ``{timestamp, direction, eventType, rawEvent}`` wrapper, so a frame with
a ``rawEvent`` object is unwrapped first. Back-channel ``media``/``mark``/``clear`` as Twilio.

Authentication: ``auth = "token"`` checks ``Authorization: Bearer`` (the ``authBearerToken``
attribute of ``<Stream>``). The stream URL may not carry a query string; one is refused.
Option ``l16_byte_order`` ("little", the default, or "big") for L16 streams.
"""

from __future__ import annotations

from typing import Any

from ivr_bridge.dialects import strictjson as sj
from ivr_bridge.dialects.base import DialectSettings, DialectSpec
from ivr_bridge.dialects.twilio import TwilioDialect
from ivr_bridge.dialects.twilio_family import (
    StreamFactory,
    StreamStart,
    byte_order_option,
    fill_gaps_option,
)


class SignalWireDialect(TwilioDialect):
    """One SignalWire stream. See the module docstring for what differs from Twilio."""

    name = "signalwire"
    formats = {"pcmu": (8000,), "l16": (8000, 16000, 24000)}
    dtmf_duration_key = "duration"
    acknowledged_events = frozenset({"clear", "cleared"})

    def __init__(self, *, fill_timestamp_gaps: bool = False, l16_big_endian: bool = False) -> None:
        super().__init__(fill_timestamp_gaps=fill_timestamp_gaps)
        self.l16_big_endian = l16_big_endian

    def unwrap(self, message: dict[str, Any]) -> dict[str, Any]:
        raw = message.get("rawEvent")
        if "event" not in message and raw is not None:
            return sj.obj(raw, "rawEvent")
        return message

    def check_stop(self, body: dict[str, Any], start: StreamStart) -> None:
        if "callSid" in body and sj.text(body["callSid"], "stop.callSid") != start.call_id:
            raise sj.protocol("stop.callSid mismatch")


def make_factory(settings: DialectSettings) -> StreamFactory:
    """SignalWire: auth "none" or "token" (secrets.token, sent as a bearer token)."""

    def build(s: DialectSettings) -> SignalWireDialect:
        return SignalWireDialect(
            fill_timestamp_gaps=fill_gaps_option(s.options),
            l16_big_endian=byte_order_option(s.options, "little"),
        )

    return StreamFactory(
        "signalwire", build, settings, schemes=("none", "token"), refuse_query=True
    )


SPEC = DialectSpec(
    name="signalwire",
    default_path="/signalwire",
    make_factory=make_factory,
    description="SignalWire cXML streams (Twilio shape, mu-law 8 kHz or L16 16/24 kHz, bearer)",
)
