"""grpc_transport's side of the h2 transport: protobuf messages on an H2Call (H2StreamCall),
the errors either transport raises (CALL_ERRORS, mapped), and SpeechKitClient's choice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import h2.errors
import h2.events
import pytest

from ivr_bridge._proto import stt_v3_pb2 as pb
from ivr_bridge.errors import RecognitionError, RecognitionUnavailable
from ivr_bridge.recognition.grpc_transport import (
    CALL_ERRORS,
    H2StreamCall,
    SpeechKitClient,
    mapped,
)
from ivr_bridge.recognition.h2_channel import H2Channel
from ivr_bridge.recognition.h2_grpc import RpcError
from tests.recognition.h2.peer import Peer, ScriptedServer, framed

PATH = "/speechkit.stt.v3.Recognizer/RecognizeStreaming"
BOUND_S = 10.0


@pytest.fixture
async def wired() -> AsyncIterator[tuple[H2StreamCall, Peer, int]]:
    """An H2StreamCall for v3 responses, and the scripted server's side of it."""
    server = ScriptedServer()
    await server.start()
    channel = H2Channel(server.address, tls=False)
    call = H2StreamCall(await channel.open_call(PATH, []), pb.StreamingResponse.FromString)
    peer = await asyncio.wait_for(server.peer(), BOUND_S)
    request = await asyncio.wait_for(peer.request(), BOUND_S)
    peer.respond(request.stream_id)
    try:
        yield call, peer, request.stream_id
    finally:
        await channel.close()
        await server.close()


async def test_messages_are_protobuf_both_ways_and_the_end_is_eof(
    wired: tuple[H2StreamCall, Peer, int],
) -> None:
    call, peer, sid = wired
    request = pb.StreamingRequest(chunk=pb.AudioChunk(data=b"\x01\x02"))
    await call.write(request)
    await call.done_writing()
    await asyncio.wait_for(peer.next(h2.events.StreamEnded, sid), BOUND_S)
    assert bytes(peer.received[sid]) == framed(request.SerializeToString())
    response = pb.StreamingResponse(status_code=pb.StatusCode(message="ok"))
    peer.message(sid, response.SerializeToString())
    peer.message(sid, response.SerializeToString())
    peer.trailers(sid)
    assert await asyncio.wait_for(call.read(), BOUND_S) == response
    assert [r async for r in call] == [response]
    assert await call.read() is grpc.aio.EOF


async def test_a_response_that_does_not_parse_is_internal_and_cancels(
    wired: tuple[H2StreamCall, Peer, int],
) -> None:
    call, peer, sid = wired
    peer.message(sid, b"\xff\xff\xff\xff")  # not a StreamingResponse
    with pytest.raises(RpcError) as raised:
        await asyncio.wait_for(call.read(), BOUND_S)
    assert raised.value.status == "INTERNAL"
    reset = await asyncio.wait_for(peer.next(h2.events.StreamReset, sid), BOUND_S)
    assert reset.error_code == h2.errors.ErrorCodes.CANCEL


def test_errors_of_either_transport_map_the_same_way() -> None:
    assert RpcError in CALL_ERRORS and grpc.aio.AioRpcError in CALL_ERRORS
    h2_error = mapped(RpcError("UNAVAILABLE", "connection lost"))
    aio_error = mapped(
        grpc.aio.AioRpcError(
            grpc.StatusCode.UNAVAILABLE,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details="connection lost",
        )
    )
    assert type(h2_error) is type(aio_error) is RecognitionUnavailable
    assert str(h2_error) == str(aio_error)
    assert isinstance(mapped(RpcError("INVALID_ARGUMENT")), RecognitionError)


async def test_the_client_takes_a_known_transport_only() -> None:
    with pytest.raises(ValueError, match="transport"):
        SpeechKitClient("127.0.0.1:1", tls=False, transport="bogus")
    client = SpeechKitClient("127.0.0.1:1", tls=False, transport="h2")
    assert client.transport == "h2"
    await client.close()
