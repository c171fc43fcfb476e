"""Twilio Media Streams dialect: the happy path, every bad-input class, counters, back-channel."""

from __future__ import annotations

import base64
import json
import math
from array import array
from typing import Any

import pytest

from ivr_bridge.audio.codecs import pcm16_to_ulaw, ulaw_to_pcm16
from ivr_bridge.dialects.base import Dialect
from ivr_bridge.dialects.twilio import FRAME_BYTES, TwilioCounters, TwilioDialect
from ivr_bridge.errors import DialectError
from ivr_bridge.model import (
    Audio,
    CallEnded,
    CallStarted,
    ChannelInfo,
    Dtmf,
    Mark,
    MediaFormat,
)
from ivr_bridge.simulators.twilio import TwilioStreamEncoder, new_sid
from tests.dialects.twilio_helpers import DELETE, FRAME, SECRET, edit, started

INVALID, PROTOCOL, UNSUPPORTED = 1007, 1002, 1003


def expect_error(dialect: TwilioDialect, text: str, code: int) -> DialectError:
    with pytest.raises(DialectError) as info:
        dialect.receive_text(text)
    err = info.value
    assert err.close_code == code, err.reason
    assert SECRET not in err.reason and len(err.reason) <= 120
    return err


def test_satisfies_the_dialect_protocol() -> None:
    dialect: Dialect = TwilioDialect()
    assert dialect.name == "twilio"


# ---- the happy path: encoder -> dialect round trip -----------------------------------------------


def test_round_trip_one_track() -> None:
    enc = TwilioStreamEncoder(
        account_sid="AC1", call_sid="CA1", stream_sid="MZ1", custom_parameters={"from": "+1555"}
    )
    tone = array("h", (int(9000 * math.sin(i / 3)) for i in range(1000))).tobytes()
    mulaw = pcm16_to_ulaw(tone)
    messages = [enc.connected(), enc.start(), *enc.media_frames(mulaw), enc.dtmf("7"), enc.stop()]
    dialect = TwilioDialect()
    events = [e for m in messages for e in dialect.receive_text(m)]

    assert events[0] == CallStarted(
        dialect="twilio",
        platform_call_id="CA1",
        stream_id="MZ1",
        channels=(ChannelInfo("caller", "inbound"),),
        media_format=MediaFormat("pcmu", 8000, 1),
        sample_rate=8000,
        metadata={
            "account_sid": "AC1",
            "call_sid": "CA1",
            "stream_sid": "MZ1",
            "tracks": "inbound",
        },
        custom_parameters={"from": "+1555"},
    )
    audio = [e for e in events if isinstance(e, Audio)]
    assert len(audio) == 7  # 1000 samples -> 6 full frames + 1 padded
    assert all(a.channel == "caller" and len(a.pcm) == 320 for a in audio)
    assert [a.timestamp_ms for a in audio] == [0, 20, 40, 60, 80, 100, 120]
    decoded = b"".join(a.pcm for a in audio)
    assert decoded[: len(tone)] == ulaw_to_pcm16(mulaw)
    assert decoded[len(tone) :] == bytes(len(decoded) - len(tone))  # padding is silence
    assert events[-2:] == [Dtmf("caller", "7"), CallEnded("stop")]
    assert dialect.started and dialect.stopped
    assert (dialect.stream_sid, dialect.call_sid, dialect.tracks) == ("MZ1", "CA1", ("inbound",))
    assert dialect.counters == TwilioCounters(
        messages=11, connected=1, media_frames=7, media_bytes=7 * 160, dtmf=1
    )
    assert dialect.data_to_send() == []


def test_round_trip_both_tracks() -> None:
    dialect, enc = started(tracks=("inbound", "outbound"))
    a = dialect.receive_text(enc.media(FRAME, track="inbound"))
    b = dialect.receive_text(enc.media(FRAME, track="outbound"))
    assert [x.channel for x in a + b if isinstance(x, Audio)] == ["caller", "agent"]
    assert dialect.tracks == ("inbound", "outbound")


def test_start_reports_channels_in_canonical_order() -> None:
    enc = TwilioStreamEncoder(tracks=("outbound", "inbound"))
    (started_event,) = TwilioDialect().receive_text(enc.start())
    assert isinstance(started_event, CallStarted)
    assert [c.name for c in started_event.channels] == ["caller", "agent"]
    assert started_event.metadata["tracks"] == "inbound,outbound"


def test_fresh_dialect_state() -> None:
    dialect = TwilioDialect()
    assert not dialect.started and not dialect.stopped
    assert dialect.stream_sid is None and dialect.call_sid is None and dialect.tracks == ()


def test_new_sid_looks_like_twilio() -> None:
    sid = new_sid("CA")
    assert sid.startswith("CA") and len(sid) == 34
    int(sid[2:], 16)


# ---- start: accepted variants --------------------------------------------------------------------


def start_text(**kwargs: Any) -> str:
    return TwilioStreamEncoder(stream_sid="MZ1", call_sid="CA1", **kwargs).start()


def start_event(text: str) -> CallStarted:
    (event,) = TwilioDialect().receive_text(text)
    assert isinstance(event, CallStarted)
    return event


@pytest.mark.parametrize(
    "edits",
    [
        [(["streamSid"], DELETE)],
        [(["start", "streamSid"], DELETE)],
        [(["sequenceNumber"], 1)],
        [(["sequenceNumber"], DELETE)],
        [(["start", "mediaFormat", "encoding"], "AUDIO/X-MULAW")],
        [(["start", "tracks"], ["inbound_track"])],
        [(["start", "customParameters"], None)],
        [(["start", "customParameters"], DELETE)],
        [(["start", "extra"], {"anything": [1, 2]}), (["future"], True)],
    ],
)
def test_start_variants_are_accepted(edits: list[tuple[list[str], Any]]) -> None:
    text = start_text()
    for path, value in edits:
        text = edit(text, path, value)
    event = start_event(text)
    assert event.stream_id == "MZ1" and event.platform_call_id == "CA1"
    assert event.channels == (ChannelInfo("caller", "inbound"),)


def test_custom_parameters_become_strings() -> None:
    text = edit(
        start_text(),
        ["start", "customParameters"],
        {"s": "é", "n": 5, "b": True, "z": None, "o": {"x": [1, "é"]}, "f": 1.5},
    )
    assert dict(start_event(text).custom_parameters) == {
        "s": "é",
        "n": "5",
        "b": "true",
        "z": "null",
        "o": '{"x":[1,"é"]}',
        "f": "1.5",
    }


# ---- bad inputs before start ---------------------------------------------------------------------


DEEP_ARRAY = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 100_000 + "1" + "}" * 100_000


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{not json",
        f'{{"event":"connected","x":"{SECRET}"',
        '{"event":"connected","n":NaN}',
        '{"event":"connected","n":Infinity}',
        '{"event":"connected","n":-Infinity}',
        '{"event":"connected","n":1e400}',
        '{"event":"connected","n":-1e400}',
        '{"event":"connected","n":' + "9" * 30 + "}",
        '{"event":"connected","n":' + "9" * 5000 + "}",
        "[1,2]",
        "42",
        '"media"',
        "null",
        '{"event":"connected","event":"start"}',
        '{"event":"connected","x":{"a":1,"a":2}}',
        DEEP_ARRAY,
        DEEP_OBJECT,
        '{"event":"connected","x":' + DEEP_ARRAY + "}",
        "{}",
        '{"event":5}',
        '{"event":null}',
        '{"event":["media"]}',
        "\ud800",
        '{"event":"connected"}\x00',
    ],
)
def test_malformed_messages_are_invalid_payload(text: str) -> None:
    expect_error(TwilioDialect(), text, INVALID)


def test_recursion_error_never_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    dialect = TwilioDialect()

    def boom(_: str) -> list[Any]:
        raise RecursionError

    monkeypatch.setattr(dialect, "_receive", boom)
    assert expect_error(dialect, "{}", INVALID).reason == "message nested too deeply"


@pytest.mark.parametrize("kind", ["media", "dtmf", "mark", "stop"])
def test_messages_before_start_are_protocol_errors(kind: str) -> None:
    enc = TwilioStreamEncoder()
    text = {
        "media": lambda: enc.media(FRAME),
        "dtmf": lambda: enc.dtmf("1"),
        "mark": lambda: enc.mark("m"),
        "stop": enc.stop,
    }[kind]()
    dialect = TwilioDialect()
    dialect.receive_text(enc.connected())
    assert expect_error(dialect, text, PROTOCOL).reason == f"{kind} before start"


def test_binary_frames_are_unsupported() -> None:
    dialect = TwilioDialect()
    with pytest.raises(DialectError) as info:
        dialect.receive_bytes(b"\x00\x01")
    assert info.value.close_code == UNSUPPORTED
    assert dialect.counters.messages == 1


# ---- bad start messages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edits", "code"),
    [
        ([(["start"], DELETE)], INVALID),
        ([(["start"], [SECRET])], INVALID),
        ([(["start"], SECRET)], INVALID),
        ([(["streamSid"], DELETE), (["start", "streamSid"], DELETE)], INVALID),
        ([(["streamSid"], 5)], INVALID),
        ([(["start", "streamSid"], "")], INVALID),
        ([(["start", "streamSid"], SECRET)], PROTOCOL),
        ([(["start", "callSid"], DELETE)], INVALID),
        ([(["start", "callSid"], "")], INVALID),
        ([(["start", "callSid"], 5)], INVALID),
        ([(["start", "callSid"], SECRET + "\ud800")], INVALID),
        ([(["start", "accountSid"], DELETE)], INVALID),
        ([(["start", "accountSid"], None)], INVALID),
        ([(["start", "tracks"], DELETE)], INVALID),
        ([(["start", "tracks"], "inbound")], INVALID),
        ([(["start", "tracks"], [])], INVALID),
        ([(["start", "tracks"], [5])], INVALID),
        ([(["start", "tracks"], ["inbound", "inbound"])], INVALID),
        ([(["start", "tracks"], ["inbound", "inbound_track"])], INVALID),
        ([(["start", "tracks"], [SECRET])], UNSUPPORTED),
        ([(["start", "mediaFormat"], DELETE)], INVALID),
        ([(["start", "mediaFormat"], "audio/x-mulaw")], INVALID),
        ([(["start", "mediaFormat", "encoding"], DELETE)], INVALID),
        ([(["start", "mediaFormat", "encoding"], 7)], INVALID),
        ([(["start", "mediaFormat", "sampleRate"], DELETE)], INVALID),
        ([(["start", "mediaFormat", "sampleRate"], "8000")], INVALID),
        ([(["start", "mediaFormat", "sampleRate"], 8000.0)], INVALID),
        ([(["start", "mediaFormat", "sampleRate"], True)], INVALID),
        ([(["start", "mediaFormat", "channels"], DELETE)], INVALID),
        ([(["start", "mediaFormat", "channels"], "1")], INVALID),
        ([(["start", "mediaFormat", "encoding"], "audio/x-alaw")], UNSUPPORTED),
        ([(["start", "mediaFormat", "encoding"], SECRET)], UNSUPPORTED),
        ([(["start", "mediaFormat", "sampleRate"], 16000)], UNSUPPORTED),
        ([(["start", "mediaFormat", "channels"], 2)], UNSUPPORTED),
        ([(["start", "customParameters"], [SECRET])], INVALID),
        ([(["start", "customParameters"], SECRET)], INVALID),
        ([(["start", "customParameters"], {"k": SECRET + "\ud800"})], INVALID),
        ([(["start", "customParameters"], {SECRET + "\udfff": "v"})], INVALID),
        ([(["start", "customParameters"], {"k": {"d": SECRET + "\ud800"}})], INVALID),
        ([(["sequenceNumber"], "abc")], INVALID),
        ([(["sequenceNumber"], "-1")], INVALID),
        ([(["sequenceNumber"], "")], INVALID),
        ([(["sequenceNumber"], "1.5")], INVALID),
        ([(["sequenceNumber"], " 1")], INVALID),
        ([(["sequenceNumber"], "\uff11")], INVALID),  # a fullwidth digit: isdigit() but not ASCII
        ([(["sequenceNumber"], "1" * 19)], INVALID),
        ([(["sequenceNumber"], 1.5)], INVALID),
        ([(["sequenceNumber"], -1)], INVALID),
        ([(["sequenceNumber"], True)], INVALID),
        ([(["sequenceNumber"], None)], INVALID),
    ],
)
def test_bad_start_messages(edits: list[tuple[list[str], Any]], code: int) -> None:
    text = start_text()
    for path, value in edits:
        text = edit(text, path, value)
    dialect = TwilioDialect()
    expect_error(dialect, text, code)
    assert not dialect.started  # validation happens before any state changes


def test_duplicate_start_is_a_protocol_error() -> None:
    dialect, enc = started()
    assert expect_error(dialect, enc.start(), PROTOCOL).reason == "duplicate start"


# ---- bad media -----------------------------------------------------------------------------------


def media_text(**kwargs: Any) -> str:
    enc = TwilioStreamEncoder(stream_sid="MZ1")
    enc.start()
    return enc.media(FRAME, **kwargs)


@pytest.mark.parametrize(
    ("path", "value", "code"),
    [
        (["streamSid"], DELETE, INVALID),
        (["streamSid"], 5, INVALID),
        (["streamSid"], SECRET, PROTOCOL),
        (["media"], DELETE, INVALID),
        (["media"], SECRET, INVALID),
        (["media", "track"], DELETE, INVALID),
        (["media", "track"], 5, INVALID),
        (["media", "track"], "outbound", PROTOCOL),
        (["media", "track"], SECRET, PROTOCOL),
        (["media", "payload"], DELETE, INVALID),
        (["media", "payload"], "", INVALID),
        (["media", "payload"], 5, INVALID),
        (["media", "payload"], None, INVALID),
        (["media", "payload"], "@@@@", INVALID),
        (["media", "payload"], "AAAA AAAA", INVALID),
        (["media", "payload"], "AAAA\n", INVALID),
        (["media", "payload"], "-_-_", INVALID),
        (["media", "payload"], "AAA", INVALID),
        (["media", "payload"], "AAAA==", INVALID),
        (["media", "payload"], "AB==", INVALID),
        (["media", "payload"], "=AAA", INVALID),
        (["media", "payload"], "\u00c4\u00c4\u00c4\u00c4", INVALID),
        (["media", "payload"], SECRET, INVALID),
        (["media", "chunk"], "x", INVALID),
        (["media", "chunk"], -1, INVALID),
        (["media", "timestamp"], "-5", INVALID),
        (["media", "timestamp"], "1.5", INVALID),
        (["media", "timestamp"], 1.5, INVALID),
        (["media", "timestamp"], True, INVALID),
        (["media", "timestamp"], SECRET, INVALID),
        (["sequenceNumber"], "x", INVALID),
    ],
)
def test_bad_media(path: list[str], value: Any, code: int) -> None:
    dialect, _ = started(stream_sid="MZ1")
    expect_error(dialect, edit(media_text(), path, value), code)
    assert dialect.counters.media_frames == 0


@pytest.mark.parametrize("size", [1, 159, 161, 16_000])
def test_any_frame_size_decodes(size: int) -> None:
    dialect, enc = started()
    (audio,) = dialect.receive_text(enc.media(b"\x7f" * size))
    assert isinstance(audio, Audio) and len(audio.pcm) == 2 * size


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["media", "timestamp"], 40, 40),
        (["media", "timestamp"], DELETE, None),
        (["media", "chunk"], DELETE, 0),
        (["media", "chunk"], 3, 0),
        (["media", "track"], "inbound_track", 0),
        (["sequenceNumber"], DELETE, 0),
    ],
)
def test_media_variants_are_accepted(path: list[str], value: Any, expected: int | None) -> None:
    dialect, _ = started(stream_sid="MZ1")
    (audio,) = dialect.receive_text(edit(media_text(), path, value))
    assert isinstance(audio, Audio)
    assert audio.timestamp_ms == expected and audio.pcm == ulaw_to_pcm16(FRAME)


def test_outbound_media_needs_the_outbound_track() -> None:
    dialect, enc = started(tracks=("inbound",))
    other = TwilioStreamEncoder(stream_sid=enc.stream_sid, tracks=("outbound",))
    err = expect_error(dialect, other.media(FRAME, track="outbound"), PROTOCOL)
    assert err.reason == "media.track not in start.tracks"


# ---- dtmf, mark, stop ----------------------------------------------------------------------------


def dtmf_text(digit: str = "5") -> str:
    return TwilioStreamEncoder(stream_sid="MZ1").dtmf(digit)


@pytest.mark.parametrize(
    ("path", "value", "code"),
    [
        (["dtmf"], DELETE, INVALID),
        (["dtmf"], SECRET, INVALID),
        (["dtmf", "digit"], DELETE, INVALID),
        (["dtmf", "digit"], "", INVALID),
        (["dtmf", "digit"], 5, INVALID),
        (["dtmf", "digit"], "X", INVALID),
        (["dtmf", "digit"], "12", INVALID),
        (["dtmf", "digit"], SECRET, INVALID),
        (["dtmf", "track"], 5, INVALID),
        (["dtmf", "track"], "outbound_track", PROTOCOL),
        (["streamSid"], "MZ2", PROTOCOL),
        (["sequenceNumber"], [1], INVALID),
    ],
)
def test_bad_dtmf(path: list[str], value: Any, code: int) -> None:
    dialect, _ = started(stream_sid="MZ1")
    expect_error(dialect, edit(dtmf_text(), path, value), code)


@pytest.mark.parametrize("digit", ["0", "9", "*", "#", "A", "D"])
def test_dtmf_digits(digit: str) -> None:
    dialect, _ = started(stream_sid="MZ1")
    assert dialect.receive_text(dtmf_text(digit)) == [Dtmf("caller", digit)]
    assert dialect.receive_text(edit(dtmf_text(digit), ["dtmf", "track"])) == [
        Dtmf("caller", digit)
    ]
    assert dialect.counters.dtmf == 2


def test_dtmf_on_the_outbound_track_of_a_two_track_stream() -> None:
    dialect, enc = started(tracks=("inbound", "outbound"))
    assert dialect.receive_text(enc.dtmf("3", track="outbound_track")) == [Dtmf("agent", "3")]


@pytest.mark.parametrize(
    ("path", "value", "code"),
    [
        (["mark"], DELETE, INVALID),
        (["mark"], [SECRET], INVALID),
        (["mark", "name"], DELETE, INVALID),
        (["mark", "name"], "", INVALID),
        (["mark", "name"], 1, INVALID),
        (["streamSid"], DELETE, INVALID),
    ],
)
def test_bad_mark(path: list[str], value: Any, code: int) -> None:
    dialect, _ = started(stream_sid="MZ1")
    text = TwilioStreamEncoder(stream_sid="MZ1").mark("greeting")
    expect_error(dialect, edit(text, path, value), code)


def test_mark_echo() -> None:
    dialect, enc = started()
    assert dialect.receive_text(enc.mark("greeting-done")) == [Mark("greeting-done")]
    assert dialect.counters.marks == 1


def stop_text() -> str:
    return TwilioStreamEncoder(stream_sid="MZ1", call_sid="CA1", account_sid="AC1").stop()


@pytest.mark.parametrize(
    ("path", "value", "code"),
    [
        (["stop"], SECRET, INVALID),
        (["stop", "callSid"], SECRET, PROTOCOL),
        (["stop", "accountSid"], SECRET, PROTOCOL),
        (["stop", "callSid"], 5, INVALID),
        (["streamSid"], SECRET, PROTOCOL),
        (["sequenceNumber"], "-", INVALID),
    ],
)
def test_bad_stop(path: list[str], value: Any, code: int) -> None:
    dialect, _ = started(stream_sid="MZ1", call_sid="CA1", account_sid="AC1")
    expect_error(dialect, edit(stop_text(), path, value), code)
    assert not dialect.stopped


@pytest.mark.parametrize("path", [["stop"], ["stop", "callSid"], ["stop", "accountSid"]])
def test_stop_body_is_optional(path: list[str]) -> None:
    dialect, _ = started(stream_sid="MZ1", call_sid="CA1", account_sid="AC1")
    assert dialect.receive_text(edit(stop_text(), path)) == [CallEnded("stop")]


def test_everything_after_stop_is_a_protocol_error() -> None:
    dialect, enc = started()
    later = [enc.media(FRAME), enc.connected(), enc.stop(), "{not json", '{"event":"x"}']
    dialect.receive_text(enc.stop())
    for text in later:
        assert expect_error(dialect, text, PROTOCOL).reason == "message after stop"


# ---- tolerated: connected, unknown events --------------------------------------------------------


def test_connected_is_checked_loosely() -> None:
    dialect, enc = started()
    assert dialect.receive_text('{"event":"connected"}') == []
    assert dialect.receive_text('{"event":"connected","protocol":5}') == []
    assert dialect.counters.connected == 3


def test_unknown_events_are_counted_and_ignored() -> None:
    dialect = TwilioDialect()
    assert dialect.receive_text('{"event":"transcription","sequenceNumber":"x"}') == []
    dialect.receive_text(TwilioStreamEncoder(stream_sid="MZ1").start())  # sequenceNumber 1
    # a future event type consumes sequenceNumber 2; its own fields are not checked
    assert dialect.receive_text('{"event":"future","sequenceNumber":"2","streamSid":"MZ9"}') == []
    assert dialect.receive_text('{"event":"future2","sequenceNumber":{"x":1}}') == []
    dialect.receive_text(media_with(3, 0))
    assert dialect.counters.unknown_events == 3
    assert dialect.counters.sequence_gaps == 0
    assert dialect.counters.media_frames == 1


# ---- sequence numbers and timestamps -------------------------------------------------------------


def media_with(seq: int, timestamp: int, track: str = "inbound", size: int = 160) -> str:
    message = {
        "event": "media",
        "sequenceNumber": str(seq),
        "media": {
            "track": track,
            "chunk": "1",
            "timestamp": str(timestamp),
            "payload": base64.b64encode(b"\xff" * size).decode(),
        },
        "streamSid": "MZ1",
    }
    return json.dumps(message)


def feed(dialect: TwilioDialect, frames: list[tuple[int, int]], track: str = "inbound") -> None:
    for seq, ts in frames:
        dialect.receive_text(media_with(seq, ts, track))


def test_sequence_gap_duplicate_and_reorder_are_counted_not_fatal() -> None:
    dialect, _ = started(stream_sid="MZ1")  # start was sequenceNumber 1
    feed(dialect, [(2, 0), (5, 60), (3, 20), (3, 20), (6, 80), (6, 80), (8, 120)])
    c = dialect.counters
    assert (c.sequence_gaps, c.sequence_missing) == (2, 3)
    assert c.sequence_reorders == 1
    assert c.sequence_duplicates == 2
    assert c.media_frames == 7


def test_duplicate_detection_window_is_bounded() -> None:
    dialect, _ = started(stream_sid="MZ1")
    feed(dialect, [(seq, (seq - 2) * 20) for seq in range(2, 1100)])
    feed(dialect, [(2, 0), (1099, 21940)])  # 2 fell out of the window, 1099 did not
    c = dialect.counters
    assert (c.sequence_reorders, c.sequence_duplicates, c.sequence_gaps) == (1, 1, 0)


def test_first_sequence_number_may_be_anything() -> None:
    dialect, enc = started(stream_sid="MZ1")
    fresh = TwilioDialect()
    fresh.receive_text(edit(enc.start(), ["sequenceNumber"]))
    feed(fresh, [(100, 0), (101, 20)])
    assert fresh.counters.sequence_gaps == 0


def test_timestamp_gaps_and_reorders_per_track() -> None:
    dialect, _ = started(stream_sid="MZ1", tracks=("inbound", "outbound"))
    feed(dialect, [(2, 0), (3, 20), (4, 45), (5, 160), (6, 160), (7, 100)], "inbound")
    feed(dialect, [(8, 0), (9, 20)], "outbound")  # its own clock: no reorder against inbound
    c = dialect.counters
    assert c.timestamp_gaps == 1  # 45 is jitter (5 ms), 160 skipped 95 ms
    assert c.timestamp_gap_ms == 160 - 65
    assert c.timestamp_reorders == 2  # 160 again, then 100
    assert c.as_dict()["timestamp_gaps"] == 1


def test_timestamp_gap_uses_the_previous_frame_length() -> None:
    dialect, _ = started(stream_sid="MZ1")
    dialect.receive_text(media_with(2, 0, size=800))  # a 100 ms frame
    dialect.receive_text(media_with(3, 100))
    dialect.receive_text(media_with(4, 121))  # 1 ms late: jitter, not a lost frame
    assert dialect.counters.timestamp_gaps == 0
    dialect.receive_text(media_with(5, 200, size=1))  # 59 ms lost
    dialect.receive_text(media_with(6, 201, size=1))  # 0.875 ms late: rounding, not a loss
    dialect.receive_text(media_with(7, 203, size=1))  # 1.875 ms late
    assert dialect.counters.timestamp_gaps == 2
    assert dialect.counters.timestamp_gap_ms == 59 + 2


# ---- back-channel --------------------------------------------------------------------------------


def test_back_channel_frames() -> None:
    dialect, enc = started(stream_sid="MZ1")
    assert dialect.send_media(b"\xff" * 160)
    assert dialect.send_mark("prompt-1")
    assert dialect.send_clear()
    out = [json.loads(t) for t in dialect.data_to_send()]
    assert out == [
        {"event": "media", "media": {"payload": base64.b64encode(b"\xff" * 160).decode()},
         "streamSid": "MZ1"},
        {"event": "mark", "mark": {"name": "prompt-1"}, "streamSid": "MZ1"},
        {"event": "clear", "streamSid": "MZ1"},
    ]  # fmt: skip
    assert dialect.data_to_send() == []


def test_back_channel_needs_a_live_stream() -> None:
    dialect = TwilioDialect()
    assert not dialect.send_media(b"\xff")
    assert not dialect.send_mark("m")
    assert not dialect.send_clear()
    dialect, enc = started()
    dialect.receive_text(enc.stop())
    assert not dialect.send_clear()
    assert dialect.data_to_send() == []


def test_back_channel_refuses_empty_input() -> None:
    dialect, _ = started()
    with pytest.raises(ValueError):
        dialect.send_media(b"")
    with pytest.raises(ValueError):
        dialect.send_mark("")


# ---- the encoder ---------------------------------------------------------------------------------


def test_encoder_formats_like_twilio() -> None:
    enc = TwilioStreamEncoder(account_sid="AC1", call_sid="CA1", stream_sid="MZ1")
    assert json.loads(enc.connected()) == {
        "event": "connected",
        "protocol": "Call",
        "version": "1.0.0",
    }
    start = json.loads(enc.start())
    assert start["sequenceNumber"] == "1" and start["streamSid"] == "MZ1"
    assert start["start"]["mediaFormat"] == {
        "encoding": "audio/x-mulaw",
        "sampleRate": 8000,
        "channels": 1,
    }
    first, second = (json.loads(t) for t in enc.media_frames(b"\x01" * 200))
    assert first["sequenceNumber"] == "2"
    assert first["media"]["chunk"] == "1" and first["media"]["timestamp"] == "0"
    assert second["media"]["chunk"] == "2" and second["media"]["timestamp"] == "20"
    assert base64.b64decode(second["media"]["payload"]) == b"\x01" * 40 + b"\xff" * 120
    assert enc.sequence_number == 3 and enc.timestamp_ms() == 40
    dtmf = json.loads(enc.dtmf("9"))
    assert dtmf["dtmf"] == {"track": "inbound_track", "digit": "9"}
    stop = json.loads(enc.stop())
    assert stop["sequenceNumber"] == "5"
    assert stop["stop"] == {"accountSid": "AC1", "callSid": "CA1"}


def test_encoder_skip_and_explicit_timestamps() -> None:
    enc = TwilioStreamEncoder(tracks=("inbound", "outbound"))
    enc.skip(1000)
    assert enc.timestamp_ms("inbound") == enc.timestamp_ms("outbound") == 1000
    enc.skip(500, track="outbound")
    assert enc.timestamp_ms("outbound") == 1500
    message = json.loads(enc.media(FRAME, track="inbound", timestamp_ms=7))
    assert message["media"]["timestamp"] == "7"
    assert enc.timestamp_ms("inbound") == 27
    assert len(FRAME) == FRAME_BYTES


def test_encoder_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        TwilioStreamEncoder(tracks=())
    with pytest.raises(ValueError):
        TwilioStreamEncoder(tracks=("inbound_track",))
    enc = TwilioStreamEncoder()
    with pytest.raises(ValueError):
        enc.media(FRAME, track="outbound")
    with pytest.raises(ValueError):
        enc.skip(-1)
