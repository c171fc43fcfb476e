"""The hand-framed audio requests are exactly what protobuf serializes, at every length."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_bridge._proto import stt_v2_pb2 as pb2
from ivr_bridge._proto import stt_v3_pb2 as pb3
from ivr_bridge.clock import SYSTEM_CLOCK
from ivr_bridge.recognition import pbwire
from ivr_bridge.recognition.speechkit_v2 import SpeechKitV2Stream
from ivr_bridge.recognition.speechkit_v3 import SpeechKitV3Stream

# Varint width changes at 2**7, 2**14, 2**21; the framing's own bytes can push the outer
# length over one of them while the inner length stays under.
EDGES = [0, 1, 2, 125, 126, 127, 128, 129, 3200, 16377, 16380, 16383, 16384, 16385, 2**21 + 5]


def v3_request(pcm: bytes) -> bytes:
    return bytes(pb3.StreamingRequest(chunk=pb3.AudioChunk(data=pcm)).SerializeToString())


def v2_request(pcm: bytes) -> bytes:
    return bytes(pb2.StreamingRecognitionRequest(audio_content=pcm).SerializeToString())


class Capture:
    """A call whose synchronous write takes or refuses serialized messages."""

    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.sent: list[bytes] = []

    def try_write_serialized(self, message: bytes) -> bool:
        if self.accept:
            self.sent.append(message)
        return self.accept


@pytest.mark.parametrize("n", EDGES)
def test_framing_matches_protobuf_at_varint_edges(n: int) -> None:
    pcm = bytes(range(256)) * (n // 256) + bytes(n % 256)
    assert pbwire.nested_header(2, 1, n) + pcm == v3_request(pcm)
    assert pbwire.bytes_header(2, n) + pcm == v2_request(pcm)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40000))
def test_framing_matches_protobuf(pcm: bytes) -> None:
    assert pbwire.nested_header(2, 1, len(pcm)) + pcm == v3_request(pcm)
    assert pbwire.bytes_header(2, len(pcm)) + pcm == v2_request(pcm)
    # and protobuf reads it back
    assert pb3.StreamingRequest.FromString(pbwire.nested_header(2, 1, len(pcm)) + pcm) == (
        pb3.StreamingRequest(chunk=pb3.AudioChunk(data=pcm))
    )


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
     (16384, b"\x80\x80\x01"), (2**32, b"\x80\x80\x80\x80\x10")],
)  # fmt: skip
def test_varint(value: int, encoded: bytes) -> None:
    assert pbwire.varint(value) == encoded


def test_varint_refuses_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        pbwire.varint(-1)


@pytest.mark.parametrize("n", [0, 160, 3200, 16384])
def test_streams_write_protobufs_bytes(n: int) -> None:
    pcm = bytes((i * 7) & 0xFF for i in range(n))
    v3_call = Capture()
    assert SpeechKitV3Stream(v3_call).try_send_audio(pcm)
    assert v3_call.sent == [v3_request(pcm)]
    v2_call = Capture()
    v2 = SpeechKitV2Stream(v2_call, 8000, SYSTEM_CLOCK)
    assert v2.try_send_audio(pcm)
    assert v2_call.sent == [v2_request(pcm)]
    assert v2.cursors.received_ms == n // 16


def test_refused_or_missing_write_sends_nothing() -> None:
    call = Capture(accept=False)
    assert not SpeechKitV3Stream(call).try_send_audio(b"\x00\x01")
    assert call.sent == []
    v2 = SpeechKitV2Stream(call, 8000, SYSTEM_CLOCK)
    assert not v2.try_send_audio(b"\x00\x01" * 800)
    assert v2.cursors.received_ms == 0  # a refused write is not audio the server has
    no_sync: Any = object()  # grpc.aio's calls have no synchronous write
    assert not SpeechKitV3Stream(no_sync).try_send_audio(b"\x00\x01")
