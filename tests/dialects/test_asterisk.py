"""Asterisk chan_websocket: both control spellings, every format, flow control, auth, fuzz."""

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

from ivr_bridge.audio.codecs import pcm16_to_ulaw, ulaw_to_pcm16
from ivr_bridge.dialects.asterisk import (
    SPEC,
    AsteriskDialect,
    check_upgrade,
    parse_control,
)
from ivr_bridge.dialects.asterisk_client import AsteriskClient
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
from ivr_bridge.errors import ConfigError, DialectError
from ivr_bridge.model import Audio, CallEnded, CallStarted, ChannelInfo, Dtmf, Mark, MediaFormat

DATA = Path(__file__).resolve().parents[1] / "data"
INVALID, PROTOCOL, UNSUPPORTED = 1007, 1002, 1003
SECRET = "s3cr3t-token-value"


def tone(ms: int, rate: int) -> bytes:
    return array(
        "h", (int(8000 * math.sin(2 * math.pi * 700 * i / rate)) for i in range(rate * ms // 1000))
    ).tobytes()


def started(fmt: str = "ulaw", control: str = "plain-text", **kw: Any) -> AsteriskDialect:
    dialect = AsteriskDialect(**kw)
    client = AsteriskClient(media_format=fmt, control_format=control)
    dialect.receive_text(client.media_start())
    return dialect


def error_of(fn: Any, *args: Any) -> DialectError:
    with pytest.raises(DialectError) as info:
        fn(*args)
    return info.value


# ---- MEDIA_START in both spellings and every format -------------------------------------------


@pytest.mark.parametrize("control", ["plain-text", "json"])
@pytest.mark.parametrize(
    ("fmt", "encoding", "rate", "frame"),
    [("ulaw", "pcmu", 8000, 160), ("alaw", "pcma", 8000, 160), ("slin", "l16", 8000, 320),
     ("slin16", "l16", 16000, 640)],
)  # fmt: skip
def test_media_start_and_media(
    control: str, fmt: str, encoding: str, rate: int, frame: int
) -> None:
    client = AsteriskClient(
        media_format=fmt,
        control_format=control,
        connection_id="conn-1",
        channel_id="1700000000.7",
        channel_variables={"QUEUE": "sales"},
    )
    dialect = AsteriskDialect(custom_parameters={"tenant": "a"})
    (event,) = dialect.receive_text(client.media_start())
    metadata = {
        "format": fmt,
        "optimal_frame_size": str(frame),
        "connection_id": "conn-1",
        "channel": "PJSIP/caller-00000001",
        "channel_id": "1700000000.7",
        "ptime": "20",
    }
    if control == "json":
        metadata["variable.QUEUE"] = "sales"
    assert event == CallStarted(
        dialect="asterisk",
        platform_call_id="1700000000.7",
        stream_id="conn-1",
        channels=(ChannelInfo("caller", "in"),),
        media_format=MediaFormat(encoding, rate, 1),
        sample_rate=rate,  # 16 kHz stays 16 kHz
        metadata=metadata,
        custom_parameters={"tenant": "a"},
    )
    pcm = tone(100, rate)
    frames = client.media_frames(pcm, rate)
    assert [len(f) for f in frames] == [frame] * 5
    audio = [e for f in frames for e in dialect.receive_bytes(f)]
    assert all(isinstance(a, Audio) and a.channel == "caller" for a in audio)
    decoded = b"".join(a.pcm for a in audio if isinstance(a, Audio))
    assert len(decoded) == len(pcm)
    if encoding == "l16":
        assert decoded == pcm
    dtmf = dialect.receive_text(client.dtmf("7"))
    assert dtmf == [Dtmf("caller", "7")]
    assert dialect.data_to_send() == []


# ---- message table: text in -> events (or the close code) -------------------------------------

TABLE: list[tuple[str, list[Any] | int]] = [
    ("DTMF_END digit:5", [Dtmf("caller", "5")]),
    ('{"event":"DTMF_END","digit":"#"}', [Dtmf("caller", "#")]),
    ("DTMF_END digit:x", INVALID),
    ('{"event":"DTMF_END","digit":5}', [Dtmf("caller", "5")]),
    ('{"event":"DTMF_END","digit":[5]}', INVALID),
    ("MEDIA_MARK_PROCESSED correlation_id:m1", [Mark("m1")]),
    ("MEDIA_MARK_PROCESSED m2", [Mark("m2")]),
    ('{"event":"MEDIA_MARK_PROCESSED","correlation_id":"m3"}', [Mark("m3")]),
    ("MEDIA_MARK_PROCESSED", []),
    ("MEDIA_XOFF", []),
    ("MEDIA_XON", []),
    ("STATUS queue_length:43 xon_level:800 xoff_level:900 queue_full:false", []),
    ("MEDIA_BUFFERING_COMPLETED id7", []),
    ("QUEUE_DRAINED", []),
    ("ERROR error_text:bad", []),
    ("HANGUP", [CallEnded("hangup")]),
    ('{"event":"HANGUP"}', [CallEnded("hangup")]),
    ("MEDIA_START format:ulaw", PROTOCOL),
    ("", INVALID),
    ("lowercase event", INVALID),
    ("{not json", INVALID),
    ('{"event":"DTMF_END","digit":"1","digit":"2"}', INVALID),
    ('{"event":"X","n":NaN}', INVALID),
    ("[1,2]", INVALID),
    ('{"event":7}', INVALID),
    ('{"event":"DTMF_END","_args":5,"digit":"1"}', [Dtmf("caller", "1")]),
]


@pytest.mark.parametrize(("text", "expected"), TABLE)
def test_message_table(text: str, expected: list[Any] | int) -> None:
    dialect = started()
    if isinstance(expected, int):
        assert error_of(dialect.receive_text, text).close_code == expected
    else:
        assert dialect.receive_text(text) == expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("MEDIA_START format:opus optimal_frame_size:160", UNSUPPORTED),
        ("MEDIA_START channel:x", UNSUPPORTED),
        ("MEDIA_START format:slin optimal_frame_size:321", INVALID),
        ("MEDIA_START format:ulaw optimal_frame_size:0", INVALID),
        ("MEDIA_START format:ulaw optimal_frame_size:99999", INVALID),
        ('{"event":"MEDIA_START","format":"ulaw","channel_variables":[1]}', INVALID),
        ("DTMF_END digit:1", PROTOCOL),
        ("MEDIA_MARK_PROCESSED m1", PROTOCOL),
    ],
)
def test_bad_starts(text: str, code: int) -> None:
    assert error_of(AsteriskDialect().receive_text, text).close_code == code


def test_media_rules() -> None:
    assert error_of(AsteriskDialect().receive_bytes, b"\x00" * 160).close_code == PROTOCOL
    dialect = started("slin")
    assert error_of(dialect.receive_bytes, b"\x00" * 3).close_code == INVALID
    assert dialect.receive_bytes(b"") == []
    assert dialect.counters.empty_frames == 1
    assert dialect.receive_text("HANGUP") == [CallEnded("hangup")]
    assert error_of(dialect.receive_bytes, b"\x00" * 2).close_code == PROTOCOL
    assert error_of(dialect.receive_text, "DTMF_END digit:1").close_code == PROTOCOL
    assert dialect.receive_eof() == []
    assert AsteriskDialect().receive_eof() == [CallEnded("hangup")]


def test_channel_variables_reach_metadata_but_not_the_close_reason() -> None:
    client = AsteriskClient(control_format="json", channel_variables={"CALLERID": SECRET})
    (event,) = AsteriskDialect().receive_text(client.media_start())
    assert isinstance(event, CallStarted)
    assert event.metadata["variable.CALLERID"] == SECRET
    bad = json.dumps({"event": "DTMF_END", "digit": SECRET})
    dialect = started()
    err = error_of(dialect.receive_text, bad)
    assert SECRET not in err.reason


def test_parse_control_positional_and_keyed() -> None:
    assert parse_control("MEDIA_BUFFERING_COMPLETED abc") == (
        "MEDIA_BUFFERING_COMPLETED",
        {"_args": ["abc"]},
        False,
    )
    name, fields, is_json = parse_control("STATUS queue_full:false a:b:c")
    assert (name, fields["a"], is_json) == ("STATUS", "b:c", False)


# ---- back-channel -----------------------------------------------------------------------------


@pytest.mark.parametrize("control", ["plain-text", "json"])
def test_play_mark_clear_disconnect(control: str) -> None:
    dialect = started("ulaw", control)
    dialect.send(PlayAudio(tone(30, 16000), 16000))  # resampled to 8 kHz, padded to 2 frames
    dialect.send(SendMark("greeting-1"))
    dialect.send(ClearAudio())
    out = dialect.data_to_send()
    assert isinstance(out[0], bytes) and len(out[0]) == 320
    if control == "json":
        assert [json.loads(m) for m in out[1:]] == [
            {"command": "MARK_MEDIA", "correlation_id": "greeting-1"},
            {"command": "FLUSH_MEDIA"},
        ]
    else:
        assert out[1:] == ["MARK_MEDIA greeting-1", "FLUSH_MEDIA"]
    assert dialect.close_to_send() is None
    dialect.send(Disconnect("completed"))
    assert dialect.data_to_send() == (['{"command":"HANGUP"}'] if control == "json" else ["HANGUP"])
    assert dialect.close_to_send() == (1000, "completed")
    dialect.send(PlayAudio(tone(20, 8000), 8000))  # after hang-up: nothing
    assert dialect.data_to_send() == []
    assert dialect.receive_text("MEDIA_XON") == []  # crossing our HANGUP on the wire
    assert dialect.receive_bytes(b"\xff" * 160) == []
    assert dialect.counters.after_close == 2


def test_long_playback_is_split_below_the_message_limit() -> None:
    dialect = started("slin16")
    dialect.send(PlayAudio(tone(2010, 16000), 16000))
    out = dialect.data_to_send()
    sizes = [len(m) for m in out]
    assert all(isinstance(m, bytes) for m in out)
    assert all(s % 640 == 0 and s <= 65_500 for s in sizes)
    assert sum(sizes) == 101 * 640  # 2010 ms -> 100.5 frames, tail padded
    assert dialect.counters.playback_frames_sent == 101


def test_xoff_holds_playback_in_a_bounded_queue_and_xon_releases_it() -> None:
    dialect = started("ulaw", max_pending_frames=30)
    dialect.receive_text("MEDIA_XOFF")
    assert dialect.xoff
    dialect.send(PlayAudio(tone(500, 8000), 8000))  # 25 frames: held
    dialect.send(SendMark("after"))  # ordered behind the audio
    dialect.send(PlayAudio(tone(200, 8000), 8000))  # 10 more: over the bound, dropped
    assert dialect.data_to_send() == []
    c = dialect.counters
    assert (c.playback_frames_queued, c.playback_frames_dropped) == (25, 10)
    dialect.receive_text("MEDIA_XON")
    out = dialect.data_to_send()
    assert [type(m) for m in out] == [bytes, str]
    assert len(out[0]) == 25 * 160 and out[1] == "MARK_MEDIA after"
    assert c.playback_frames_sent == 25


def test_clear_during_xoff_drops_the_local_queue_and_counts_it() -> None:
    dialect = started("ulaw")
    dialect.receive_text("MEDIA_XOFF")
    dialect.send(PlayAudio(tone(100, 8000), 8000))
    dialect.send(SendMark("m"))
    dialect.send(ClearAudio())
    assert dialect.data_to_send() == ["FLUSH_MEDIA"]  # commands other than marks act at once
    assert (dialect.counters.playback_frames_cleared, dialect.counters.marks_cleared) == (5, 1)
    dialect.receive_text("MEDIA_XON")
    assert dialect.data_to_send() == []


def test_answer_option_and_unsupported_requests() -> None:
    dialect = started("ulaw", answer=True)
    assert dialect.data_to_send() == ["ANSWER"]
    with pytest.raises(UnsupportedRequest):
        dialect.send(SendEvent({"type": "transcript"}))
    with pytest.raises(UnsupportedRequest):
        dialect.send(SendMark("has space"))
    dialect.close("bridge shutting down")
    assert dialect.close_to_send() == (1000, "bridge shutting down")
    assert "play" in dialect.capabilities and "event" not in dialect.capabilities


def test_requests_before_start_are_dropped_quietly() -> None:
    dialect = AsteriskDialect()
    dialect.send(PlayAudio(tone(20, 8000), 8000))
    dialect.send(ClearAudio())
    assert dialect.data_to_send() == []


# ---- a scripted session replayed ------------------------------------------------------------


def replay(dialect: Any, path: Path) -> list[Any]:
    events: list[Any] = []
    for line in path.read_text().splitlines():
        frame = json.loads(line)
        if "text" in frame:
            events += dialect.receive_text(frame["text"])
        else:
            events += dialect.receive_bytes(base64.b64decode(frame["binary"]))
    return events


def test_recorded_session_replays() -> None:
    dialect = AsteriskDialect()
    events = replay(dialect, DATA / "asterisk_session.jsonl")
    started_event = events[0]
    assert isinstance(started_event, CallStarted)
    assert started_event.metadata["variable.CALLER_LANG"] == "en-US"
    assert started_event.sample_rate == 8000
    audio = [e for e in events if isinstance(e, Audio)]
    assert len(audio) == 50 and all(len(a.pcm) == 320 for a in audio)
    assert [e for e in events if isinstance(e, Dtmf)] == [Dtmf("caller", "4"), Dtmf("caller", "2")]
    assert [e for e in events if isinstance(e, Mark)] == [Mark("prompt-1")]
    assert events[-1] == CallEnded("hangup")
    assert dialect.counters.xoff == dialect.counters.xon == 1


# ---- fuzz ----------------------------------------------------------------------------------

# FUZZ_EXAMPLES=20000 for a long run off CI.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
EVENTS = ["MEDIA_START", "DTMF_END", "MEDIA_XOFF", "MEDIA_XON", "MEDIA_MARK_PROCESSED", "HANGUP"]
plain = st.builds(
    lambda name, parts: " ".join([name, *parts]),
    st.sampled_from([*EVENTS, "STATUS", "x"]),
    st.lists(st.text(max_size=12), max_size=4),
)
as_json = st.builds(
    lambda name, body: json.dumps({"event": name, **body}),
    st.sampled_from(EVENTS),
    st.dictionaries(
        st.sampled_from(["format", "digit", "correlation_id", "optimal_frame_size",
                         "channel_variables", "_args", "channel_id"]),
        st.one_of(st.none(), st.integers(-5, 70000), st.text(max_size=8),
                  st.sampled_from(["ulaw", "slin16", "5"]), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2)),
        max_size=4,
    ),
)  # fmt: skip
frames = st.one_of(st.text(max_size=60), plain, as_json, st.binary(max_size=400))


def feed(dialect: AsteriskDialect, frame: str | bytes) -> None:
    try:
        if isinstance(frame, str):
            dialect.receive_text(frame)
        else:
            dialect.receive_bytes(frame)
    except DialectError as err:
        assert err.close_code in (INVALID, PROTOCOL, UNSUPPORTED) and len(err.reason) <= 120


@FUZZ
@given(st.lists(frames, max_size=12), st.booleans())
def test_fuzz_only_events_or_dialect_error(script: list[str | bytes], start: bool) -> None:
    dialect = started("slin16", "json") if start else AsteriskDialect()
    for frame in script:
        feed(dialect, frame)
        dialect.send(PlayAudio(b"\x01\x00" * 40, 8000))
        dialect.data_to_send()


# ---- authentication on the upgrade ---------------------------------------------------------


def request(query: str = "", **headers: str) -> UpgradeRequest:
    return UpgradeRequest(path="/asterisk", query_string=query, headers=headers)


def factory(auth: str, secrets: dict[str, str] | None = None, **extra: Any) -> Any:
    return SPEC.make_factory(DialectSettings(auth=auth, secrets=secrets or {}, **extra))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_auth_none_opens_and_passes_uri_parameters() -> None:
    dialect = factory("none").open(request("tenant=a&token=x"))
    (event,) = dialect.receive_text(AsteriskClient().media_start())
    assert isinstance(event, CallStarted)
    assert dict(event.custom_parameters) == {"tenant": "a"}


@pytest.mark.parametrize(
    ("auth", "req", "status"),
    [
        ("token", request(authorization=f"Bearer {SECRET}"), None),
        ("token", request(f"token={SECRET}"), None),
        ("token", request(), 401),
        ("token", request("token=forged"), 403),
        ("token", request(authorization="Bearer forged"), 403),
        ("basic", request(authorization=basic("asterisk", SECRET)), None),
        ("basic", request(), 401),
        ("basic", request(authorization="Basic !!!"), 403),
        ("basic", request(authorization=f"Bearer {SECRET}"), 401),
        ("token", request(authorization=basic("asterisk", SECRET)), 401),
        ("basic", request(authorization=basic("asterisk", "forged")), 403),
        ("basic", request(authorization=basic("nobody", SECRET)), 403),
        ("basic", request(authorization="Basic " + base64.b64encode(b"nocolon").decode()), 403),
        ("none", request(origin="https://evil.example"), 403),
    ],
)
def test_auth_cases(auth: str, req: UpgradeRequest, status: int | None) -> None:
    secrets = {"token": SECRET, "username": "asterisk", "password": SECRET}
    f = factory(auth, secrets)
    if status is None:
        assert isinstance(f.open(req), AsteriskDialect)
        return
    with pytest.raises(UpgradeRefused) as info:
        f.open(req)
    assert info.value.status == status and SECRET not in info.value.reason


def test_allowed_origin_and_config_errors() -> None:
    f = factory("none", allowed_origins=("https://console.example",))
    f.open(request(origin="https://console.example"))
    with pytest.raises(ConfigError):
        factory("token")  # no secret
    with pytest.raises(ConfigError):
        factory("signature", {"token": "b"})
    with pytest.raises(ConfigError):
        factory("basic", {"username": "u"})  # no password
    with pytest.raises(ConfigError):
        SPEC.make_factory(DialectSettings(options={"control_format": "xml"}))
    assert check_upgrade(DialectSettings(), request()) == "none"
    assert SPEC.default_path == "/asterisk"


def test_client_frames_round_trip_mulaw_exactly() -> None:
    client = AsteriskClient()
    mulaw = pcm16_to_ulaw(tone(40, 8000))
    dialect = started()
    audio = [e for f in client.raw_frames(mulaw) for e in dialect.receive_bytes(f)]
    assert b"".join(a.pcm for a in audio if isinstance(a, Audio)) == ulaw_to_pcm16(mulaw)
    assert client.upgrade_path(token="t") == "/asterisk?token=t"
    assert client.upgrade_headers(bearer="b") == [("Authorization", "Bearer b")]


# ---- the simulator's encoder shape ---------------------------------------------------------


class Auth:
    def __init__(self, scheme: str, **secrets: str) -> None:
        self.scheme, self.secrets = scheme, secrets


@pytest.mark.parametrize(
    "auth", [Auth("basic", username="u", password=SECRET), Auth("token", token=SECRET)]
)
def test_encoder_shape_drives_the_dialect_through_its_factory(auth: Auth) -> None:
    client = AsteriskClient(
        media_format="slin16", control_format="json", custom_parameters={"tenant": "t"}, auth=auth
    )
    url, headers = client.upgrade("wss://bridge.example/asterisk")
    path, _, query = url.removeprefix("wss://bridge.example").partition("?")
    secrets = {"username": "u", "password": SECRET, "token": SECRET}
    dialect = factory(auth.scheme, secrets).open(
        UpgradeRequest(
            path=path, query_string=query, headers={k.lower(): v for k, v in headers.items()}
        )
    )
    events = [e for f in client.opening() for e in dialect.receive_text(str(f))]
    frame, size = client.audio(tone(20, client.sample_rate), "inbound")
    assert size == 640 and isinstance(frame, bytes)
    events += dialect.receive_bytes(frame)
    client.skip(100)
    events += [e for f in client.digit("2") for e in dialect.receive_text(str(f))]
    assert client.closing() == [] and client.closes_socket
    assert isinstance(events[0], CallStarted) and events[0].custom_parameters["tenant"] == "t"
    assert events[0].platform_call_id == client.call_id
    assert events[0].stream_id == client.stream_id
    dialect.send(SendMark("m1"))
    dialect.send(PlayAudio(b"", 8000))
    (mark_command,) = dialect.data_to_send()
    (echo,) = client.on_server_frame(mark_command)
    assert dialect.receive_text(str(echo)) == [Mark("m1")]
    (status,) = client.on_server_frame('{"command":"GET_STATUS"}')
    assert dialect.receive_text(str(status)) == []
    assert client.on_server_frame(b"\x00") == client.on_server_frame("FLUSH_MEDIA") == []
    assert client.on_server_frame("{bad") == client.on_server_frame("[1]") == []
    with pytest.raises(ValueError):
        AsteriskClient(tracks=("inbound", "outbound"))
