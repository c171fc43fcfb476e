"""AudioSocket: packet framing across any TCP cut, the dialect's table, rates, replay, fuzz."""

from __future__ import annotations

import math
import os
import uuid
from array import array
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr_bridge.dialects.audiosocket import (
    AUDIO_RATES,
    KIND_HANGUP,
    AudioSocketDialect,
    Frame,
    FrameParser,
    encode_frame,
)
from ivr_bridge.dialects.audiosocket_client import AudioSocketClient
from ivr_bridge.dialects.base import (
    ClearAudio,
    Disconnect,
    PlayAudio,
    SendEvent,
    SendMark,
    UnsupportedRequest,
)
from ivr_bridge.errors import DialectError
from ivr_bridge.model import Audio, CallEnded, CallStarted, ChannelInfo, Dtmf, MediaFormat

DATA = Path(__file__).resolve().parents[1] / "data"
UUID = "0b7e2c4a-9d3f-4e21-8a6b-5c1d2e3f4a5b"
INVALID, PROTOCOL, UNSUPPORTED = 1007, 1002, 1003


def tone(ms: int, rate: int) -> bytes:
    return array(
        "h", (int(8000 * math.sin(2 * math.pi * 700 * i / rate)) for i in range(rate * ms // 1000))
    ).tobytes()


def feed_all(dialect: AudioSocketDialect, chunks: list[bytes]) -> list[Any]:
    return [e for c in chunks for e in dialect.receive_bytes(c)]


def error_of(fn: Any, *args: Any) -> DialectError:
    with pytest.raises(DialectError) as info:
        fn(*args)
    return info.value


# ---- framing -------------------------------------------------------------------------------


def test_encode_and_parse_round_trip_at_every_cut() -> None:
    stream = encode_frame(1, b"u" * 16) + encode_frame(0x10, b"\x01\x02" * 160) + encode_frame(0)
    for cut in range(len(stream) + 1):
        parser = FrameParser()
        frames = [*parser.feed(stream[:cut]), *parser.feed(stream[cut:])]
        assert frames == [Frame(1, b"u" * 16), Frame(0x10, b"\x01\x02" * 160), Frame(0, b"")]
        assert parser.pending == 0
    assert encode_frame(0x10, b"\x00\x00")[:3] == b"\x10\x00\x02"  # big-endian length
    with pytest.raises(ValueError):
        encode_frame(0x10, bytes(70000))
    with pytest.raises(ValueError):
        encode_frame(256)


# ---- the dialect -----------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "expected_rate"), [(8000, 8000), (16000, 16000), (48000, 16000)])
def test_call_start_audio_and_rates(rate: int, expected_rate: int) -> None:
    client = AudioSocketClient(call_uuid=UUID, sample_rate=rate)
    dialect = AudioSocketDialect(remote_address="10.0.0.5")
    assert feed_all(dialect, client.start_frames()) == []
    assert dialect.call_uuid == UUID
    pcm = tone(100, rate)
    events = feed_all(dialect, client.audio_frames(pcm, rate))
    assert events[0] == CallStarted(
        dialect="audiosocket",
        platform_call_id=UUID,
        stream_id=UUID,
        channels=(ChannelInfo("caller", "in"),),
        media_format=MediaFormat("l16", rate, 1),
        sample_rate=expected_rate,
        metadata={"uuid": UUID, "wire_sample_rate": str(rate), "remote_address": "10.0.0.5"},
    )
    audio = b"".join(e.pcm for e in events if isinstance(e, Audio))
    if rate == expected_rate:
        assert audio == pcm
    else:
        assert abs(len(audio) - 2 * expected_rate // 10) <= 4  # 100 ms after resampling
    assert dialect.receive_bytes(client.hangup()) == [CallEnded("hangup")]


TABLE: list[tuple[bytes, list[Any] | int]] = [
    (encode_frame(0x03, b"5"), [Dtmf("caller", "5")]),
    (encode_frame(0x03, b"a"), [Dtmf("caller", "A")]),
    (encode_frame(0x03, b"x"), INVALID),
    (encode_frame(0x03, b"12"), INVALID),
    (encode_frame(0x10, b"\x00\x00\x00"), INVALID),
    (encode_frame(0x10, b""), []),
    (encode_frame(0x12, b"\x00\x00"), PROTOCOL),  # the rate changed
    (encode_frame(0x01, b"u" * 16), PROTOCOL),
    (encode_frame(0x42, b"future"), []),
    (encode_frame(0x00), [CallEnded("hangup")]),
    (encode_frame(0xFF, b"\x01"), [CallEnded("hangup")]),
    (encode_frame(0xFF, b"\x02"), [CallEnded("pbx_error")]),
    (encode_frame(0xFF), [CallEnded("pbx_error")]),
    (encode_frame(0x00) + encode_frame(0x10, b"\x00\x00"), [CallEnded("hangup")]),
    (encode_frame(0x10, b"\x00"), INVALID),  # even a truncated-looking odd payload
]


def in_call() -> AudioSocketDialect:
    client = AudioSocketClient(call_uuid=UUID)
    dialect = AudioSocketDialect()
    feed_all(dialect, [*client.start_frames(), *client.audio_frames(tone(20, 8000), 8000)])
    return dialect


@pytest.mark.parametrize(("data", "expected"), TABLE)
def test_packet_table(data: bytes, expected: list[Any] | int) -> None:
    dialect = in_call()
    if isinstance(expected, int):
        assert error_of(dialect.receive_bytes, data).close_code == expected
    else:
        assert dialect.receive_bytes(data) == expected


def test_order_rules_and_eof() -> None:
    assert error_of(AudioSocketDialect().receive_bytes, encode_frame(0x10, b"\0\0")).close_code == (
        PROTOCOL
    )
    assert error_of(AudioSocketDialect().receive_bytes, encode_frame(1, b"short")).close_code == (
        INVALID
    )
    assert error_of(AudioSocketDialect().receive_text, "hello").close_code == UNSUPPORTED
    dialect = AudioSocketDialect()
    dialect.receive_bytes(encode_frame(1, uuid.UUID(UUID).bytes) + b"\x10\x01")  # cut mid-header
    assert dialect.receive_eof() == [CallEnded("hangup")]
    assert dialect.counters.truncated_at_eof == 1
    assert dialect.receive_eof() == []
    ended = in_call()
    assert ended.receive_bytes(encode_frame(0) + encode_frame(0xFF, b"\x01")) == [
        CallEnded("hangup")
    ]
    assert ended.counters.after_hangup == 1


def test_dtmf_before_audio_waits_for_the_start() -> None:
    client = AudioSocketClient(call_uuid=UUID, sample_rate=16000)
    dialect = AudioSocketDialect()
    feed_all(dialect, client.start_frames())
    assert dialect.receive_bytes(client.dtmf("1") + client.dtmf("2")) == []
    for _ in range(20):
        dialect.receive_bytes(client.dtmf("3"))
    events = feed_all(dialect, client.audio_frames(tone(20, 16000), 16000))
    assert isinstance(events[0], CallStarted) and events[0].sample_rate == 16000
    digits = [e.digit for e in events if isinstance(e, Dtmf)]
    assert digits[:2] == ["1", "2"] and len(digits) == 16
    assert dialect.counters.dtmf_dropped == 6


def test_back_channel_packets_and_goodbye() -> None:
    dialect = in_call()
    dialect.send(PlayAudio(tone(50, 16000), 16000))  # 8 kHz on the wire: 3 packets, padded
    out = dialect.data_to_send()
    assert [p[:3] for p in out] == [b"\x10\x01\x40"] * 3
    for request in (SendMark("m"), ClearAudio(), SendEvent({})):
        with pytest.raises(UnsupportedRequest):
            dialect.send(request)
    dialect.send(Disconnect("completed"))
    assert dialect.data_to_send() == [encode_frame(KIND_HANGUP)]
    assert dialect.close_to_send() == (1000, "completed")
    dialect.close("shutdown")  # idempotent: one hangup
    dialect.send(PlayAudio(tone(20, 8000), 8000))
    assert dialect.data_to_send() == []
    assert dialect.capabilities == frozenset({"play", "disconnect"})


def test_close_before_start_still_says_goodbye() -> None:
    dialect = AudioSocketDialect()
    dialect.send(PlayAudio(tone(20, 8000), 8000))
    assert dialect.data_to_send() == []
    dialect.close("shutdown")
    assert dialect.data_to_send() == [encode_frame(KIND_HANGUP)]
    assert dialect.close_to_send() == (1000, "shutdown")


def test_recorded_session_replays_in_odd_chunks() -> None:
    stream = (DATA / "audiosocket_session.bin").read_bytes()
    dialect = AudioSocketDialect()
    events = feed_all(dialect, [stream[i : i + 997] for i in range(0, len(stream), 997)])
    assert isinstance(events[0], CallStarted)
    assert events[0].platform_call_id == "5f3a0c1e-7b2d-4c9e-8f10-a2b3c4d5e6f7"
    audio = [e for e in events if isinstance(e, Audio)]
    assert len(audio) == 50 and sum(len(a.pcm) for a in audio) == 50 * 320
    assert [e.digit for e in events if isinstance(e, Dtmf)] == ["9", "#"]
    assert events[-1] == CallEnded("hangup")
    assert dialect.counters.audio_frames == 50


# ---- fuzz ----------------------------------------------------------------------------------

# FUZZ_EXAMPLES=20000 for a long run off CI.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
packets = st.builds(
    encode_frame,
    st.sampled_from([0x00, 0x01, 0x03, 0x10, 0x12, 0x16, 0x42, 0xFF]),
    st.binary(max_size=40),
)


@FUZZ
@given(st.lists(st.one_of(packets, st.binary(max_size=50)), max_size=15), st.booleans())
def test_fuzz_only_events_or_dialect_error(chunks: list[bytes], start: bool) -> None:
    dialect = in_call() if start else AudioSocketDialect()
    for chunk in chunks:
        try:
            dialect.receive_bytes(chunk)
        except DialectError as err:
            assert err.close_code in (INVALID, PROTOCOL)
            return
        dialect.send(PlayAudio(b"\x01\x00" * 30, 8000))
        assert all(p[0] in AUDIO_RATES for p in dialect.data_to_send())
    dialect.receive_eof()


def test_encoder_shape_frames() -> None:
    client = AudioSocketClient(call_uuid=UUID, sample_rate=16000)
    dialect = AudioSocketDialect()
    events = feed_all(dialect, client.opening())
    packet, size = client.audio(tone(20, 16000), "inbound")
    client.skip(40)
    events += dialect.receive_bytes(packet)
    events += feed_all(dialect, client.digit("7"))
    assert size == 640 and isinstance(events[0], CallStarted)
    assert events[0].platform_call_id == client.call_id == client.stream_id
    assert events[-1] == Dtmf("caller", "7")
    assert client.on_server_frame(packet) == []
    assert feed_all(dialect, client.closing()) == [CallEnded("hangup")]
    with pytest.raises(ValueError):
        AudioSocketClient(tracks=("inbound", "outbound"))
