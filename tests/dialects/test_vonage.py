"""Vonage websockets: the connected frame, exact 20 ms frames both ways, DTMF, notify marks,
clear, token auth, a scripted session and fuzz."""

from __future__ import annotations

import base64
import json
import math
import os
from array import array
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr_bridge.dialects.base import (
    ClearAudio,
    DialectSettings,
    Disconnect,
    PlayAudio,
    SendEvent,
    SendMark,
    UnsupportedRequest,
    UpgradeRefused,
    UpgradeRequest,
)
from ivr_bridge.dialects.vonage import SPEC, VonageDialect, parse_content_type
from ivr_bridge.dialects.vonage_client import VonageClient
from ivr_bridge.errors import ConfigError, DialectError
from ivr_bridge.model import Audio, CallEnded, CallStarted, ChannelInfo, Dtmf, Mark, MediaFormat

DATA = Path(__file__).resolve().parents[1] / "data"
INVALID, PROTOCOL, UNSUPPORTED = 1007, 1002, 1003
TOKEN = "vonage-uri-token-1"
CALLER = "+447700900123"


def tone(ms: int, rate: int) -> bytes:
    return array(
        "h", (int(8000 * math.sin(2 * math.pi * 700 * i / rate)) for i in range(rate * ms // 1000))
    ).tobytes()


def started(rate: int = 16000, **kw: Any) -> tuple[VonageDialect, VonageClient]:
    client = VonageClient(sample_rate=rate)
    dialect = VonageDialect(**kw)
    dialect.receive_text(client.connected())
    return dialect, client


def error_of(fn: Any, *args: Any) -> DialectError:
    with pytest.raises(DialectError) as info:
        fn(*args)
    return info.value


@pytest.mark.parametrize(("rate", "frame"), [(8000, 320), (16000, 640)])
def test_connected_then_exact_frames(rate: int, frame: int) -> None:
    client = VonageClient(sample_rate=rate, call_uuid="call-1", headers={"from": CALLER})
    dialect = VonageDialect(custom_parameters={"site": "eu"})
    (event,) = dialect.receive_text(client.connected())
    assert event == CallStarted(
        dialect="vonage",
        platform_call_id="call-1",
        stream_id="call-1",
        channels=(ChannelInfo("caller", "mix"),),
        media_format=MediaFormat("l16", rate, 1),
        sample_rate=rate,  # 16 kHz stays 16 kHz
        metadata={"content_type": f"audio/l16;rate={rate}", "sample_rate": str(rate)},
        custom_parameters={"site": "eu", "uuid": "call-1", "from": CALLER},
    )
    pcm = tone(100, rate)
    frames = client.audio_frames(pcm, rate)
    assert [len(f) for f in frames] == [frame] * 5
    audio = [e for f in frames for e in dialect.receive_bytes(f)]
    assert b"".join(a.pcm for a in audio if isinstance(a, Audio)) == pcm
    assert dialect.counters.off_size_frames == 0


def test_24khz_is_resampled_to_16khz() -> None:
    dialect, client = started(24000)
    assert dialect.sample_rate == 16000
    audio = [e for f in client.audio_frames(tone(100, 24000), 24000) for e in
             dialect.receive_bytes(f)]  # fmt: skip
    assert abs(sum(len(a.pcm) for a in audio if isinstance(a, Audio)) - 3200) <= 8


TABLE: list[tuple[str, list[Any] | int]] = [
    ('{"event":"websocket:dtmf","digit":"5","duration":260}', [Dtmf("caller", "5", 260)]),
    ('{"event":"websocket:dtmf","dtmf":{"digit":"#","duration":100}}', [Dtmf("caller", "#", 100)]),
    ('{"event":"websocket:dtmf","digit":"55"}', INVALID),
    ('{"event":"websocket:dtmf","dtmf":"5"}', INVALID),
    ('{"event":"websocket:dtmf","digit":"1","duration":"long"}', INVALID),
    ('{"event":"websocket:notify","payload":{"mark":"m1"}}', [Mark("m1")]),
    ('{"event":"websocket:notify","payload":{"other":1}}', []),
    ('{"event":"websocket:cleared"}', []),
    ('{"event":"websocket:something-new"}', []),
    ('{"event":"websocket:connected","content-type":"audio/l16;rate=8000"}', PROTOCOL),
    ("not json", INVALID),
    ('"a string"', INVALID),
    ('{"event":"x","event":"y"}', INVALID),
]


@pytest.mark.parametrize(("text", "expected"), TABLE)
def test_message_table(text: str, expected: list[Any] | int) -> None:
    dialect, _ = started()
    if isinstance(expected, int):
        assert error_of(dialect.receive_text, text).close_code == expected
    else:
        assert dialect.receive_text(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("audio/l16;rate=16000", 16000),
        ("Audio/L16; rate=8000", 8000),
        ("audio/l16;rate=44100", UNSUPPORTED),
        ("audio/pcmu;rate=8000", UNSUPPORTED),
        ("audio/l16", INVALID),
        ("audio/l16;rate=fast", INVALID),
        ("audio/l16;rate=8000;rate=16000", INVALID),
    ],
)
def test_content_type(value: str, expected: int) -> None:
    if expected in (INVALID, UNSUPPORTED):
        assert error_of(parse_content_type, value).close_code == expected
    else:
        assert parse_content_type(value) == expected


def test_order_and_frame_rules() -> None:
    assert error_of(VonageDialect().receive_bytes, b"\0\0").close_code == PROTOCOL
    assert error_of(VonageDialect().receive_text, VonageClient.dtmf("1")).close_code == PROTOCOL
    assert error_of(VonageDialect().receive_text, '{"event":"websocket:connected"}').close_code == (
        INVALID
    )
    dialect, _ = started(8000)
    assert error_of(dialect.receive_bytes, b"\0\0\0").close_code == INVALID
    assert dialect.receive_bytes(b"") == []
    assert dialect.receive_bytes(b"\0\0" * 100) == [Audio("caller", b"\0\0" * 100)]
    assert dialect.counters.off_size_frames == 1  # tolerated, counted
    assert dialect.receive_eof() == [CallEnded("hangup")]
    assert dialect.receive_eof() == []
    assert error_of(dialect.receive_bytes, b"\0\0").close_code == PROTOCOL


def test_headers_with_numbers_stay_out_of_close_reasons() -> None:
    dialect, _ = started()
    err = error_of(dialect.receive_text, json.dumps({"event": "websocket:dtmf", "digit": CALLER}))
    assert CALLER not in err.reason


# ---- back-channel -------------------------------------------------------------------------


def test_playback_is_exact_twenty_ms_frames() -> None:
    dialect, _ = started(16000)
    dialect.send(PlayAudio(tone(50, 8000), 8000))  # resampled to 16 kHz: 2.5 frames, padded
    out = dialect.data_to_send()
    assert [len(f) for f in out] == [640, 640, 640]
    assert all(isinstance(f, bytes) for f in out)
    assert out[-1][-320:] == bytes(320)


def test_one_playback_is_capped_and_the_rest_counted() -> None:
    dialect, _ = started(8000, max_play_frames=10)
    dialect.send(PlayAudio(tone(300, 8000), 8000))
    assert len(dialect.data_to_send()) == 10
    assert (dialect.counters.playback_frames, dialect.counters.playback_frames_dropped) == (10, 5)


def test_mark_clear_disconnect() -> None:
    dialect, client = started()
    dialect.send(SendMark("greeting"))
    dialect.send(ClearAudio())
    assert [json.loads(m) for m in dialect.data_to_send()] == [
        {"action": "notify", "payload": {"mark": "greeting"}},
        {"action": "clear"},
    ]
    assert dialect.receive_text(client.notify({"mark": "greeting"})) == [Mark("greeting")]
    assert dialect.receive_text(client.cleared()) == []
    with pytest.raises(UnsupportedRequest):
        dialect.send(SendEvent({"text": "x"}))
    dialect.send(Disconnect("completed"))
    assert dialect.close_to_send() == (1000, "completed")
    dialect.send(PlayAudio(tone(20, 8000), 8000))
    assert dialect.data_to_send() == []
    assert dialect.receive_bytes(b"\0\0" * 320) == []  # still in flight after our close
    assert dialect.receive_text("not even json") == []
    assert dialect.counters.after_close == 2


def test_requests_before_connected_and_close() -> None:
    dialect = VonageDialect()
    dialect.send(PlayAudio(tone(20, 8000), 8000))
    assert dialect.data_to_send() == []
    dialect.close("bridge shutting down")
    assert dialect.close_to_send() == (1000, "bridge shutting down")
    assert dialect.capabilities == frozenset({"play", "mark", "clear", "disconnect"})


# ---- a scripted session -----------------------------------------------------------------------


def test_scripted_session_replays() -> None:
    dialect = VonageDialect()
    events: list[Any] = []
    for line in (DATA / "vonage_session.jsonl").read_text().splitlines():
        frame = json.loads(line)
        if "text" in frame:
            events += dialect.receive_text(frame["text"])
        else:
            events += dialect.receive_bytes(base64.b64decode(frame["binary"]))
    start = events[0]
    assert isinstance(start, CallStarted)
    assert start.platform_call_id == "aaaabbbb-cccc-4ddd-8eee-ffff00001111"
    assert start.custom_parameters["language"] == "en-GB"
    audio = [e for e in events if isinstance(e, Audio)]
    assert len(audio) == 50 and all(len(a.pcm) == 640 for a in audio)
    assert [e for e in events if isinstance(e, Dtmf)] == [Dtmf("caller", "8", 260)]
    assert [e for e in events if isinstance(e, Mark)] == [Mark("prompt-1")]
    assert dialect.counters.cleared == 1


# ---- fuzz --------------------------------------------------------------------------------

# FUZZ_EXAMPLES=20000 for a long run off CI.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.text(max_size=10),
    st.sampled_from(["websocket:connected", "websocket:dtmf", "websocket:notify",
                     "audio/l16;rate=16000", "audio/l16;rate=8000", "5"]),
    st.dictionaries(st.sampled_from(["mark", "digit", "duration"]), st.text(max_size=3),
                    max_size=2),
)  # fmt: skip
messages = st.builds(
    json.dumps,
    st.dictionaries(
        st.sampled_from(["event", "content-type", "digit", "duration", "dtmf", "payload", "uuid"]),
        values,
        max_size=4,
    ),
)
frames = st.one_of(st.text(max_size=40), messages, st.binary(max_size=700))


@FUZZ
@given(st.lists(frames, max_size=12), st.booleans())
def test_fuzz_only_events_or_dialect_error(script: list[str | bytes], start: bool) -> None:
    dialect = started()[0] if start else VonageDialect()
    for frame in script:
        try:
            if isinstance(frame, str):
                dialect.receive_text(frame)
            else:
                dialect.receive_bytes(frame)
        except DialectError as err:
            assert err.close_code in (INVALID, PROTOCOL, UNSUPPORTED)
            return
        dialect.send(PlayAudio(b"\x01\x00" * 50, 8000))
        assert all(len(f) == dialect.frame_bytes for f in dialect.data_to_send())


# ---- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "headers", "status"),
    [
        (f"token={TOKEN}", {}, None),
        ("", {"authorization": f"Bearer {TOKEN}"}, None),
        ("", {}, 401),
        ("token=", {}, 401),
        ("token=forged", {}, 403),
        (f"token={TOKEN}", {"origin": "https://evil.example"}, 403),
    ],
)
def test_auth(query: str, headers: dict[str, str], status: int | None) -> None:
    factory = SPEC.make_factory(DialectSettings(auth="token", secrets={"token": TOKEN}))
    req = UpgradeRequest(path="/vonage", query_string=query, headers=headers)
    if status is None:
        assert factory.open(req).name == "vonage"
        return
    with pytest.raises(UpgradeRefused) as info:
        factory.open(req)
    assert info.value.status == status and TOKEN not in info.value.reason


def test_config_checks_and_query_parameters() -> None:
    with pytest.raises(ConfigError):
        SPEC.make_factory(DialectSettings(auth="token"))
    with pytest.raises(ConfigError):
        SPEC.make_factory(DialectSettings(auth="basic", secrets={"token": "b"}))
    with pytest.raises(ConfigError):
        SPEC.make_factory(DialectSettings(options={"max_play_frames": 0}))
    dialect = SPEC.make_factory(DialectSettings()).open(
        UpgradeRequest(path="/vonage", query_string="tenant=t1&token=x")
    )
    (event,) = dialect.receive_text(VonageClient(call_uuid="u").connected())
    assert isinstance(event, CallStarted)
    assert dict(event.custom_parameters) == {"tenant": "t1", "uuid": "u"}
    assert VonageClient().upgrade_path(token="a b") == "/vonage?token=a+b"


# ---- the simulator's encoder shape ---------------------------------------------------------


class Auth:
    scheme = "token"
    secrets = {"token": TOKEN}


def test_encoder_shape_drives_the_dialect_through_its_factory() -> None:
    client = VonageClient(custom_parameters={"lang": "en"}, auth=Auth())
    url, headers = client.upgrade("wss://bridge.example/vonage?site=eu")
    assert headers == {}
    path, _, query = url.removeprefix("wss://bridge.example").partition("?")
    factory = SPEC.make_factory(DialectSettings(auth="token", secrets={"token": TOKEN}))
    dialect = factory.open(UpgradeRequest(path=path, query_string=query))
    (started_event,) = [e for f in client.opening() for e in dialect.receive_text(str(f))]
    assert isinstance(started_event, CallStarted)
    assert started_event.custom_parameters["lang"] == "en"
    assert started_event.custom_parameters["site"] == "eu"
    assert started_event.platform_call_id == client.call_id == client.stream_id
    frame, size = client.audio(tone(20, 16000), "inbound")
    assert isinstance(frame, bytes)
    assert size == 640 and dialect.receive_bytes(bytes(frame))[0] == Audio("caller", bytes(frame))
    client.skip(50)
    assert dialect.receive_text(str(client.digit("4")[0])) == [Dtmf("caller", "4", 260)]
    dialect.send(SendMark("m"))
    dialect.send(ClearAudio())
    replies = [r for out in dialect.data_to_send() for r in client.on_server_frame(out)]
    assert [e for r in replies for e in dialect.receive_text(str(r))] == [Mark("m")]
    assert client.on_server_frame(b"\x00") == client.on_server_frame("nope") == []
    assert client.on_server_frame("[]") == client.closing() == []
    assert VonageClient().upgrade("ws://h/vonage") == ("ws://h/vonage", {})
    with pytest.raises(ValueError):
        VonageClient(tracks=("inbound", "outbound"))
