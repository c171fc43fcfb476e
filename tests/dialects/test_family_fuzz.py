"""Property tests for every Twilio-family dialect: whatever arrives, only events or
DialectError come out, fresh or in the middle of a call. ``FUZZ_EXAMPLES`` runs them longer."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr_bridge.dialects.exotel import ExotelDialect
from ivr_bridge.dialects.plivo import PlivoDialect
from ivr_bridge.dialects.signalwire import SignalWireDialect
from ivr_bridge.dialects.telnyx import TelnyxDialect
from ivr_bridge.dialects.twilio_family import TwilioStyleDialect
from ivr_bridge.errors import DialectError
from ivr_bridge.model import (
    Audio,
    CallEnded,
    CallStarted,
    Dtmf,
    Mark,
    MediaGap,
)
from ivr_bridge.simulators.twilio import TwilioStreamEncoder
from ivr_bridge.simulators.twilio_family import (
    ExotelStreamEncoder,
    PlivoStreamEncoder,
    SignalWireStreamEncoder,
    TelnyxStreamEncoder,
)

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PAIRS: list[tuple[type[TwilioStyleDialect], type[TwilioStreamEncoder]]] = [
    (SignalWireDialect, SignalWireStreamEncoder),
    (TelnyxDialect, TelnyxStreamEncoder),
    (PlivoDialect, PlivoStreamEncoder),
    (ExotelDialect, ExotelStreamEncoder),
]
# fmt: off
FIELDS = [
    "event", "sequenceNumber", "sequence_number", "streamSid", "stream_id", "streamId",
    "stream_sid", "start", "media", "dtmf", "mark", "stop", "name", "rawEvent",
    "extra_headers", "callSid", "call_control_id", "callId", "call_sid", "media_format",
    "mediaFormat", "encoding", "sample_rate", "sampleRate", "payload", "track", "digit",
    "duration", "timestamp", "chunk", "tracks", "custom_parameters",
]
EVENTS = ["connected", "start", "media", "dtmf", "mark", "stop", "playedStream",
          "clearedAudio", "clear", "error", "x"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.sampled_from(
        [
            *EVENTS,
            "inbound",
            "outbound",
            "PCMU",
            "L16",
            "audio/x-raw",
            "8000",
            "16000",
            "//8=",
            "AAA=",
            "S",
            "\ud800",
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=5)), inner, max_size=5),
    ),
    max_leaves=10,
)
messages = st.fixed_dictionaries(
    {"event": st.one_of(st.sampled_from(EVENTS), scalars)},
    optional={k: json_values for k in FIELDS[1:]},
)
# fmt: on
EVENT_TYPES = (Audio, CallEnded, CallStarted, Dtmf, Mark, MediaGap)


def feed(dialect: TwilioStyleDialect, data: str | bytes) -> None:
    try:
        events = (
            dialect.receive_text(data) if isinstance(data, str) else dialect.receive_bytes(data)
        )
    except DialectError as err:
        assert 1000 <= err.close_code < 5000 and len(err.reason) <= 120
        return
    assert all(isinstance(e, EVENT_TYPES) for e in events)


def fresh_and_started(
    cls: type[TwilioStyleDialect], enc_cls: type[TwilioStreamEncoder]
) -> list[TwilioStyleDialect]:
    live = cls(fill_timestamp_gaps=True)
    for frame in enc_cls(stream_sid="S").opening():
        assert isinstance(frame, str)
        live.receive_text(frame)
    return [cls(), live]


@pytest.mark.parametrize(("cls", "enc_cls"), PAIRS)
@FUZZ
@given(data=st.one_of(st.text(max_size=200), st.binary(max_size=64)))
def test_arbitrary_text_and_bytes(
    cls: type[TwilioStyleDialect], enc_cls: type[TwilioStreamEncoder], data: str | bytes
) -> None:
    for dialect in fresh_and_started(cls, enc_cls):
        feed(dialect, data)


@pytest.mark.parametrize(("cls", "enc_cls"), PAIRS)
@FUZZ
@given(message=messages)
def test_family_shaped_json(
    cls: type[TwilioStyleDialect], enc_cls: type[TwilioStreamEncoder], message: dict[str, Any]
) -> None:
    text = json.dumps(message)
    for dialect in fresh_and_started(cls, enc_cls):
        feed(dialect, text)


@pytest.mark.parametrize(("cls", "enc_cls"), PAIRS)
@FUZZ
@given(path_index=st.integers(0, 200), value=json_values, which=st.integers(0, 3))
def test_single_mutations_of_a_valid_call(
    cls: type[TwilioStyleDialect],
    enc_cls: type[TwilioStreamEncoder],
    path_index: int,
    value: Any,
    which: int,
) -> None:
    enc = enc_cls(stream_sid="S")
    frames = [*enc.opening(), enc.media(b"\x00\x00" * 80), enc.dtmf("1"), enc.mark("m")]
    target = json.loads(frames[which % len(frames)])
    paths: list[list[str]] = []

    def walk(node: Any, path: list[str]) -> None:
        if isinstance(node, dict):
            for key, item in node.items():
                paths.append([*path, key])
                walk(item, [*path, key])

    walk(target, [])
    path = paths[path_index % len(paths)]
    node = target
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    frames[which % len(frames)] = json.dumps(target)
    dialect = cls(fill_timestamp_gaps=True)
    for frame in frames:
        assert isinstance(frame, str)
        feed(dialect, frame)
