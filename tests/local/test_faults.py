"""Fault injection in the embedded recognizer: each kind observed from a real client."""

from __future__ import annotations

import asyncio

import pytest

import ivr_bridge.local.tone_engine  # noqa: F401
from ivr_bridge.errors import RecognitionError
from ivr_bridge.local.faults import FaultPlan
from ivr_bridge.local.server import EmbeddedServerConfig, EmbeddedSpeechKitServer
from ivr_bridge.local.tones import synthesize_script
from ivr_bridge.model import FinalResult, StatusReport
from ivr_bridge.recognition.base import SessionConfig
from ivr_bridge.recognition.speechkit_v3 import SpeechKitV3Recognizer

AUDIO = synthesize_script([["hello", "agent"], ["yes", "no"]], pause_ms=1000)


async def run_session(rec: EmbeddedSpeechKitServer, chunks: int = 40) -> list[object]:
    client = SpeechKitV3Recognizer(rec.address, tls=False)
    stream = await client.open_stream(SessionConfig(sample_rate=8000), request_id="t")
    got: list[object] = []

    async def read() -> None:
        try:
            async for update in stream.updates():
                got.append(update)
        except RecognitionError as exc:
            got.append(exc)

    reader = asyncio.create_task(read())
    try:
        for i in range(0, min(len(AUDIO), chunks * 1600), 1600):
            await stream.send_audio(AUDIO[i : i + 1600])
        await stream.finish()
    except RecognitionError:
        pass
    await asyncio.wait_for(reader, 10)
    await client.close()
    return got


async def start(**kw: object) -> EmbeddedSpeechKitServer:
    rec = EmbeddedSpeechKitServer(EmbeddedServerConfig(engine="tones", **kw))  # type: ignore[arg-type]
    await rec.start()
    return rec


async def test_end_after_ms_with_status() -> None:
    rec = await start(faults=FaultPlan(end_after_ms=1000, end_status="INTERNAL"))
    got = await run_session(rec)
    await rec.stop()
    assert isinstance(got[-1], RecognitionError) and got[-1].status == "INTERNAL"
    assert rec.stats.ended == {"INTERNAL": 1}


async def test_stall_answers_nothing_after_the_mark() -> None:
    rec = await start(faults=FaultPlan(stall_after_ms=500))
    got = await run_session(rec)
    await rec.stop()
    assert not any(isinstance(u, FinalResult) for u in got)


async def test_plan_for_one_session_only() -> None:
    rec = await start(faults=FaultPlan(end_after_ms=100, sessions=frozenset({1})))
    first = await run_session(rec)
    second = await run_session(rec)
    await rec.stop()
    assert isinstance(first[-1], RecognitionError)
    assert [u.hypothesis.text for u in second if isinstance(u, FinalResult)] == [
        "hello agent",
        "yes no",
    ]


async def test_outage_ends_live_sessions_and_refuses_new_ones() -> None:
    rec = await start()
    client = SpeechKitV3Recognizer(rec.address, tls=False)
    stream = await client.open_stream(SessionConfig(sample_rate=8000), request_id="t")
    await stream.send_audio(AUDIO[:1600])
    rec.outage(0.5)
    with pytest.raises(RecognitionError) as info:
        async for _ in stream.updates():
            pass
    assert info.value.status == "UNAVAILABLE"
    refused = await client.open_stream(SessionConfig(sample_rate=8000), request_id="u")
    with pytest.raises(RecognitionError):
        async for _ in refused.updates():
            pass
    await asyncio.sleep(0.6)
    got = await run_session(rec)
    await client.close()
    await rec.stop()
    assert any(isinstance(u, FinalResult) for u in got)
    assert rec.faults.refused >= 1


async def test_metadata_faults_only_when_allowed() -> None:
    import grpc

    from ivr_bridge._proto import stt_v3_pb2 as pb
    from ivr_bridge._proto import stt_v3_service_pb2_grpc as pb_grpc
    from ivr_bridge.recognition.speechkit_v3 import session_options

    async def call(rec: EmbeddedSpeechKitServer) -> grpc.StatusCode:
        async with grpc.aio.insecure_channel(rec.address) as channel:
            stub = pb_grpc.RecognizerStub(channel)  # type: ignore[no-untyped-call]
            rpc = stub.RecognizeStreaming(
                metadata=[("x-fault-end-after-ms", "100"), ("x-fault-status", "resource_exhausted")]
            )
            await rpc.write(session_options(SessionConfig(sample_rate=8000)))
            await rpc.write(pb.StreamingRequest(chunk=pb.AudioChunk(data=AUDIO[:3200])))
            await rpc.done_writing()
            try:
                async for _ in rpc:
                    pass
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return await rpc.code()

    allowed = await start(allow_fault_metadata=True)
    assert await call(allowed) == grpc.StatusCode.RESOURCE_EXHAUSTED
    await allowed.stop()
    ignored = await start()
    assert await call(ignored) == grpc.StatusCode.OK
    await ignored.stop()


async def test_slow_answers() -> None:
    rec = await start(faults=FaultPlan(delay_ms=50))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    got = await run_session(rec)
    await rec.stop()
    assert any(isinstance(u, FinalResult) for u in got)
    assert loop.time() - t0 >= 0.05 * sum(1 for u in got if not isinstance(u, StatusReport))


def test_plan_validation() -> None:
    with pytest.raises(ValueError):
        FaultPlan(end_status="TEAPOT")
    with pytest.raises(ValueError):
        FaultPlan(delay_ms=-1)
    assert FaultPlan.from_metadata({"authorization": "x"}) is None
