"""FreeSWITCH mod_audio_fork / mod_audio_stream: optional and free-form metadata, defaults from
the URL, L16 mono/stereo, free-form text frames, back-channel events, auth, replay."""

from __future__ import annotations

import base64
import json
import math
from array import array
from pathlib import Path
from typing import Any

import pytest

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
from ivr_bridge.dialects.freeswitch import SPEC, AudioForkDialect
from ivr_bridge.dialects.freeswitch_client import AudioForkClient
from ivr_bridge.errors import DialectError
from ivr_bridge.model import Audio, CallEnded, CallStarted, ChannelInfo, Dtmf

DATA = Path(__file__).resolve().parents[1] / "data"
SECRET = "fs-basic-password"


def tone(ms: int, rate: int, freq: int = 700) -> bytes:
    return array(
        "h", (int(8000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(rate * ms // 1000))
    ).tobytes()


def opened(query: str = "", auth: str = "none", **headers: str) -> Any:
    factory = SPEC.make_factory(
        DialectSettings(auth=auth, secrets={"username": "freeswitch", "password": SECRET})
    )
    return factory.open(UpgradeRequest(path="/freeswitch", query_string=query, headers=headers))


def test_json_metadata_sets_rate_mix_and_ids() -> None:
    client = AudioForkClient("freeswitch", sample_rate=16000, call_sid="fs-uuid-1",
                             metadata={"tenant": "acme"})  # fmt: skip
    dialect = opened()
    (event,) = dialect.receive_text(client.metadata_frame())
    assert isinstance(event, CallStarted)
    assert (event.dialect, event.platform_call_id, event.sample_rate) == (
        "freeswitch",
        "fs-uuid-1",
        16000,
    )
    assert dict(event.custom_parameters) == {"tenant": "acme"}
    pcm = tone(60, 16000)
    audio = [e for f in client.audio_frames(pcm, 16000) for e in dialect.receive_bytes(f)]
    assert b"".join(a.pcm for a in audio if isinstance(a, Audio)) == pcm


def test_audio_first_uses_the_url_description() -> None:
    client = AudioForkClient("freeswitch", sample_rate=16000, mix_type="stereo")
    dialect = opened(client.upgrade_path(describe=True).split("?", 1)[1] + "&site=eu")
    frames = client.audio_frames(tone(40, 16000), 16000, other=tone(40, 16000, 1200))
    events = dialect.receive_bytes(frames[0])
    assert isinstance(events[0], CallStarted)
    assert events[0].channels == (ChannelInfo("caller", "left"), ChannelInfo("agent", "right"))
    assert events[0].sample_rate == 16000
    assert dict(events[0].custom_parameters) == {"site": "eu"}
    assert {e.channel for e in events[1:] if isinstance(e, Audio)} == {"caller", "agent"}


def test_free_form_metadata_and_text_are_kept_or_tolerated() -> None:
    dialect = opened()
    (event,) = dialect.receive_text("agent=42;queue=sales")  # uuid_audio_stream passes any text
    assert isinstance(event, CallStarted) and event.sample_rate == 8000
    assert event.custom_parameters["metadata"] == "agent=42;queue=sales"
    assert dialect.receive_text("stopping now") == []
    assert dialect.receive_text("[1,2]") == []
    assert dialect.receive_text('{"type":"whatever"}') == []
    assert dialect.counters.unknown_messages == 3
    assert dialect.receive_text(AudioForkClient.dtmf("9", 80)) == [Dtmf("caller", "9", 80)]
    assert dialect.receive_eof() == [CallEnded("hangup")]


@pytest.mark.parametrize(
    ("query", "status"),
    [("sampleRate=fast", 400), ("sampleRate=11025", 400), ("mixType=quad", 400)],
)
def test_bad_url_description_is_refused(query: str, status: int) -> None:
    with pytest.raises(UpgradeRefused) as info:
        opened(query)
    assert info.value.status == status


def test_back_channel_is_json_events_for_the_dialplan() -> None:
    dialect = opened()
    dialect.receive_text('{"uuid":"u1"}')
    assert dialect.capabilities == frozenset({"play", "clear", "event", "disconnect"})
    with pytest.raises(UnsupportedRequest):
        dialect.send(SendMark("m"))
    dialect.send(SendEvent({"text": "hello there", "final": True}))
    dialect.send(SendEvent({"type": "json", "data": {"x": 1}}))  # jambonz-only type: wrapped
    dialect.send(PlayAudio(tone(20, 8000), 8000))
    dialect.send(ClearAudio())
    dialect.send(Disconnect("completed"))
    out = [json.loads(m) for m in dialect.data_to_send()]
    assert out[0] == {"type": "transcription", "data": {"text": "hello there", "final": True}}
    assert out[1] == {"type": "transcription", "data": {"type": "json", "data": {"x": 1}}}
    assert out[2]["type"] == "playAudio" and out[2]["data"]["sampleRate"] == 8000
    assert out[3:] == [{"type": "killAudio"}, {"type": "disconnect"}]
    assert dialect.close_to_send() == (1000, "completed")


def test_auth_basic_as_mod_audio_fork_sends_it() -> None:
    good = AudioForkClient.upgrade_headers(username="freeswitch", password=SECRET)
    assert opened(auth="basic", authorization=good[0][1]).name == "freeswitch"
    bad = AudioForkClient.upgrade_headers(username="freeswitch", password="forged")
    for headers, status in (({}, 401), ({"authorization": bad[0][1]}, 403)):
        with pytest.raises(UpgradeRefused) as info:
            opened(auth="basic", **headers)
        assert info.value.status == status


def test_recorded_session_replays() -> None:
    dialect = AudioForkDialect("freeswitch")
    events: list[Any] = []
    for line in (DATA / "freeswitch_session.jsonl").read_text().splitlines():
        frame = json.loads(line)
        if "text" in frame:
            events += dialect.receive_text(frame["text"])
        else:
            events += dialect.receive_bytes(base64.b64decode(frame["binary"]))
    start = events[0]
    assert isinstance(start, CallStarted)
    assert start.platform_call_id == "b2c3d4e5-f607-4819-a2b3-c4d5e6f70819"
    assert start.sample_rate == 8000 and [c.name for c in start.channels] == ["caller"]
    audio = [e for e in events if isinstance(e, Audio)]
    assert len(audio) == 50 and sum(len(a.pcm) for a in audio) == 16000
    assert [e.digit for e in events if isinstance(e, Dtmf)] == ["7"]
    assert dialect.counters.unknown_messages == 1  # the stop text


def test_protocol_errors_are_dialect_errors() -> None:
    dialect = opened()
    dialect.receive_text("{}")
    with pytest.raises(DialectError):
        dialect.receive_text('{"event":"dtmf","dtmf":"?"}')
