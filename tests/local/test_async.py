"""The embedded recognizer's asynchronous APIs: shapes and errors of gRPC and REST answers."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge._proto import operation_pb2 as op_pb
from ivr_bridge._proto import operation_pb2_grpc as op_grpc
from ivr_bridge._proto import stt_v3_async_pb2 as apb
from ivr_bridge._proto import stt_v3_async_pb2_grpc as apb_grpc
from ivr_bridge._proto import stt_v3_pb2 as pb3
from ivr_bridge.local.async_jobs import AudioSpec
from ivr_bridge.local.rest import LocalRestServer
from ivr_bridge.local.server import EmbeddedServerConfig, EmbeddedSpeechKitServer
from ivr_bridge.local.services import jobs_of
from tests.ports import free_tcp_port
from tests.transcribe.audio_files import LEFT, pcm, stereo_wav

AUTH = (("authorization", "Api-Key k"),)


@pytest.fixture
async def env() -> AsyncIterator[tuple[EmbeddedSpeechKitServer, LocalRestServer]]:
    rec = EmbeddedSpeechKitServer(EmbeddedServerConfig(port=0, engine="tones", api_key="k"))
    await rec.start()
    rest = LocalRestServer(rec)
    await rest.start()
    try:
        yield rec, rest
    finally:
        await rest.stop()
        await rec.stop(grace=0.2)


def wav_request(data: bytes, normalize: bool = False) -> apb.RecognizeFileRequest:
    norm = pb3.TextNormalizationOptions(
        text_normalization=pb3.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED
        if normalize
        else pb3.TextNormalizationOptions.TEXT_NORMALIZATION_DISABLED
    )
    model = pb3.RecognitionModelOptions(
        audio_format=pb3.AudioFormatOptions(
            container_audio=pb3.ContainerAudio(container_audio_type=pb3.ContainerAudio.WAV)
        ),
        text_normalization=norm,
    )
    return apb.RecognizeFileRequest(content=data, recognition_model=model)


async def wait_done(ops: Any, op_id: str) -> op_pb.Operation:
    for _ in range(200):
        op: op_pb.Operation = await ops.Get(
            op_pb.GetOperationRequest(operation_id=op_id), metadata=AUTH
        )
        if op.done:
            return op
        await asyncio.sleep(0.02)
    raise AssertionError("operation never finished")


async def test_grpc_flow_results_per_channel(
    env: tuple[EmbeddedSpeechKitServer, LocalRestServer],
) -> None:
    rec, _ = env
    async with grpc.aio.insecure_channel(rec.address) as channel:
        stt: Any = apb_grpc.AsyncRecognizerStub(channel)  # type: ignore[no-untyped-call]
        ops: Any = op_grpc.OperationServiceStub(channel)  # type: ignore[no-untyped-call]
        op = await stt.RecognizeFile(wav_request(stereo_wav(), normalize=True), metadata=AUTH)
        assert op.description == "STT v3 async recognition" and op.id
        done = await wait_done(ops, op.id)
        assert done.WhichOneof("result") == "response"
        assert done.response.type_url == "type.googleapis.com/google.protobuf.Empty"
        # Decoded through the server's engine pool (never on the event loop), then released.
        assert rec.pool.lanes[0].calls > 0 and rec.pool.load() == [0]
        responses = [
            r
            async for r in stt.GetRecognition(
                apb.GetRecognitionRequest(operation_id=op.id), metadata=AUTH
            )
        ]
        kinds = [(r.channel_tag, r.WhichOneof("Event")) for r in responses]
        assert kinds[:3] == [("0", "final"), ("0", "final_refinement"), ("0", "eou_update")]
        assert {tag for tag, _ in kinds} == {"0", "1"}
        refined = [
            r.final_refinement.normalized_text.alternatives[0].text
            for r in responses
            if r.channel_tag == "0" and r.WhichOneof("Event") == "final_refinement"
        ]
        assert refined == ["alpha lima whiskey", "foxtrot quebec 1"]
        await stt.DeleteRecognition(apb.DeleteRecognitionRequest(operation_id=op.id), metadata=AUTH)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ops.Get(op_pb.GetOperationRequest(operation_id=op.id), metadata=AUTH)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_grpc_errors(env: tuple[EmbeddedSpeechKitServer, LocalRestServer]) -> None:
    rec, _ = env
    async with grpc.aio.insecure_channel(rec.address) as channel:
        stt: Any = apb_grpc.AsyncRecognizerStub(channel)  # type: ignore[no-untyped-call]

        async def code_of(coro: Any) -> tuple[grpc.StatusCode, str]:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await coro
            return err.value.code(), err.value.details() or ""

        no_format = apb.RecognizeFileRequest(content=b"x")
        assert await code_of(stt.RecognizeFile(no_format, metadata=AUTH)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "recognition_model.audio_format is required",
        )
        no_audio = wav_request(b"")
        no_audio.ClearField("content")
        code, details = await code_of(stt.RecognizeFile(no_audio, metadata=AUTH))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "content or uri" in details
        code, _ = await code_of(stt.RecognizeFile(wav_request(b"x")))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        # Results are not there before the operation is done: its file server never answers.
        hold = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await hold.wait()
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pending = wav_request(b"")
        pending.uri = f"http://127.0.0.1:{port}/bucket/a.wav"
        op = await stt.RecognizeFile(pending, metadata=AUTH)
        early = stt.GetRecognition(apb.GetRecognitionRequest(operation_id=op.id), metadata=AUTH)
        assert await code_of(early.read()) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            f"operation {op.id} is not done yet",
        )
        hold.set()
        server.close()
        await server.wait_closed()
        ops: Any = op_grpc.OperationServiceStub(channel)  # type: ignore[no-untyped-call]
        failed = await wait_done(ops, op.id)
        assert failed.error.code == 3 and "cannot fetch audio from uri" in failed.error.message
        later = stt.GetRecognition(apb.GetRecognitionRequest(operation_id=op.id), metadata=AUTH)
        assert (await code_of(later.read()))[0] == grpc.StatusCode.INVALID_ARGUMENT
        missing = stt.GetRecognition(apb.GetRecognitionRequest(operation_id=""), metadata=AUTH)
        assert (await code_of(missing.read()))[0] == grpc.StatusCode.INVALID_ARGUMENT


async def test_jobs_still_running_are_cancelled_when_the_server_stops() -> None:
    rec = EmbeddedSpeechKitServer(EmbeddedServerConfig(port=0, engine="tones"))
    await rec.start()
    connected = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # never answers; returns when the client goes away
        writer.close()

    files = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = files.sockets[0].getsockname()[1]
    try:
        jobs = jobs_of(rec)
        spec = AudioSpec("WAV")
        job = jobs.submit("v3", spec, uri=f"http://127.0.0.1:{port}/bucket/a.wav")
        await connected.wait()
        assert jobs.running == 1 and not job.done
        await rec.stop(grace=0.1)
        assert jobs.running == 0 and not job.done  # cancelled, not failed by a stopped engine
    finally:
        await rec.stop(grace=0.1)
        files.close()
        await files.wait_closed()


async def test_rest_v2_shapes(env: tuple[EmbeddedSpeechKitServer, LocalRestServer]) -> None:
    rec, rest = env
    # Serve the file over HTTP from the recognizer's own loop: a tiny one-shot file server.
    raw = pcm(LEFT).tobytes()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(raw) + raw)
        await writer.drain()
        writer.close()

    files = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = files.sockets[0].getsockname()[1]
    body = {
        "config": {
            "specification": {
                "languageCode": "en-US",
                "model": "general",
                "profanityFilter": False,
                "literature_text": False,
                "audioEncoding": "LINEAR16_PCM",
                "sampleRateHertz": 8000,
                "audioChannelCount": 1,
                "rawResults": True,
            }
        },
        "audio": {"uri": f"http://127.0.0.1:{port}/bucket/speech.raw"},
    }
    headers = {"authorization": "Api-Key k"}
    async with httpx.AsyncClient(base_url=rest.url, headers=headers) as http:
        resp = await http.post("/speech/stt/v2/longRunningRecognize", json=body)
        assert resp.status_code == 200
        op = resp.json()
        assert op["done"] is False and {"id", "createdAt", "createdBy", "modifiedAt"} <= set(op)
        for _ in range(200):
            op = (await http.get(f"/operations/{op['id']}")).json()
            if op["done"]:
                break
            await asyncio.sleep(0.02)
        response = op["response"]
        assert response["@type"] == (
            "type.googleapis.com/yandex.cloud.ai.stt.v2.LongRunningRecognitionResponse"
        )
        first = response["chunks"][0]
        assert first["channelTag"] == "1"
        assert first["alternatives"][0]["text"] == "alpha lima whiskey"
        word = first["alternatives"][0]["words"][0]
        assert word["word"] == "alpha" and word["startTime"].endswith("s")
        # Errors: status and the documented JSON error shape.
        bad = await http.post(
            "/speech/stt/v2/longRunningRecognize", json={"audio": {"content": "AAAA"}}
        )
        assert bad.status_code == 400 and bad.json()["code"] == 3
        assert "Object Storage only" in bad.json()["message"]
        junk = await http.post("/speech/stt/v2/longRunningRecognize", content=b"{not json")
        assert junk.status_code == 400
        rate = dict(
            body,
            config={"specification": {"audioEncoding": "LINEAR16_PCM", "sampleRateHertz": 22050}},
        )
        assert (
            await http.post("/speech/stt/v2/longRunningRecognize", json=rate)
        ).status_code == 400
        assert (await http.get("/operations/nope")).json()["code"] == 5
        assert (await http.get("/nowhere")).status_code == 404
        unauth = await http.get(f"/operations/{op['id']}", headers={"authorization": "Api-Key x"})
        assert unauth.status_code == 401 and unauth.json()["code"] == 16
    files.close()
    await files.wait_closed()


OFFICIAL = """
import json, sys
from yandex.cloud.operation import operation_pb2, operation_service_pb2
from yandex.cloud.ai.stt.v3 import stt_pb2, stt_service_pb2
def fields(d):
    return {f.name: [f.number, f.type] for f in d.fields}
out = {
  "Operation": fields(operation_pb2.Operation.DESCRIPTOR),
  "GetOperationRequest": fields(operation_service_pb2.GetOperationRequest.DESCRIPTOR),
  "RecognizeFileRequest": fields(stt_pb2.RecognizeFileRequest.DESCRIPTOR),
  "GetRecognitionRequest": fields(stt_service_pb2.GetRecognitionRequest.DESCRIPTOR),
  "DeleteRecognitionRequest": fields(stt_pb2.DeleteRecognitionRequest.DESCRIPTOR),
  "methods": [[m.full_name, m.input_type.full_name, m.output_type.full_name]
              for s in ("AsyncRecognizer",)
              for m in stt_service_pb2.DESCRIPTOR.services_by_name[s].methods],
  "ops": [[m.full_name, m.input_type.full_name] for m in
          operation_service_pb2.DESCRIPTOR.services_by_name["OperationService"].methods],
}
print(json.dumps(out))
"""


def test_async_and_operation_messages_match_the_official_stubs() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", OFFICIAL], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    official = json.loads(proc.stdout)

    def fields(d: Any) -> dict[str, list[int]]:
        return {f.name: [f.number, f.type] for f in d.fields}

    assert fields(op_pb.Operation.DESCRIPTOR) == official["Operation"]
    assert fields(op_pb.GetOperationRequest.DESCRIPTOR) == official["GetOperationRequest"]
    ours = fields(apb.RecognizeFileRequest.DESCRIPTOR)
    assert all(official["RecognizeFileRequest"][k] == v for k, v in ours.items())
    assert fields(apb.GetRecognitionRequest.DESCRIPTOR) == official["GetRecognitionRequest"]
    assert fields(apb.DeleteRecognitionRequest.DESCRIPTOR) == official["DeleteRecognitionRequest"]
    service = apb.DESCRIPTOR.services_by_name["AsyncRecognizer"]
    assert [
        [m.full_name, m.input_type.full_name, m.output_type.full_name] for m in service.methods
    ] == official["methods"]
    ops = op_pb.DESCRIPTOR.services_by_name["OperationService"]
    assert [[m.full_name, m.input_type.full_name] for m in ops.methods] == official["ops"]


async def test_local_recognizer_command_serves_the_v2_rest_front() -> None:
    """``ivr-bridge local-recognizer --rest-port`` answers v2 REST next to gRPC, and stops
    cleanly on SIGTERM."""
    rest_port = free_tcp_port()
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "ivr_bridge", "local-recognizer", "--engine", "tones"],
        *["--port", "0", "--api-key", "k", "--rest-port", str(rest_port)],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        while b"local_recognizer_listening" not in (line := await proc.stdout.readline()):
            assert line, "the command exited before listening"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rest_port}") as http:
            missing = await http.get("/operations/nope", headers={"authorization": "Api-Key k"})
            assert missing.status_code == 404 and missing.json()["code"] == 5
            unauth = await http.get("/operations/nope")
            assert unauth.status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
