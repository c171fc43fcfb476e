"""Property tests: whatever Twilio (or an attacker) sends, only DialectError comes out.

Three generators, from blind to sharp: random text, random JSON shaped like Twilio messages,
and single mutations of a valid call. Each input goes to a fresh dialect and to one in the
middle of a call, and a sequence test checks the counters stay consistent.
``FUZZ_EXAMPLES=20000`` runs them longer, off CI.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr_bridge.dialects.twilio import TwilioDialect
from ivr_bridge.errors import DialectError
from ivr_bridge.model import Audio, CallEnded
from ivr_bridge.simulators.twilio import TwilioStreamEncoder
from tests.dialects.twilio_helpers import FRAME, started

FIELDS = [
    "event", "sequenceNumber", "streamSid", "start", "media", "dtmf", "mark", "stop",
    "accountSid", "callSid", "tracks", "mediaFormat", "customParameters", "encoding",
    "sampleRate", "channels", "track", "chunk", "timestamp", "payload", "digit", "name",
    "protocol", "version",
]  # fmt: skip
EVENTS = ["connected", "start", "media", "dtmf", "mark", "stop", "clear", "", "x"]
# FUZZ_EXAMPLES=20000 for a long run off CI.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(EVENTS + ["inbound", "outbound", "inbound_track", "audio/x-mulaw", "//8="]),
    st.sampled_from(["1", "2", "0", "-1", "8000", "MZ1", "CA1", "AC1", "\ud800"]),
)
keys = st.one_of(st.sampled_from(FIELDS), st.text(max_size=6))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=12,
)
messages = st.fixed_dictionaries(
    {"event": st.one_of(st.sampled_from(EVENTS), scalars)},
    optional={k: json_values for k in FIELDS[1:]},
)


def feed(dialect: TwilioDialect, text: str) -> None:
    try:
        events = dialect.receive_text(text)
    except DialectError as err:
        assert 1000 <= err.close_code <= 1011 and err.reason
        assert len(err.reason) <= 120
        return
    assert isinstance(events, list)


def mid_call() -> TwilioDialect:
    dialect, enc = started(tracks=("inbound", "outbound"), stream_sid="MZ1", call_sid="CA1")
    dialect.receive_text(enc.media(FRAME))
    return dialect


@FUZZ
@given(st.text(max_size=300))
def test_random_text(text: str) -> None:
    feed(TwilioDialect(), text)
    feed(mid_call(), text)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_decoded_as_text(data: bytes) -> None:
    text = data.decode("utf-8", errors="surrogateescape")
    feed(TwilioDialect(), text)
    feed(mid_call(), text)


@FUZZ
@given(st.one_of(messages, json_values))
def test_random_json_structures(value: Any) -> None:
    text = json.dumps(value)
    feed(TwilioDialect(), text)
    feed(mid_call(), text)


def valid_call() -> list[str]:
    enc = TwilioStreamEncoder(
        tracks=("inbound", "outbound"),
        stream_sid="MZ1",
        call_sid="CA1",
        account_sid="AC1",
        custom_parameters={"k": "v"},
    )
    return [
        enc.connected(),
        enc.start(),
        enc.media(FRAME),
        enc.media(FRAME, track="outbound"),
        enc.dtmf("5"),
        enc.mark("m"),
        enc.stop(),
    ]


CALL = valid_call()


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*prefix, i))
    return out


@st.composite
def mutated_call(draw: st.DrawFn) -> list[str]:
    """The valid call with one message changed: a field replaced or removed, or text edited."""
    index = draw(st.integers(min_value=0, max_value=len(CALL) - 1))
    calls = list(CALL)
    how = draw(st.sampled_from(["replace", "delete", "text"]))
    if how == "text":
        text = calls[index]
        pos = draw(st.integers(min_value=0, max_value=len(text)))
        cut = draw(st.integers(min_value=0, max_value=5))
        calls[index] = text[:pos] + draw(st.text(max_size=5)) + text[pos + cut :]
        return calls
    message = json.loads(calls[index])
    path = draw(st.sampled_from(paths(message)))
    parent = message
    for step in path[:-1]:
        parent = parent[step]
    if how == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    calls[index] = json.dumps(message)
    return calls


@FUZZ
@given(mutated_call())
def test_mutated_valid_calls(call: list[str]) -> None:
    dialect = TwilioDialect()
    audio = 0
    for text in call:
        try:
            events = dialect.receive_text(text)
        except DialectError:
            continue  # the bridge would close here; keep feeding to explore later states
        audio += sum(isinstance(e, Audio) for e in events)
        if any(isinstance(e, CallEnded) for e in events):
            assert dialect.stopped
    assert dialect.counters.media_frames == audio
    assert dialect.counters.messages == len(call)


@FUZZ
@given(st.lists(st.sampled_from(CALL + ['{"event":"x"}', "{", "[]"]), max_size=20))
def test_any_order_of_valid_messages(call: list[str]) -> None:
    dialect = TwilioDialect()
    for text in call:
        was_stopped = dialect.stopped
        try:
            dialect.receive_text(text)
        except DialectError as err:
            if was_stopped:
                assert err.close_code == 1002
        else:
            assert not was_stopped


def test_nesting_near_the_recursion_limit() -> None:
    # Depths around the interpreter's limit: parsing or re-encoding a custom parameter may hit
    # RecursionError at either step; it must always come out as DialectError (or succeed).
    for depth in range(100, 1200, 37):
        nested = "[" * depth + "]" * depth
        text = json.loads(TwilioStreamEncoder().start())
        text["start"]["customParameters"] = {"deep": "PLACEHOLDER"}
        raw = json.dumps(text).replace('"PLACEHOLDER"', nested)
        feed(TwilioDialect(), raw)
