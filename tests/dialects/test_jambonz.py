"""jambonz listen: metadata frame, L16 mono/stereo at every rate, playout notices, back-channel,
auth, a scripted session and fuzz."""

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
from ivr_bridge.dialects.freeswitch import (
    JAMBONZ_SPEC,
    SPECS,
    AudioForkDialect,
    ForkDefaults,
)
from ivr_bridge.dialects.freeswitch_client import AudioForkClient
from ivr_bridge.errors import ConfigError, DialectError
from ivr_bridge.model import Audio, CallEnded, CallStarted, ChannelInfo, Dtmf, Mark, MediaFormat

DATA = Path(__file__).resolve().parents[1] / "data"
INVALID, PROTOCOL, UNSUPPORTED = 1007, 1002, 1003
CALLER_NUMBER = "+15550100123"
SECRET = "jambonz-wsauth-password"


def tone(ms: int, rate: int, freq: int = 700) -> bytes:
    return array(
        "h", (int(8000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(rate * ms // 1000))
    ).tobytes()


def started(**kw: Any) -> tuple[AudioForkDialect, AudioForkClient]:
    defaults = kw.pop("defaults", ForkDefaults())
    client = AudioForkClient("jambonz", **kw)
    dialect = AudioForkDialect("jambonz", defaults=defaults)
    dialect.receive_text(client.metadata_frame())
    return dialect, client


def error_of(fn: Any, *args: Any) -> DialectError:
    with pytest.raises(DialectError) as info:
        fn(*args)
    return info.value


# ---- the metadata frame -----------------------------------------------------------------------


def test_metadata_frame_becomes_call_started() -> None:
    client = AudioForkClient(
        "jambonz",
        sample_rate=16000,
        call_sid="c0ffee00-1111-4222-8333-444455556666",
        call_attributes={"from": CALLER_NUMBER, "to": "+15550100999", "headers": {"X-A": "1"}},
        metadata={"campaign": "spring", "priority": 2},
    )
    dialect = AudioForkDialect("jambonz")
    (event,) = dialect.receive_text(client.metadata_frame())
    assert isinstance(event, CallStarted)
    assert event.dialect == "jambonz"
    assert event.platform_call_id == "c0ffee00-1111-4222-8333-444455556666"
    assert event.channels == (ChannelInfo("caller", "mono"),)
    assert event.media_format == MediaFormat("l16", 16000, 1)
    assert event.sample_rate == 16000  # 16 kHz stays 16 kHz
    assert event.metadata["from"] == CALLER_NUMBER and event.metadata["to"] == "+15550100999"
    assert event.metadata["headers"] == '{"X-A":"1"}'
    assert event.metadata["mix_type"] == "mono" and event.metadata["sample_rate"] == "16000"
    assert dict(event.custom_parameters) == {"campaign": "spring", "priority": "2"}


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_mono_audio_at_every_rate(rate: int) -> None:
    dialect, client = started(sample_rate=rate)
    assert dialect.sample_rate == (rate if rate <= 16000 else 16000)
    pcm = tone(200, rate)
    audio = [e for f in client.audio_frames(pcm, rate) for e in dialect.receive_bytes(f)]
    out = b"".join(a.pcm for a in audio if isinstance(a, Audio))
    if rate <= 16000:
        assert out == pcm
    else:
        assert abs(len(out) - 2 * 16000 // 5) <= 8  # 200 ms at 16 kHz after resampling


def test_stereo_is_split_into_two_channels() -> None:
    dialect, client = started(mix_type="stereo", sample_rate=16000)
    assert dialect.mix_type == "stereo"
    left, right = tone(100, 16000, 500), tone(100, 16000, 1500)
    events = [e for f in client.audio_frames(left, 16000, other=right) for e in
              dialect.receive_bytes(f)]  # fmt: skip
    caller = b"".join(e.pcm for e in events if isinstance(e, Audio) and e.channel == "caller")
    agent = b"".join(e.pcm for e in events if isinstance(e, Audio) and e.channel == "agent")
    assert (caller, agent) == (left, right)


def test_frames_that_split_a_stereo_pair_are_carried_over() -> None:
    dialect, client = started(mix_type="stereo")
    data = b"".join(client.audio_frames(tone(20, 8000), 8000, other=tone(20, 8000, 900)))
    events = [*dialect.receive_bytes(data[:7]), *dialect.receive_bytes(data[7:])]
    assert sum(len(e.pcm) for e in events if isinstance(e, Audio)) == len(data)  # both sides
    assert dialect.counters.partial_samples == 1


def test_mixed_is_one_channel() -> None:
    dialect, _ = started(mix_type="mixed")
    (event,) = dialect.receive_bytes(b"\x01\x00\x02\x00")
    assert event == Audio("mixed", b"\x01\x00\x02\x00")
    assert dialect.receive_text(AudioForkClient.dtmf("3")) == [Dtmf("mixed", "3", 100)]


# ---- message table ------------------------------------------------------------------------

TABLE: list[tuple[str, list[Any] | int]] = [
    ('{"event":"dtmf","dtmf":"5","duration":1920}', [Dtmf("caller", "5", 240)]),  # samples
    ('{"event":"dtmf","dtmf":"*"}', [Dtmf("caller", "*")]),
    ('{"event":"dtmf","dtmf":"Z"}', INVALID),
    ('{"event":"dtmf","dtmf":5}', INVALID),
    ('{"event":"dtmf","dtmf":"1","duration":-3}', INVALID),
    ('{"type":"mark","data":{"name":"m1","event":"playout"}}', [Mark("m1")]),
    ('{"type":"mark","data":{"name":"m1","event":"cleared"}}', []),
    ('{"type":"mark","data":{"name":""}}', INVALID),
    ('{"type":"playDone","data":{"id":"p1"}}', []),
    ('{"type":"somethingNew"}', []),
    ("[1]", INVALID),
    ("not json", INVALID),
    ('{"a":1,"a":2}', INVALID),
    ('{"x":Infinity}', INVALID),
]


@pytest.mark.parametrize(("text", "expected"), TABLE)
def test_message_table(text: str, expected: list[Any] | int) -> None:
    dialect, _ = started()
    if isinstance(expected, int):
        assert error_of(dialect.receive_text, text).close_code == expected
    else:
        assert dialect.receive_text(text) == expected


@pytest.mark.parametrize(
    ("first", "code"),
    [
        ('{"sampleRate":11025}', UNSUPPORTED),
        ('{"mixType":"quad"}', UNSUPPORTED),
        ('{"mixType":7}', INVALID),
        ('{"sampleRate":"fast"}', INVALID),
        ("plain text", INVALID),
        ("[]", INVALID),
    ],
)
def test_bad_metadata(first: str, code: int) -> None:
    assert error_of(AudioForkDialect("jambonz").receive_text, first).close_code == code


def test_order_and_end() -> None:
    assert error_of(AudioForkDialect("jambonz").receive_bytes, b"\0\0").close_code == PROTOCOL
    dialect, client = started()
    assert dialect.receive_bytes(b"") == []  # jambonz's flush before closing
    assert dialect.counters.empty_frames == 1
    assert dialect.receive_eof() == [CallEnded("hangup")]
    assert dialect.receive_eof() == []
    assert error_of(dialect.receive_bytes, b"\0\0").close_code == PROTOCOL
    assert error_of(dialect.receive_text, client.dtmf("1")).close_code == PROTOCOL


def test_phone_numbers_never_reach_a_close_reason() -> None:
    dialect, _ = started()
    err = error_of(dialect.receive_text, json.dumps({"event": "dtmf", "dtmf": CALLER_NUMBER}))
    assert CALLER_NUMBER not in err.reason


# ---- back-channel ---------------------------------------------------------------------------


def test_play_audio_as_json_by_default() -> None:
    dialect, _ = started(sample_rate=16000)
    assert "mark" not in dialect.capabilities
    pcm = tone(100, 8000)
    dialect.send(PlayAudio(pcm, 8000))
    (message,) = dialect.data_to_send()
    assert isinstance(message, str)
    body = json.loads(message)
    assert body["type"] == "playAudio"
    assert body["data"]["audioContentType"] == "raw" and body["data"]["sampleRate"] == 16000
    assert abs(len(base64.b64decode(body["data"]["audioContent"])) - 2 * len(pcm)) <= 4
    with pytest.raises(UnsupportedRequest):
        dialect.send(SendMark("m"))


def test_streaming_playback_marks_and_kill() -> None:
    defaults = ForkDefaults(playback="stream", playback_sample_rate=8000)
    dialect, _ = started(sample_rate=16000, defaults=defaults)
    assert "mark" in dialect.capabilities
    dialect.send(PlayAudio(tone(250, 16000), 16000))
    dialect.send(SendMark("after-greeting"))
    dialect.send(ClearAudio())
    out = dialect.data_to_send()
    assert [len(m) for m in out[:3]] == [1600, 1600, 800]  # 100 ms chunks at 8 kHz
    assert [json.loads(m) for m in out[3:]] == [
        {"type": "mark", "data": {"name": "after-greeting"}},
        {"type": "killAudio"},
    ]


def test_events_and_disconnect() -> None:
    dialect, _ = started()
    dialect.send(SendEvent({"type": "final", "text": "hello"}))
    dialect.send(SendEvent({"type": "json", "data": {"k": 1}}))
    dialect.send(SendEvent({"type": "transfer", "data": {"to": "queue"}}))
    out = [json.loads(m) for m in dialect.data_to_send()]
    assert out == [
        {"type": "transcription", "data": {"type": "final", "text": "hello"}},
        {"type": "json", "data": {"k": 1}},
        {"type": "transfer", "data": {"to": "queue"}},
    ]
    dialect.send(Disconnect("completed"))
    assert [json.loads(m) for m in dialect.data_to_send()] == [{"type": "disconnect"}]
    assert dialect.close_to_send() == (1000, "completed")
    dialect.send(PlayAudio(tone(20, 8000), 8000))
    assert dialect.data_to_send() == []
    assert dialect.receive_bytes(b"\0\0") == []  # audio still in flight after our goodbye
    assert dialect.receive_text('{"type":"playDone"}') == []
    assert dialect.counters.after_close == 2


def test_requests_before_start_and_close() -> None:
    dialect = AudioForkDialect("jambonz")
    dialect.send(ClearAudio())
    assert dialect.data_to_send() == []
    dialect.close("bridge shutting down")
    assert dialect.close_to_send() == (1000, "bridge shutting down")


# ---- a scripted session --------------------------------------------------------------------


def replay(dialect: Any, path: Path) -> list[Any]:
    events: list[Any] = []
    for line in path.read_text().splitlines():
        frame = json.loads(line)
        if "text" in frame:
            events += dialect.receive_text(frame["text"])
        else:
            events += dialect.receive_bytes(base64.b64decode(frame["binary"]))
    return events


def test_scripted_session_replays() -> None:
    dialect = AudioForkDialect("jambonz")
    events = replay(dialect, DATA / "jambonz_session.jsonl")
    start = events[0]
    assert isinstance(start, CallStarted)
    assert start.platform_call_id == "5d9e1c0a-3b7f-4e62-9a18-7c2b4d6e8f01"
    assert [c.name for c in start.channels] == ["caller", "agent"]
    assert start.sample_rate == 16000
    assert start.custom_parameters["agentId"] == "42"
    audio = [e for e in events if isinstance(e, Audio)]
    assert {a.channel for a in audio} == {"caller", "agent"}
    assert sum(len(a.pcm) for a in audio if a.channel == "caller") == 16000 * 2
    assert [e for e in events if isinstance(e, Dtmf)] == [Dtmf("caller", "1", 120)]
    assert [e for e in events if isinstance(e, Mark)] == [Mark("prompt-1")]
    assert dialect.counters.empty_frames == 1


# ---- fuzz ----------------------------------------------------------------------------------

# FUZZ_EXAMPLES=20000 for a long run off CI.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 70000), st.text(max_size=8),
    st.sampled_from([8000, 16000, "mono", "stereo", "mixed", "dtmf", "mark", "5"]),
    st.dictionaries(st.sampled_from(["name", "event", "id"]), st.text(max_size=4), max_size=2),
)  # fmt: skip
messages = st.builds(
    json.dumps,
    st.dictionaries(
        st.sampled_from(["sampleRate", "mixType", "callSid", "event", "dtmf", "duration",
                         "type", "data", "from"]),
        values,
        max_size=5,
    ),
)  # fmt: skip
frames = st.one_of(st.text(max_size=40), messages, st.binary(max_size=300))


@FUZZ
@given(st.lists(frames, max_size=12), st.sampled_from(["jambonz", "freeswitch"]))
def test_fuzz_only_events_or_dialect_error(script: list[str | bytes], flavor: str) -> None:
    dialect = AudioForkDialect(flavor)
    for frame in script:
        try:
            if isinstance(frame, str):
                dialect.receive_text(frame)
            else:
                dialect.receive_bytes(frame)
        except DialectError as err:
            assert err.close_code in (INVALID, PROTOCOL, UNSUPPORTED)
            return
        dialect.send(PlayAudio(b"\x01\x00" * 16, 8000))
        dialect.data_to_send()


# ---- authentication ---------------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("auth", "query", "headers", "status"),
    [
        ("basic", "", {"authorization": basic("jambonz", SECRET)}, None),
        ("basic", "", {}, 401),
        ("basic", "", {"authorization": basic("jambonz", "forged")}, 403),
        ("token", f"token={SECRET}", {}, None),
        ("token", "", {"authorization": f"Bearer {SECRET}"}, None),
        ("token", "token=forged", {}, 403),
        ("token", "", {}, 401),
    ],
)
def test_auth(auth: str, query: str, headers: dict[str, str], status: int | None) -> None:
    factory = JAMBONZ_SPEC.make_factory(
        DialectSettings(
            auth=auth, secrets={"username": "jambonz", "password": SECRET, "token": SECRET}
        )
    )
    req = UpgradeRequest(path="/jambonz", query_string=query, headers=headers)
    if status is None:
        assert factory.open(req).name == "jambonz"
        return
    with pytest.raises(UpgradeRefused) as info:
        factory.open(req)
    assert info.value.status == status and SECRET not in info.value.reason


@pytest.mark.parametrize(
    "options",
    [{"sample_rate": 11025}, {"mix_type": "quad"}, {"playback": "mp3"}, {"event_type": "x"}],
)
def test_bad_options_stop_startup(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        JAMBONZ_SPEC.make_factory(DialectSettings(options=options))


def test_specs() -> None:
    assert [(s.name, s.default_path) for s in SPECS] == [
        ("freeswitch", "/freeswitch"),
        ("jambonz", "/jambonz"),
    ]
    assert AudioForkClient("jambonz").subprotocol == "audio.jambonz.org"
    with pytest.raises(ValueError):
        AudioForkDialect("asterisk")


# ---- the simulator's encoder shape ---------------------------------------------------------


class Auth:
    def __init__(self, scheme: str, **secrets: str) -> None:
        self.scheme, self.secrets = scheme, secrets


@pytest.mark.parametrize(
    "auth",
    [Auth("basic", username="jambonz", password=SECRET), Auth("token", token=SECRET), None],
)
def test_encoder_shape_drives_the_dialect_through_its_factory(auth: Auth | None) -> None:
    client = AudioForkClient(
        "jambonz", sample_rate=16000, custom_parameters={"campaign": "c"}, auth=auth
    )
    url, headers = client.upgrade("wss://bridge.example/jambonz")
    path, _, query = url.removeprefix("wss://bridge.example").partition("?")
    settings_ = DialectSettings(
        auth=auth.scheme if auth else "none",
        secrets={"username": "jambonz", "password": SECRET, "token": SECRET},
        options={"playback": "stream"},
    )
    dialect = JAMBONZ_SPEC.make_factory(settings_).open(
        UpgradeRequest(
            path=path, query_string=query, headers={k.lower(): v for k, v in headers.items()}
        )
    )
    (start,) = [e for f in client.opening() for e in dialect.receive_text(str(f))]
    assert isinstance(start, CallStarted) and start.custom_parameters["campaign"] == "c"
    assert start.platform_call_id == client.call_id == client.stream_id
    frame, size = client.audio(tone(20, 16000), "inbound")
    assert isinstance(frame, bytes)
    assert size == 640 and dialect.receive_bytes(bytes(frame)) == [Audio("caller", bytes(frame))]
    client.skip(20)
    assert dialect.receive_text(str(client.digit("6")[0])) == [Dtmf("caller", "6", 100)]
    dialect.send(SendMark("m"))
    replies = [r for out in dialect.data_to_send() for r in client.on_server_frame(out)]
    assert [e for r in replies for e in dialect.receive_text(str(r))] == [Mark("m")]
    (done,) = client.on_server_frame('{"type":"playAudio","data":{"id":"p"}}')
    assert dialect.receive_text(str(done)) == []
    assert client.on_server_frame(b"") == client.on_server_frame("x") == []
    assert client.on_server_frame("[]") == []
    assert client.closing() == [b""] and client.closes_socket
    assert AudioForkClient("freeswitch").on_server_frame('{"type":"mark"}') == []
    with pytest.raises(ValueError):
        AudioForkClient(tracks=("inbound", "outbound"))
