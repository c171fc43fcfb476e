"""AudioHook dialect: the message table, sequence and position rules, the probe, pause/resume and
discarded on the timeline, every exit path's close reason, and the outbound requests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ivr_bridge.audio.codecs import pcm16_to_ulaw, ulaw_to_pcm16
from ivr_bridge.dialects.audiohook import (
    NULL_UUID,
    AudioHookDialect,
    AudioHookOptions,
    SessionIdentity,
    format_duration_ms,
    format_duration_samples,
    parse_duration_ns,
)
from ivr_bridge.dialects.base import (
    ClearAudio,
    Dialect,
    Disconnect,
    PlayAudio,
    SendEvent,
    SendMark,
    UnsupportedRequest,
)
from ivr_bridge.errors import ConfigError, DialectError
from ivr_bridge.model import (
    Audio,
    CallEnded,
    CallStarted,
    ChannelInfo,
    Dtmf,
    MediaFormat,
    MediaGap,
    Paused,
    Resumed,
)

SID = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b"
ORG = "d7934305-0972-4844-938e-9060eef73d05"
CONV = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
PART = "0f9e8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f"
SECRET = "SECRET-4711"  # planted in bad values: must never reach a close reason or info
STEREO = ["external", "internal"]


def offer(*channels: str, fmt: str = "PCMU", rate: int = 8000) -> dict[str, Any]:
    return {"type": "audio", "format": fmt, "channels": list(channels), "rate": rate}


class Peer:
    """The client's side of the envelope, numbered by hand so tests can break the rules."""

    def __init__(self, dialect: AudioHookDialect, session_id: str = SID) -> None:
        self.dialect = dialect
        self.id = session_id
        self.seq = 0
        self.serverseq = 0
        self.samples = 0
        self.pending: list[str | bytes] = []

    def message(self, kind: str, params: dict[str, Any] | None = None, **over: Any) -> str:
        self.seq += 1
        body: dict[str, Any] = {
            "version": "2",
            "id": self.id,
            "type": kind,
            "seq": self.seq,
            "serverseq": self.serverseq,
            "position": format_duration_samples(self.samples),
            "parameters": params if params is not None else {},
        }
        body.update(over)
        return json.dumps(body)

    def send(self, kind: str, params: dict[str, Any] | None = None, **over: Any) -> list[Any]:
        events = self.dialect.receive_text(self.message(kind, params, **over))
        # Like Genesys, acknowledge what the bridge sent; keep it for replies().
        for frame in self.dialect.data_to_send():
            self.pending.append(frame)
            if isinstance(frame, str):
                self.serverseq = max(self.serverseq, json.loads(frame)["seq"])
        return events

    def replies(self) -> list[dict[str, Any]]:
        out, self.pending = [*self.pending, *self.dialect.data_to_send()], []
        return [json.loads(f) for f in out if isinstance(f, str)]

    def audio(self, ms: int, channels: int = 2, byte: int = 0xFF) -> list[Any]:
        samples = ms * 8
        self.samples += samples
        return self.dialect.receive_bytes(bytes([byte]) * samples * channels)

    def open(self, *offers: dict[str, Any], **params: Any) -> list[Any]:
        body = {
            "organizationId": ORG,
            "conversationId": CONV,
            "participant": {"id": PART, "ani": "+15550100", "aniName": "A", "dnis": "+15550199"},
            "media": list(offers) or [offer(*STEREO), offer("external"), offer("internal")],
            "language": "en-US",
        }
        body.update(params)
        return self.send("open", body)


def opened(options: AudioHookOptions | None = None, *offers: dict[str, Any]) -> Peer:
    peer = Peer(AudioHookDialect(options, SessionIdentity(session_id=SID, organization_id=ORG)))
    peer.open(*offers)
    peer.replies()
    return peer


def expect_error(peer: Peer, call: Any, code: int, disconnect: str | None = "error") -> str:
    before = peer.dialect.close_to_send()
    with pytest.raises(DialectError) as info:
        call()
    err = info.value
    assert err.close_code == code, err.reason
    assert SECRET not in err.reason and len(err.reason) <= 120
    replies = peer.replies()
    if disconnect is None:
        assert not any(r["type"] == "disconnect" for r in replies)
    else:
        assert replies[-1]["type"] == "disconnect"
        assert replies[-1]["parameters"]["reason"] == disconnect
        assert SECRET not in replies[-1]["parameters"].get("info", "")
    # The first close decision stands (e.g. the clean close after ``closed``).
    assert peer.dialect.close_to_send() == (before or (code, err.reason))
    assert peer.dialect.state == "ended"
    return err.reason


def test_satisfies_the_dialect_protocol() -> None:
    dialect: Dialect = AudioHookDialect()
    assert dialect.name == "audiohook"
    assert dialect.capabilities == {"disconnect"}
    assert dialect.close_to_send() is None


# ---- open / opened -------------------------------------------------------------------------------


def test_open_negotiates_stereo_and_starts_the_call() -> None:
    peer = Peer(AudioHookDialect(identity=SessionIdentity(SID, ORG, "corr-1")))
    events = peer.open(
        offer(*STEREO),
        offer("external"),
        customConfig={"queue": "billing", "n": 2},
        inputVariables={"intent": "pay"},
    )
    (reply,) = peer.replies()
    assert reply == {
        "version": "2",
        "type": "opened",
        "seq": 1,
        "clientseq": 1,
        "id": SID,
        "parameters": {"media": [offer(*STEREO)]},
    }
    assert events == [
        CallStarted(
            dialect="audiohook",
            platform_call_id=CONV,
            stream_id=SID,
            channels=(ChannelInfo("caller", "external"), ChannelInfo("agent", "internal")),
            media_format=MediaFormat("pcmu", 8000, 2),
            sample_rate=8000,
            metadata={
                "organization_id": ORG,
                "conversation_id": CONV,
                "session_id": SID,
                "correlation_id": "corr-1",
                "participant_id": PART,
                "ani": "+15550100",
                "ani_name": "A",
                "dnis": "+15550199",
                "language": "en-US",
                "media_channels": "external,internal",
            },
            custom_parameters={"queue": "billing", "n": "2", "input.intent": "pay"},
        )
    ]


@pytest.mark.parametrize(
    ("want", "offers", "chosen"),
    [
        ("both", [offer("external"), offer(*STEREO)], STEREO),
        ("both", [offer("internal", "external")], ["internal", "external"]),
        ("both", [offer("internal"), offer("external")], ["internal"]),
        ("external", [offer(*STEREO), offer("internal"), offer("external")], ["external"]),
        ("internal", [offer(*STEREO), offer("internal")], ["internal"]),
        ("both", [offer(*STEREO, fmt="L16"), offer("external")], ["external"]),
        ("both", [offer(*STEREO, rate=16000), offer("internal")], ["internal"]),
    ],
)
def test_media_choice(want: str, offers: list[dict[str, Any]], chosen: list[str]) -> None:
    peer = Peer(AudioHookDialect(AudioHookOptions(channels=want)))
    (started,) = peer.open(*offers)
    assert peer.replies()[0]["parameters"]["media"] == [offer(*chosen)]
    assert [c.track for c in started.channels] == chosen


def test_no_usable_media_is_refused_with_disconnect() -> None:
    peer = Peer(AudioHookDialect(AudioHookOptions(channels="internal")))
    expect_error(peer, lambda: peer.open(offer("external"), offer(*STEREO, fmt="L16")), 1003)


def test_supported_languages_are_answered_when_asked() -> None:
    peer = Peer(AudioHookDialect(AudioHookOptions(supported_languages=("en-US", "es-US"))))
    peer.open(supportedLanguages=True)
    assert peer.replies()[0]["parameters"]["supportedLanguages"] == ["en-US", "es-US"]


def test_organization_mismatch_is_unauthorized() -> None:
    peer = Peer(
        AudioHookDialect(identity=SessionIdentity(SID, "11111111-2222-4333-8444-555555555555"))
    )
    expect_error(peer, peer.open, 1008, disconnect="unauthorized")


def test_session_id_comes_from_the_first_message_without_headers() -> None:
    peer = Peer(AudioHookDialect())
    peer.open()
    assert peer.dialect.session_id == SID
    assert peer.replies()[0]["id"] == SID


def test_duplicate_open_is_ignored_like_the_reference_server() -> None:
    peer = opened()
    assert peer.open() == []
    assert peer.replies() == []
    assert peer.dialect.counters.ignored_messages == 1


# ---- the message table ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "params", "events", "reply"),
    [
        ("ping", {}, [], "pong"),
        ("ping", {"rtt": "PT0.25S"}, [], "pong"),
        ("update", {"language": "fr-CA"}, [], None),
        ("paused", {}, [Paused()], None),
        ("resumed", {"start": "PT0S", "discarded": "PT0S"}, [], None),
        ("discarded", {"start": "PT0S", "discarded": "PT0S"}, [], None),
        ("error", {"code": 500, "message": "oops"}, [], None),
        ("error", {"code": 429, "message": "slow", "retryAfter": "PT2S"}, [], None),
        ("dtmf", {"digit": "7"}, [Dtmf("caller", "7")], None),
        ("playback_started", {}, [], None),
        ("playback_completed", {}, [], None),
        ("close", {"reason": "end"}, [CallEnded("end")], "closed"),
        ("close", {"reason": "disconnect"}, [CallEnded("disconnect")], "closed"),
        ("close", {"reason": "error"}, [CallEnded("error")], "closed"),
        ("close", {"reason": "reconnect"}, [CallEnded("reconnect")], "closed"),
    ],
)
def test_message_table(
    kind: str, params: dict[str, Any], events: list[Any], reply: str | None
) -> None:
    peer = opened()
    assert peer.send(kind, params) == events
    replies = peer.replies()
    assert [r["type"] for r in replies] == ([reply] if reply else [])
    for r in replies:
        assert r["parameters"] == {} and r["clientseq"] == peer.seq and r["seq"] == 2


def test_ping_reports_rtt_and_update_the_language() -> None:
    peer = opened()
    peer.send("ping", {"rtt": "PT0.0125S"})
    peer.send("update", {"language": "fr-CA"})
    assert peer.dialect.counters.last_rtt_ms == 12
    assert peer.dialect.language == "fr-CA"


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("ping", {"rtt": "12ms"}),
        ("update", {}),
        ("update", {"language": "english"}),
        ("resumed", {"start": "PT0S"}),
        ("discarded", {"start": "PT0S", "discarded": -1}),
        ("error", {"code": 99, "message": "x"}),
        ("error", {"code": 500}),
        ("error", {"code": True, "message": "x"}),
        ("close", {"reason": "bye"}),
        ("close", {}),
        ("dtmf", {"digit": "X"}),
        ("dtmf", {"digit": SECRET}),
    ],
)
def test_bad_parameters_are_invalid_payload(kind: str, params: dict[str, Any]) -> None:
    peer = opened()
    expect_error(peer, lambda: peer.send(kind, params), 1007)


@pytest.mark.parametrize(
    "params",
    [
        {"conversationId": "not-a-uuid"},
        {"organizationId": SECRET},
        {"participant": {"ani": "1"}},
        {"participant": "x"},
        {"media": "PCMU"},
        {"media": [offer("external", "external")]},
        {"media": [offer("left")]},
        {"media": [{"type": "audio", "format": "PCMU", "channels": [], "rate": 8000}]},
        {"media": [{"type": "audio", "format": "PCMU", "channels": STEREO, "rate": "8000"}]},
        {"language": "english"},
        {"supportedLanguages": "yes"},
        {"customConfig": [1]},
        {"continuedSessions": {}},
    ],
)
def test_bad_open_parameters(params: dict[str, Any]) -> None:
    peer = Peer(AudioHookDialect())
    expect_error(peer, lambda: peer.open(**params), 1007)


# ---- envelope and sequence rules -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "code"),
    [
        ({"version": "1"}, 1007),
        ({"version": 2}, 1007),
        ({"id": "x"}, 1007),
        ({"seq": -1}, 1007),
        ({"seq": True}, 1007),
        ({"seq": 1.5}, 1007),
        ({"serverseq": "0"}, 1007),
        ({"position": "12.3"}, 1007),
        ({"position": "PT-1S"}, 1007),
        ({"position": "PT172801S"}, 1007),
        ({"position": None}, 1007),
        ({"parameters": []}, 1007),
        ({"type": 5}, 1007),
        ({"type": "reconnect"}, 1002),
        ({"type": SECRET}, 1002),
        ({"seq": 5}, 1002),
        ({"serverseq": 9}, 1002),
        ({"id": "11111111-2222-4333-8444-555555555555"}, 1002),
    ],
)
def test_envelope_violations(over: dict[str, Any], code: int) -> None:
    peer = opened()
    expect_error(peer, lambda: peer.send("ping", {}, **over), code)


@pytest.mark.parametrize(
    "text", ["", "{", "[]", '{"a":1,"a":2}', '{"x": NaN}', "1" * 40, "[" * 5000]
)
def test_malformed_json(text: str) -> None:
    peer = opened()
    expect_error(peer, lambda: peer.dialect.receive_text(text), 1007)


def test_text_over_64k_is_too_big() -> None:
    peer = opened()
    expect_error(peer, lambda: peer.dialect.receive_text(" " * 70000), 1009)


def test_position_going_backwards_is_a_breach() -> None:
    peer = opened()
    peer.audio(200)
    peer.send("ping")
    expect_error(peer, lambda: peer.send("ping", {}, position="PT0.1S"), 1002)


def test_position_lagging_the_audio_is_counted_not_fatal() -> None:
    peer = opened()
    peer.send("ping", {}, position="PT0S")
    peer.audio(200)
    peer.samples = 0
    assert peer.send("ping", {}, position="PT0.1S") == []
    assert peer.dialect.counters.position_behind == 1


def test_nothing_is_accepted_after_a_breach_or_after_closed() -> None:
    peer = opened()
    with pytest.raises(DialectError):
        peer.send("ping", {}, seq=9)
    peer.replies()
    expect_error(peer, lambda: peer.send("ping", {}), 1002, disconnect=None)
    done = opened()
    done.send("close", {"reason": "end"})
    done.replies()
    expect_error(done, lambda: done.send("ping", {}), 1002, disconnect=None)


def opened_closed() -> Peer:
    peer = opened()
    peer.send("close", {"reason": "end"})
    return peer


# ---- audio ---------------------------------------------------------------------------------------


def test_stereo_audio_is_deinterleaved_in_the_chosen_order() -> None:
    peer = opened(None, offer("internal", "external"))
    caller = pcm16_to_ulaw(b"\x10\x00" * 4)
    agent = pcm16_to_ulaw(b"\x00\x7f" * 4)
    frame = bytes(b for pair in zip(agent, caller, strict=True) for b in pair)
    events = peer.dialect.receive_bytes(frame)
    assert events == [
        Audio("agent", ulaw_to_pcm16(agent), 0),
        Audio("caller", ulaw_to_pcm16(caller), 0),
    ]
    first = peer.dialect.receive_bytes(frame)[0]
    assert isinstance(first, Audio) and first.timestamp_ms == 0  # 4 samples: 0.5 ms
    assert peer.dialect.counters.audio_samples == 8


def test_mono_audio_and_empty_frames() -> None:
    peer = opened(None, offer("external"))
    assert peer.dialect.receive_bytes(b"") == []
    (audio,) = peer.audio(20, channels=1)
    assert audio.channel == "caller" and len(audio.pcm) == 320


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("fresh", "audio before opened"),
        ("paused", "audio while paused"),
        ("probe", "audio without negotiated media"),
        ("odd", "audio frame is not whole samples"),
    ],
)
def test_audio_out_of_place_is_a_breach(setup: str, reason: str) -> None:
    if setup == "fresh":
        peer = Peer(AudioHookDialect())
    elif setup == "probe":
        peer = Peer(AudioHookDialect())
        peer.open(conversationId=NULL_UUID)
        peer.replies()
    else:
        peer = opened()
        if setup == "paused":
            peer.send("paused")
            peer.replies()
    frame = b"\xff\xff\xff" if setup == "odd" else b"\xff\xff"
    code = 1007 if setup == "odd" else 1002
    assert expect_error(peer, lambda: peer.dialect.receive_bytes(frame), code) == reason


def test_audio_after_close_is_refused_without_disconnect() -> None:
    peer = opened_closed()
    peer.replies()
    expect_error(peer, lambda: peer.dialect.receive_bytes(b"\xff\xff"), 1002, disconnect=None)


# ---- pause, resume, discarded: the timeline stays true -------------------------------------------


def test_pause_resume_puts_the_held_time_on_the_timeline() -> None:
    peer = opened()
    peer.audio(400)
    assert peer.send("paused") == [Paused()]
    peer.samples += 2500 * 8  # the clock runs on while the client withholds audio
    assert peer.send("ping") == []  # no gap yet: still paused
    events = peer.send("resumed", {"start": "PT0.4S", "discarded": "PT2.5S"})
    assert events == [MediaGap(None, 2500), Resumed()]
    (audio, _) = peer.audio(200)
    assert audio.timestamp_ms == 2900


def test_discarded_audio_becomes_a_gap() -> None:
    peer = opened()
    peer.audio(200)
    peer.samples += 300 * 8
    events = peer.send("discarded", {"start": "PT0.2S", "discarded": "PT0.3S"})
    assert events == [MediaGap(None, 300)]
    assert peer.dialect.counters.discarded_reported_ms == 300


def test_an_unreported_gap_is_filled_from_the_position() -> None:
    peer = opened()
    peer.samples += 1001  # 125.125 ms
    assert peer.send("ping") == [MediaGap(None, 125)]
    peer.samples += 999  # the remainder carries: 2000 samples = 250 ms in all
    assert peer.send("ping") == [MediaGap(None, 125)]
    peer.samples += 5  # under a millisecond: rounding in the client's decimals, not a gap
    assert peer.send("ping") == []
    assert peer.dialect.counters.gap_ms == 250


def test_pause_then_close_fills_the_held_time() -> None:
    peer = opened()
    peer.send("paused")
    peer.samples += 800
    assert peer.send("close", {"reason": "end"}) == [MediaGap(None, 100), CallEnded("end")]


def test_server_initiated_pause_and_resume() -> None:
    peer = opened()
    assert peer.dialect.request_pause()
    assert peer.dialect.request_resume()
    assert [r["type"] for r in peer.replies()] == ["pause", "resume"]
    assert not Peer(AudioHookDialect()).dialect.request_pause()
    assert not Peer(AudioHookDialect()).dialect.request_resume()


def test_messages_out_of_state_are_ignored() -> None:
    peer = Peer(AudioHookDialect())
    assert peer.send("paused") == []
    assert peer.send("update", {"language": "en-US"}) == []
    assert peer.send("dtmf", {"digit": "1"}) == []
    assert peer.send("discarded", {"start": "PT0S", "discarded": "PT0S"}) == []
    assert peer.send("resumed", {"start": "PT0S", "discarded": "PT0S"}) == []
    assert peer.dialect.counters.ignored_messages == 5


# ---- the probe -----------------------------------------------------------------------------------


def test_probe_opens_and_closes_without_a_call() -> None:
    peer = Peer(AudioHookDialect())
    assert peer.open(conversationId=NULL_UUID, participant={"id": NULL_UUID}) == []
    (reply,) = peer.replies()
    assert reply["type"] == "opened" and reply["parameters"] == {"media": []}
    assert peer.dialect.is_probe
    assert peer.send("ping") == []
    assert peer.send("paused") == []  # nothing to pause
    assert peer.send("close", {"reason": "end"}) == [CallEnded("probe")]
    assert [r["type"] for r in peer.replies()] == ["pong", "closed"]


def test_probe_refuses_events_and_pauses() -> None:
    peer = Peer(AudioHookDialect(AudioHookOptions(send_events=True)))
    peer.open(conversationId=NULL_UUID)
    peer.replies()
    peer.dialect.send(SendEvent({"entities": [{"type": "x", "data": {}}]}))
    assert not peer.dialect.request_pause()
    assert peer.replies() == []
    assert peer.dialect.receive_eof() == [CallEnded("probe")]


# ---- exit paths and their close reasons ----------------------------------------------------------


def test_bridge_close_sends_disconnect_and_waits_for_the_client() -> None:
    peer = opened()
    peer.dialect.close("shutdown")
    (reply,) = peer.replies()
    assert reply["type"] == "disconnect"
    assert reply["parameters"] == {"reason": "completed", "info": "shutdown"}
    assert peer.dialect.close_to_send() is None
    peer.dialect.close("again")  # once only
    assert peer.replies() == []
    peer.audio(200)  # audio still in flight is fine
    assert peer.send("close", {"reason": "disconnect"}) == [CallEnded("disconnect")]
    assert peer.replies()[0]["type"] == "closed"
    assert peer.dialect.close_to_send() == (1000, "session closed")


@pytest.mark.parametrize(
    ("request_", "reason", "info"),
    [
        (Disconnect(), "completed", "completed"),
        (Disconnect("unauthorized"), "unauthorized", "unauthorized"),
        (Disconnect("recognition_error", "stt down"), "error", "stt down"),
        (Disconnect("media_timeout", f"x{SECRET}!\u00e9"), "completed", "xSECRET-4711"),
    ],
)
def test_disconnect_requests(request_: Disconnect, reason: str, info: str) -> None:
    peer = opened()
    peer.dialect.send(request_)
    (reply,) = peer.replies()
    assert reply["parameters"] == {"reason": reason, "info": info}


def test_close_before_open_and_eof() -> None:
    peer = Peer(AudioHookDialect())
    assert peer.send("close", {"reason": "error"}) == [CallEnded("error")]
    assert peer.dialect.receive_eof() == []
    live = opened()
    assert live.dialect.receive_eof() == [CallEnded("hangup")]
    assert live.dialect.receive_eof() == []
    live.dialect.close("shutdown")
    assert live.replies() == []


# ---- outbound requests ---------------------------------------------------------------------------


FINAL: dict[str, Any] = {
    "type": "final",
    "channel": "caller",
    "data": {
        "text": "hello world",
        "start_ms": 1200,
        "end_ms": 2050,
        "words": [
            {"text": "hello", "start_ms": 1200, "end_ms": 1500},
            {"text": "world", "start_ms": 1600, "end_ms": 2050},
            {"text": 5},
            "junk",
        ],
    },
}


def test_transcripts_go_back_as_transcript_entities() -> None:
    peer = opened(AudioHookOptions(send_events=True))
    assert "event" in peer.dialect.capabilities
    peer.dialect.send(SendEvent(FINAL))
    (reply,) = peer.replies()
    assert reply["type"] == "event"
    (entity,) = reply["parameters"]["entities"]
    assert entity["type"] == "transcript"
    data = entity["data"]
    assert data["channel"] == "external" and data["isFinal"] is True
    assert (data["offset"], data["duration"]) == ("PT1.2S", "PT0.85S")
    (alt,) = data["alternatives"]
    assert alt["languages"] == ["en-US"] and alt["confidence"] == 1.0
    (interp,) = alt["interpretations"]
    assert interp["transcript"] == "hello world"
    assert [(t["value"], t["offset"], t["duration"]) for t in interp["tokens"]] == [
        ("hello", "PT1.2S", "PT0.3S"),
        ("world", "PT1.6S", "PT0.45S"),
    ]
    # A partial of the same utterance would share the id; partials are off by default.
    peer.dialect.send(SendEvent({**FINAL, "type": "partial"}))
    peer.dialect.send(SendEvent({"type": "speech_started", "channel": "caller", "data": {}}))
    assert peer.replies() == []
    assert peer.dialect.counters.events_skipped == 2


def test_partials_and_raw_entities_when_enabled() -> None:
    peer = opened(AudioHookOptions(send_events=True, send_partials=True))
    peer.dialect.send(SendEvent({**FINAL, "type": "partial", "channel": "agent"}))
    peer.dialect.send(SendEvent({"entities": [{"type": "agentassist", "data": {"k": 1}}]}))
    first, second = peer.replies()
    assert first["parameters"]["entities"][0]["data"]["channel"] == "internal"
    assert first["parameters"]["entities"][0]["data"]["isFinal"] is False
    assert second["parameters"] == {"entities": [{"type": "agentassist", "data": {"k": 1}}]}


@pytest.mark.parametrize(
    "data",
    [
        {"entities": "x"},
        {"entities": [{"type": 1, "data": {}}]},
        {"entities": [{"type": "t", "data": float("nan")}]},
        {"type": None},
        {"type": "final", "channel": "caller"},
        {"type": "final", "channel": "nobody", "data": {}},
        {"type": "final", "channel": "caller", "data": {"text": "x", "start_ms": "0"}},
    ],
)
def test_unusable_event_data(data: dict[str, Any]) -> None:
    peer = opened(AudioHookOptions(send_events=True))
    with pytest.raises(UnsupportedRequest):
        peer.dialect.send(SendEvent(data))


def test_events_are_held_after_a_429_for_retry_after() -> None:
    peer = opened(AudioHookOptions(send_events=True))
    peer.send("error", {"code": 429, "message": "slow down", "retryAfter": "PT1S"})
    peer.dialect.send(SendEvent(FINAL))
    assert peer.replies() == []
    peer.audio(1000)
    peer.dialect.send(SendEvent(FINAL))
    assert [r["type"] for r in peer.replies()] == ["event"]
    assert peer.dialect.counters.events_dropped == 1
    assert peer.dialect.counters.last_client_error == 429


def test_monitor_refuses_playback_marks_and_events_by_default() -> None:
    peer = opened()
    for request in (PlayAudio(b"\x00\x00", 8000), ClearAudio(), SendMark("m"), SendEvent(FINAL)):
        with pytest.raises(UnsupportedRequest):
            peer.dialect.send(request)


def test_audio_connector_plays_and_barges_in() -> None:
    peer = opened(AudioHookOptions(audio_connector=True), offer("external"))
    assert {"play", "clear"} <= peer.dialect.capabilities
    peer.dialect.send(PlayAudio(b"\x00\x01" * 16000, 16000))  # 1 s at 16 kHz -> 8000 bytes
    frames = peer.dialect.data_to_send()
    assert [len(f) for f in frames] == [1600] * 5 and all(isinstance(f, bytes) for f in frames)
    peer.dialect.send(ClearAudio())
    (barge,) = peer.replies()
    assert barge["parameters"] == {"entities": [{"type": "barge_in", "data": {}}]}
    agent_only = opened(AudioHookOptions(audio_connector=True), offer("internal"))
    agent_only.dialect.send(PlayAudio(b"\x00\x00", 8000))
    assert agent_only.dialect.data_to_send() == []


# ---- durations and options -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ns"),
    [("PT0S", 0), ("PT1.5S", 1_500_000_000), ("PT.25S", 250_000_000), ("PT0.0000000019S", 1)],
)
def test_durations(text: str, ns: int) -> None:
    assert parse_duration_ns(text, "d") == ns


@pytest.mark.parametrize("text", ["P1S", "PT1", "PT1.S", "PT-1S", "PT1e3S", "PT S", 5])
def test_bad_durations(text: Any) -> None:
    with pytest.raises(DialectError):
        parse_duration_ns(text, "d")


def test_duration_formatting() -> None:
    assert [format_duration_ms(m) for m in (0, 5, 1000, 1230, -3)] == [
        "PT0S",
        "PT0.005S",
        "PT1S",
        "PT1.23S",
        "PT0S",
    ]
    assert format_duration_samples(1) == "PT0.000125S"


@pytest.mark.parametrize(
    "options",
    [
        {"channels": "left"},
        {"send_events": "yes"},
        {"supported_languages": "en-US"},
        {"supported_languages": ["english"]},
        {"typo": 1},
    ],
)
def test_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        AudioHookOptions.from_mapping(options)


def test_options_parse() -> None:
    options = AudioHookOptions.from_mapping(
        {"channels": "external", "send_events": True, "supported_languages": ["en-US"]}
    )
    assert options == AudioHookOptions(
        channels="external", send_events=True, supported_languages=("en-US",)
    )


def test_outbound_json_is_ascii_even_for_broken_text() -> None:
    peer = opened(AudioHookOptions(send_events=True))
    broken = {**FINAL, "data": {**FINAL["data"], "text": "caf\u00e9 \ud800", "words": []}}
    peer.dialect.send(SendEvent(broken))
    (frame,) = peer.dialect.data_to_send()
    assert isinstance(frame, str) and frame.isascii()
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(UnsupportedRequest):
        peer.dialect.send(SendEvent({"entities": [{"type": "t", "data": deep}]}))


def test_ids_compare_case_insensitively_and_replies_keep_the_spelling() -> None:
    upper = SID.upper()
    peer = Peer(AudioHookDialect(identity=SessionIdentity(upper, ORG.upper())), session_id=SID)
    peer.open()
    assert peer.replies()[0]["id"] == upper
    assert peer.send("ping") == []
