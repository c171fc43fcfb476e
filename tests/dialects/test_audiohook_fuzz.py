"""Property tests: whatever Genesys (or an attacker) sends, only events or DialectError come out.

Generators go from blind to sharp: random text and bytes, random JSON shaped like AudioHook
messages (with a valid envelope, so the parameters get exercised), single mutations of a valid
session, and valid messages in any order. Hostile upgrade headers go through the factory and
may only be refused with UpgradeRefused. ``FUZZ_EXAMPLES=20000`` runs them longer, off CI.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr_bridge.dialects.audiohook import (
    CHANNEL_NAMES,
    AudioHookDialect,
    AudioHookFactory,
    SessionIdentity,
)
from ivr_bridge.dialects.audiohook_auth import parse_dictionary
from ivr_bridge.dialects.audiohook_client import AudioHookClient
from ivr_bridge.dialects.base import DialectSettings, UpgradeRefused, UpgradeRequest
from ivr_bridge.errors import DialectError
from ivr_bridge.model import Audio, CallEnded, CallStarted, MediaGap

SID = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b"
TYPES = ["open", "ping", "update", "paused", "resumed", "discarded", "error", "close", "dtmf"]
FIELDS = [
    "organizationId", "conversationId", "participant", "media", "language", "customConfig",
    "inputVariables", "supportedLanguages", "continuedSessions", "rtt", "start", "discarded",
    "code", "message", "retryAfter", "reason", "digit", "id", "ani", "type", "format",
    "channels", "rate",
]  # fmt: skip
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**25), max_value=10**25),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.sampled_from(["PT0S", "PT1.5S", "PT.5S", "PCMU", "audio", "external", "internal", "end"]),
    st.sampled_from([SID, "00000000-0000-0000-0000-000000000000", "en-US", 8000, 429, "\ud800"]),
)
keys = st.one_of(st.sampled_from(FIELDS), st.text(max_size=6))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=14,
)


def feed(dialect: AudioHookDialect, frame: str | bytes) -> list[Any]:
    try:
        if isinstance(frame, str):
            events = dialect.receive_text(frame)
        else:
            events = dialect.receive_bytes(frame)
    except DialectError as err:
        assert 1000 <= err.close_code <= 1011 and err.reason and len(err.reason) <= 120
        assert dialect.state == "ended" or dialect.close_to_send() is not None
        return []
    assert isinstance(events, list)
    for frame_out in dialect.data_to_send():
        if isinstance(frame_out, str):
            json.loads(frame_out)  # everything we send is valid JSON
    return events


def mid_call() -> tuple[AudioHookDialect, AudioHookClient]:
    client = AudioHookClient(session_id=SID)
    dialect = AudioHookDialect(identity=SessionIdentity(session_id=SID))
    dialect.receive_text(client.open())
    for reply in dialect.data_to_send():
        assert isinstance(reply, str)
        client.receive(reply)
    frame = client.audio(b"\x00\x01" * 160)
    assert frame is not None
    dialect.receive_bytes(frame)
    return dialect, client


@FUZZ
@given(st.text(max_size=300))
def test_random_text(text: str) -> None:
    feed(AudioHookDialect(), text)
    feed(mid_call()[0], text)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_as_audio_and_as_text(data: bytes) -> None:
    feed(AudioHookDialect(), data)
    feed(mid_call()[0], data)
    feed(mid_call()[0], data.decode("utf-8", errors="surrogateescape"))


@FUZZ
@given(st.sampled_from(TYPES), st.one_of(json_values, st.dictionaries(keys, json_values)))
def test_random_parameters_in_a_valid_envelope(kind: str, params: Any) -> None:
    for dialect, seq in ((AudioHookDialect(), 1), (mid_call()[0], 2)):
        message = {
            "version": "2",
            "id": SID,
            "type": kind,
            "seq": seq,
            "serverseq": 0,
            "position": "PT0.02S",
            "parameters": params,
        }
        feed(dialect, json.dumps(message))


def valid_session() -> list[str | bytes]:
    client = AudioHookClient(session_id=SID, custom_config={"k": [1, 2]})
    frames: list[str | bytes] = [client.open()]
    client.receive(
        json.dumps(
            {
                "version": "2",
                "type": "opened",
                "seq": 1,
                "clientseq": 1,
                "id": SID,
                "parameters": {
                    "media": [
                        {
                            "type": "audio",
                            "format": "PCMU",
                            "channels": ["external", "internal"],
                            "rate": 8000,
                        }
                    ]
                },
            }
        )
    )
    audio = client.audio(b"\x10\x00" * 800)
    assert audio is not None
    frames += [audio, client.ping(5), client.pause()]
    client.skip(300)
    frames += [client.resume(), client.discard(100), client.update("es-US")]
    frames += [client.error(429, "slow", 500), client.dtmf("5"), client.close()]
    return frames


SESSION = valid_session()


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
def mutated_session(draw: st.DrawFn) -> list[str | bytes]:
    """The valid session with one frame changed: a field replaced or removed, text edited, or
    audio cut."""
    index = draw(st.integers(min_value=0, max_value=len(SESSION) - 1))
    frames = list(SESSION)
    frame = frames[index]
    if isinstance(frame, bytes):
        cut = draw(st.integers(min_value=0, max_value=len(frame)))
        frames[index] = frame[:cut]
        return frames
    how = draw(st.sampled_from(["replace", "delete", "text"]))
    if how == "text":
        pos = draw(st.integers(min_value=0, max_value=len(frame)))
        cut = draw(st.integers(min_value=0, max_value=5))
        frames[index] = frame[:pos] + draw(st.text(max_size=5)) + frame[pos + cut :]
        return frames
    message = json.loads(frame)
    path = draw(st.sampled_from(paths(message)))
    parent = message
    for step in path[:-1]:
        parent = parent[step]
    if how == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    frames[index] = json.dumps(message)
    return frames


def first_channel(dialect: AudioHookDialect) -> str:
    return CHANNEL_NAMES[dialect.channels[0]] if dialect.channels else ""


@FUZZ
@given(mutated_session())
def test_mutated_valid_sessions(frames: list[str | bytes]) -> None:
    dialect = AudioHookDialect(identity=SessionIdentity(session_id=SID))
    audio_samples = gap_ms = started = ended = 0
    for frame in frames:
        for event in feed(dialect, frame):
            started += isinstance(event, CallStarted)
            ended += isinstance(event, CallEnded)
            # Samples are counted per channel: follow the first negotiated one.
            if isinstance(event, Audio) and event.channel == first_channel(dialect):
                audio_samples += len(event.pcm) // 2
            if isinstance(event, MediaGap):
                assert event.duration_ms > 0
                gap_ms += event.duration_ms
    assert started <= 1 and ended <= 1
    assert dialect.counters.audio_samples == audio_samples
    assert dialect.counters.gap_ms == gap_ms


@FUZZ
@given(st.lists(st.sampled_from([*SESSION, b"\xff", b"", "{}", "[]"]), max_size=20))
def test_any_order_of_valid_frames(frames: list[str | bytes]) -> None:
    dialect = AudioHookDialect(identity=SessionIdentity(session_id=SID))
    for frame in frames:
        finished = dialect.state in ("closed", "ended")
        try:
            dialect.receive_text(frame) if isinstance(frame, str) else dialect.receive_bytes(frame)
        except DialectError:
            continue
        assert not finished


header_values = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            'sig1=("@request-target");keyid="k";nonce="n";created=1',
            "sig1=:AAAA:",
            'sig1=("x-api-key" "@authority");keyid="k";nonce="aaaaaaaaaaaaaaaaaaaaaaaa";created=0',
            "k",
            SID,
        ]
    ),
)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "x-api-key",
                "signature",
                "signature-input",
                "host",
                "origin",
                "audiohook-session-id",
                "audiohook-organization-id",
                "audiohook-correlation-id",
            ]
        ),
        header_values,
    ),
    st.text(max_size=30),
)
def test_hostile_upgrade_headers_are_refused_cleanly(headers: dict[str, str], path: str) -> None:
    factory = AudioHookFactory(
        DialectSettings(auth="audiohook", secrets={"k": "c2VjcmV0"}, options={})
    )
    request = UpgradeRequest(path="/" + path, headers=headers, now=1000.0)
    try:
        factory.open(request)
    except UpgradeRefused as refused:
        assert refused.status in (400, 401, 403)
        assert "c2VjcmV0" not in refused.reason


@FUZZ
@given(
    st.one_of(
        st.text(max_size=200),
        st.lists(
            st.sampled_from(["sig1=", '("a" "b")', ";k=", '"s"', ":AAA=:", "?1", "-5", ",", " "]),
            max_size=12,
        ).map("".join),
    )
)
def test_structured_field_parser_only_raises_value_error(text: str) -> None:
    try:
        parsed = parse_dictionary(text)
    except ValueError:
        return
    assert isinstance(parsed, dict)
