"""The Twilio-style family: per platform, messages in -> events, requests -> frames out.

Each platform's own encoder (what that platform sends) drives its dialect, so the tables
below double as the README's message tables.
"""

from __future__ import annotations

import base64
import json
from array import array
from typing import Any

import pytest

from ivr_bridge.audio.codecs import pcm16_to_alaw, pcm16_to_ulaw, resample, ulaw_to_pcm16
from ivr_bridge.dialects.base import (
    ClearAudio,
    Dialect,
    Disconnect,
    PlayAudio,
    SendEvent,
    SendMark,
    UnsupportedRequest,
)
from ivr_bridge.dialects.exotel import ExotelDialect
from ivr_bridge.dialects.plivo import PlivoDialect, parse_extra_headers
from ivr_bridge.dialects.signalwire import SignalWireDialect
from ivr_bridge.dialects.telnyx import TelnyxDialect
from ivr_bridge.dialects.twilio import TwilioDialect
from ivr_bridge.dialects.twilio_family import TwilioStyleDialect
from ivr_bridge.errors import DialectError
from ivr_bridge.model import Audio, CallEnded, CallStarted, Dtmf, Mark, MediaFormat, MediaGap
from ivr_bridge.simulators.twilio import TwilioStreamEncoder
from ivr_bridge.simulators.twilio_family import (
    ExotelStreamEncoder,
    PlivoStreamEncoder,
    SignalWireStreamEncoder,
    TelnyxStreamEncoder,
)
from tests.dialects.twilio_helpers import SECRET, edit

RAMP = array("h", range(-8000, 8000, 50)).tobytes()  # 320 samples, survives L16 exactly

CASES: list[tuple[type[TwilioStyleDialect], type[TwilioStreamEncoder], str, int, str]] = [
    (SignalWireDialect, SignalWireStreamEncoder, "l16", 16000, "signalwire"),
    (TelnyxDialect, TelnyxStreamEncoder, "pcmu", 8000, "telnyx"),
    (PlivoDialect, PlivoStreamEncoder, "l16", 8000, "plivo"),
    (ExotelDialect, ExotelStreamEncoder, "l16", 8000, "exotel"),
]


def feed(dialect: TwilioStyleDialect, frames: list[str | bytes]) -> list[Any]:
    out: list[Any] = []
    for frame in frames:
        assert isinstance(frame, str)
        out.extend(dialect.receive_text(frame))
    return out


@pytest.mark.parametrize(("cls", "enc_cls", "codec", "rate", "name"), CASES)
def test_round_trip(
    cls: type[TwilioStyleDialect],
    enc_cls: type[TwilioStreamEncoder],
    codec: str,
    rate: int,
    name: str,
) -> None:
    enc = enc_cls(call_sid="CALL1", stream_sid="STREAM1", custom_parameters={"k": "v"})
    dialect: Dialect = cls()
    assert dialect.name == name
    assert isinstance(dialect, TwilioStyleDialect)
    pcm = resample(RAMP, 8000, rate)
    frame, size = enc.audio(pcm, "inbound")
    events = feed(dialect, [*enc.opening(), frame, *enc.digit("7"), enc.mark("m1")])
    started = events[0]
    assert isinstance(started, CallStarted)
    assert (started.dialect, started.platform_call_id, started.stream_id) == (
        name,
        "CALL1",
        "STREAM1",
    )
    assert started.media_format == MediaFormat(codec, rate, 1)
    assert started.sample_rate == rate
    assert dict(started.custom_parameters) == {"k": "v"}
    audio = events[1]
    assert isinstance(audio, Audio) and audio.channel == "caller"
    expected = ulaw_to_pcm16(pcm16_to_ulaw(pcm)) if codec == "pcmu" else pcm
    assert audio.pcm == expected and size == len(pcm) // (2 if codec == "pcmu" else 1)
    dtmf = events[2]
    assert isinstance(dtmf, Dtmf) and dtmf.digit == "7" and dtmf.channel == "caller"
    assert events[3] == Mark("m1")
    closing = enc.closing()
    ended = feed(dialect, closing) if closing else dialect.receive_eof()
    assert ended == [CallEnded("stop" if closing else "hangup")]
    assert dialect.receive_eof() == []


# ---- replies out ------------------------------------------------------------------------------


def started_dialect(cls: type[TwilioStyleDialect], enc: TwilioStreamEncoder) -> Any:
    dialect = cls()
    feed(dialect, enc.opening())
    return dialect


@pytest.mark.parametrize(
    ("cls", "enc_cls", "frames"),
    [
        (
            SignalWireDialect,
            SignalWireStreamEncoder,
            [
                {"event": "media", "media": {"payload": "PAYLOAD"}, "streamSid": "S"},
                {"event": "mark", "mark": {"name": "m"}, "streamSid": "S"},
                {"event": "clear", "streamSid": "S"},
            ],
        ),
        (
            TelnyxDialect,
            TelnyxStreamEncoder,
            [
                {"event": "media", "media": {"payload": "PAYLOAD"}},
                {"event": "mark", "mark": {"name": "m"}},
                {"event": "clear"},
            ],
        ),
        (
            PlivoDialect,
            PlivoStreamEncoder,
            [
                {
                    "event": "playAudio",
                    "media": {
                        "contentType": "audio/x-l16",
                        "sampleRate": 8000,
                        "payload": "PAYLOAD",
                    },
                    "streamId": "S",
                },
                {"event": "checkpoint", "name": "m", "streamId": "S"},
                {"event": "clearAudio", "streamId": "S"},
            ],
        ),
        (
            ExotelDialect,
            ExotelStreamEncoder,
            [
                {"event": "media", "media": {"payload": "PAYLOAD"}, "stream_sid": "S"},
                {"event": "mark", "mark": {"name": "m"}, "stream_sid": "S"},
                {"event": "clear", "stream_sid": "S"},
            ],
        ),
    ],
)
def test_back_channel_frames(
    cls: type[TwilioStyleDialect], enc_cls: type[TwilioStreamEncoder], frames: list[Any]
) -> None:
    dialect = started_dialect(cls, enc_cls(stream_sid="S"))
    assert {"play", "mark", "clear", "disconnect"} <= dialect.capabilities
    tone = RAMP * 5  # 200 ms at 8 kHz
    dialect.send(PlayAudio(tone, 8000))
    dialect.send(SendMark("m"))
    dialect.send(ClearAudio())
    out = [json.loads(f) for f in dialect.data_to_send()]
    payload = base64.b64decode(out[0]["media"]["payload"])
    out[0]["media"]["payload"] = "PAYLOAD"
    assert out == frames
    if cls is SignalWireDialect:  # L16 16 kHz stream: audio goes out at the stream's rate
        assert payload == resample(tone, 8000, 16000)
    elif cls is TelnyxDialect:
        assert payload == pcm16_to_ulaw(tone)
    else:
        assert payload[: len(tone)] == tone
    with pytest.raises(UnsupportedRequest):
        dialect.send(SendEvent({"type": "final"}))
    assert dialect.close_to_send() is None
    dialect.send(Disconnect("transfer"))
    assert dialect.close_to_send() == (1000, "transfer")
    dialect.send(SendMark("late"))  # after hanging up: dropped, not an error
    assert dialect.data_to_send() == []


def test_exotel_pads_outbound_audio_to_whole_granules() -> None:
    dialect = started_dialect(ExotelDialect, ExotelStreamEncoder())
    dialect.send(PlayAudio(b"\x01\x00" * 10, 8000))  # 20 bytes
    dialect.send(PlayAudio(b"\x01\x00" * 1700, 8000))  # 3400 bytes
    sizes = [
        len(base64.b64decode(json.loads(f)["media"]["payload"])) for f in dialect.data_to_send()
    ]
    assert sizes == [1600, 3520]  # at least 100 ms, a multiple of 320 bytes


def test_back_channel_needs_a_started_stream() -> None:
    dialect = TelnyxDialect()
    dialect.send(SendMark("early"))
    assert dialect.data_to_send() == []
    with pytest.raises(UnsupportedRequest):
        started_dialect(TelnyxDialect, TelnyxStreamEncoder()).send(SendMark(""))


def test_close_queues_nothing_and_keeps_the_callers_code() -> None:
    dialect = started_dialect(TwilioDialect, TwilioStreamEncoder())
    dialect.close("bridge shutting down")
    assert dialect.data_to_send() == [] and dialect.close_to_send() is None
    assert dialect.receive_eof() == []


# ---- formats ----------------------------------------------------------------------------------


def telnyx_start(encoding: str, rate: Any = 8000, channels: Any = 1) -> str:
    enc = TelnyxStreamEncoder(stream_sid="S")
    text = edit(enc.start(), ["start", "media_format", "encoding"], encoding)
    text = edit(text, ["start", "media_format", "sample_rate"], rate)
    return edit(text, ["start", "media_format", "channels"], channels)


def media(enc: TwilioStreamEncoder, payload: bytes, **edits: Any) -> str:
    text = enc.media(payload)
    for key, value in edits.items():
        text = edit(text, ["media", key], value)
    return text


def test_telnyx_pcma_and_big_endian_l16() -> None:
    dialect = TelnyxDialect()
    (started,) = dialect.receive_text(telnyx_start("PCMA"))
    assert isinstance(started, CallStarted)
    assert started.media_format == MediaFormat("pcma", 8000, 1)
    enc = TelnyxStreamEncoder(stream_sid="S")
    (audio,) = dialect.receive_text(media(enc, pcm16_to_alaw(RAMP)))
    assert isinstance(audio, Audio) and len(audio.pcm) == len(RAMP)
    dialect = TelnyxDialect()
    (started,) = dialect.receive_text(telnyx_start("L16", "16000"))
    assert isinstance(started, CallStarted)
    assert started.sample_rate == 16000
    big = bytes(b for pair in zip(RAMP[1::2], RAMP[0::2], strict=True) for b in pair)
    (audio,) = dialect.receive_text(media(enc, big))
    assert isinstance(audio, Audio) and audio.pcm == RAMP
    little = TelnyxDialect(l16_big_endian=False)
    little.receive_text(telnyx_start("L16", 16000))
    (audio,) = little.receive_text(media(enc, RAMP))
    assert isinstance(audio, Audio) and audio.pcm == RAMP


@pytest.mark.parametrize(
    ("encoding", "rate", "channels", "code"),
    [
        ("G722", 8000, 1, 1003),
        ("OPUS", 48000, 1, 1003),
        ("PCMU", 16000, 1, 1003),
        ("PCMU", 8000, 2, 1003),
        ("PCMU", "8k", 1, 1007),
        (5, 8000, 1, 1007),
        ("L16", True, 1, 1007),
    ],
)
def test_telnyx_unsupported_formats(encoding: Any, rate: Any, channels: Any, code: int) -> None:
    with pytest.raises(DialectError) as info:
        TelnyxDialect().receive_text(telnyx_start(encoding, rate, channels))
    assert info.value.close_code == code


def test_signalwire_24k_is_resampled_to_16k_and_wrapped_frames_unwrap() -> None:
    enc = SignalWireStreamEncoder(stream_sid="S", sample_rate=24000)
    dialect = SignalWireDialect()
    wrapped = json.dumps(
        {
            "timestamp": 1,
            "direction": "inbound",
            "eventType": "start",
            "rawEvent": json.loads(enc.start()),
        }
    )
    (started,) = dialect.receive_text(wrapped)
    assert isinstance(started, CallStarted)
    assert started.media_format == MediaFormat("l16", 24000, 1) and started.sample_rate == 16000
    pcm24 = resample(RAMP, 8000, 24000)
    (audio,) = dialect.receive_text(enc.audio(pcm24, "inbound")[0])  # type: ignore[arg-type]
    assert isinstance(audio, Audio) and audio.pcm == resample(pcm24, 24000, 16000)
    (dtmf,) = dialect.receive_text(enc.dtmf("#"))
    assert dtmf == Dtmf("caller", "#", 100)
    assert dialect.receive_text('{"event":"clear","streamSid":"S"}') == []
    assert dialect.counters.acknowledgements == 1
    with pytest.raises(DialectError):
        dialect.receive_text('{"rawEvent": 5}')


def test_odd_l16_payload_is_invalid() -> None:
    enc = ExotelStreamEncoder(stream_sid="S")
    dialect = started_dialect(ExotelDialect, enc)
    with pytest.raises(DialectError) as info:
        dialect.receive_text(media(enc, b"\x00\x01\x02"))
    assert info.value.close_code == 1007 and SECRET not in info.value.reason


def test_telnyx_tracks_come_from_options_and_others_are_dropped() -> None:
    enc = TelnyxStreamEncoder(stream_sid="S", tracks=("inbound", "outbound"))
    dialect = TelnyxDialect()
    feed(dialect, enc.opening())
    assert dialect.receive_text(enc.media(b"\xff" * 160, track="outbound")) == []
    assert dialect.counters.untracked_media == 1
    both = TelnyxDialect(tracks=("inbound", "outbound"))
    (started,) = both.receive_text(enc.start())
    assert isinstance(started, CallStarted)
    assert [c.name for c in started.channels] == ["caller", "agent"]
    (audio,) = both.receive_text(enc.media(b"\xff" * 160, track="outbound"))
    assert isinstance(audio, Audio) and audio.channel == "agent"
    (mismatch,) = [edit(enc.media(b"\xff" * 160), ["stream_id"], "OTHER")]
    with pytest.raises(DialectError) as info:
        both.receive_text(mismatch)
    assert info.value.close_code == 1002


def test_plivo_extra_headers_and_epoch_timestamps() -> None:
    assert parse_extra_headers("a=1,b = two;c=3,junk") == {"a": "1", "b": "two", "c": "3"}
    assert parse_extra_headers({"x": 1}) == {"x": "1"}
    assert parse_extra_headers("") == {} and parse_extra_headers(None) == {}
    enc = PlivoStreamEncoder(stream_sid="S")
    dialect = PlivoDialect(fill_timestamp_gaps=True)
    feed(dialect, enc.opening())
    (first,) = dialect.receive_text(enc.audio(RAMP, "inbound")[0])  # type: ignore[arg-type]
    assert isinstance(first, Audio) and first.timestamp_ms is None  # Unix ms: not call time
    enc.skip(500)
    gap, audio = dialect.receive_text(enc.audio(RAMP, "inbound")[0])  # type: ignore[arg-type]
    assert gap == MediaGap("caller", 500) and isinstance(audio, Audio)
    assert dialect.receive_text('{"event":"clearedAudio","streamId":"S"}') == []
    with pytest.raises(DialectError):
        dialect.receive_text('{"event":"playedStream","streamId":"S"}')  # no name


def test_timestamp_jumps_are_gaps_only_when_asked() -> None:
    enc = TwilioStreamEncoder(stream_sid="S")
    quiet = TwilioDialect()
    filling = TwilioDialect(fill_timestamp_gaps=True)
    opening = enc.opening()
    feed(quiet, opening)
    feed(filling, opening)
    one = enc.media(b"\xff" * 160)
    enc.skip(1000)
    two = enc.media(b"\xff" * 160)
    assert [type(e) for e in feed(quiet, [one, two])] == [Audio, Audio]
    events = feed(filling, [one, two])
    assert events[1] == MediaGap("caller", 1000)
    assert quiet.counters.timestamp_gap_ms == filling.counters.timestamp_gap_ms == 1000


@pytest.mark.parametrize(
    ("cls", "text", "code"),
    [
        (ExotelDialect, '{"event":"start","start":{"call_sid":"c"}}', 1007),
        (ExotelDialect, '{"event":"start","stream_sid":"a","start":{"stream_sid":"b"}}', 1002),
        (PlivoDialect, '{"event":"start","streamId":"a","start":{"streamId":"b"}}', 1002),
        (TelnyxDialect, '{"event":"start","start":{"call_control_id":"c"}}', 1007),
        (TelnyxDialect, '{"event":"media","media":{}}', 1002),
        (PlivoDialect, '{"event":"playedStream","name":"m"}', 1002),
    ],
)
def test_bad_family_messages(cls: type[TwilioStyleDialect], text: str, code: int) -> None:
    with pytest.raises(DialectError) as info:
        cls().receive_text(text)
    assert info.value.close_code == code


def test_exotel_stop_must_name_the_call() -> None:
    enc = ExotelStreamEncoder(stream_sid="S", call_sid="C")
    dialect = started_dialect(ExotelDialect, enc)
    with pytest.raises(DialectError) as info:
        dialect.receive_text(edit(enc.stop(), ["stop", "call_sid"], "OTHER"))
    assert info.value.close_code == 1002
    assert dialect.receive_text(enc.stop()) == [CallEnded("stop")]


def test_outbound_audio_in_the_streams_own_codec() -> None:
    alaw = TelnyxDialect()
    alaw.receive_text(telnyx_start("PCMA"))
    alaw.send(PlayAudio(RAMP, 8000))
    (frame,) = alaw.data_to_send()
    assert base64.b64decode(json.loads(frame)["media"]["payload"]) == pcm16_to_alaw(RAMP)
    big = TelnyxDialect()
    big.receive_text(telnyx_start("L16", 16000))
    big.send(PlayAudio(RAMP, 16000))
    (frame,) = big.data_to_send()
    payload = base64.b64decode(json.loads(frame)["media"]["payload"])
    assert payload[0::2] == RAMP[1::2] and payload[1::2] == RAMP[0::2]
    silent = started_dialect(TwilioDialect, TwilioStreamEncoder())
    silent.send(PlayAudio(b"", 8000))  # nothing to play: nothing sent
    assert silent.data_to_send() == []


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"fill_timestamp_gaps": "yes"}, "dialects.telnyx.options.fill_timestamp_gaps"),
        ({"tracks": 5}, "dialects.telnyx.options.tracks"),
        ({"tracks": []}, "dialects.telnyx.options.tracks"),
        ({"l16_byte_order": "middle"}, "dialects.telnyx.options.l16_byte_order"),
    ],
)
def test_bad_options_fail_at_start_up(options: dict[str, Any], key: str) -> None:
    from ivr_bridge.dialects.base import DialectSettings
    from ivr_bridge.dialects.registry import build_routes
    from ivr_bridge.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        build_routes({"telnyx": DialectSettings(options=options)})
    assert info.value.key == key


def test_a_single_track_name_is_accepted_as_the_tracks_option() -> None:
    from ivr_bridge.dialects.base import DialectSettings, UpgradeRequest
    from ivr_bridge.dialects.telnyx import make_factory

    factory = make_factory(DialectSettings(options={"tracks": "outbound"}))
    dialect = factory.open(UpgradeRequest(path="/telnyx"))
    (started,) = dialect.receive_text(telnyx_start("PCMU"))
    assert isinstance(started, CallStarted)
    assert [c.name for c in started.channels] == ["agent"]


def test_twilio_account_allow_list() -> None:
    from ivr_bridge.dialects.base import DialectSettings, UpgradeRequest
    from ivr_bridge.dialects.registry import build_routes
    from ivr_bridge.dialects.twilio import make_factory
    from ivr_bridge.errors import ConfigError

    factory = make_factory(DialectSettings(options={"account_sids": ["AC1"]}))
    ours = factory.open(UpgradeRequest(path="/twilio"))
    assert isinstance(ours.receive_text(TwilioStreamEncoder(account_sid="AC1").start())[0],
                      CallStarted)  # fmt: skip
    theirs = factory.open(UpgradeRequest(path="/twilio"))
    with pytest.raises(DialectError) as info:
        theirs.receive_text(TwilioStreamEncoder(account_sid="AC2").start())
    assert (info.value.close_code, info.value.reason) == (1008, "accountSid not allowed")
    with pytest.raises(ConfigError):
        build_routes({"twilio": DialectSettings(options={"account_sids": "AC1"})})
