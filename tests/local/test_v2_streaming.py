"""The embedded recognizer's SpeechKit v2 streaming service: rules, results, official sample."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge._proto import stt_v2_pb2 as pb
from ivr_bridge._proto import stt_v2_pb2_grpc as pb_grpc
from ivr_bridge.local.server import EmbeddedServerConfig, EmbeddedSpeechKitServer, LocalLimits
from ivr_bridge.local.tones import synthesize_script

SAMPLE = Path(__file__).resolve().parents[1] / "wire_compat" / "official_v2_sample.py"
SCRIPT = [["alpha", "lima", "whiskey"], ["foxtrot", "quebec", "one"]]


@pytest.fixture
async def server() -> AsyncIterator[EmbeddedSpeechKitServer]:
    rec = EmbeddedSpeechKitServer(
        EmbeddedServerConfig(
            port=0, engine="tones", api_key="k-123", limits=LocalLimits(max_audio_ms=20_000)
        )
    )
    await rec.start()
    try:
        yield rec
    finally:
        await rec.stop(grace=0.2)


def config(**spec: Any) -> pb.StreamingRecognitionRequest:
    spec.setdefault("audio_encoding", pb.RecognitionSpec.LINEAR16_PCM)
    spec.setdefault("sample_rate_hertz", 8000)
    spec.setdefault("language_code", "en-US")
    spec.setdefault("raw_results", True)
    folder = spec.pop("folder_id", "")
    return pb.StreamingRecognitionRequest(
        config=pb.RecognitionConfig(specification=pb.RecognitionSpec(**spec), folder_id=folder)
    )


def audio(pcm: bytes, size: int = 4000) -> list[pb.StreamingRecognitionRequest]:
    return [
        pb.StreamingRecognitionRequest(audio_content=pcm[i : i + size])
        for i in range(0, len(pcm), size)
    ]


async def call(
    rec: EmbeddedSpeechKitServer,
    requests: Sequence[pb.StreamingRecognitionRequest],
    key: str = "k-123",
) -> tuple[list[pb.StreamingRecognitionResponse], str, str]:
    async with grpc.aio.insecure_channel(rec.address) as channel:
        stub: Any = pb_grpc.SttServiceStub(channel)  # type: ignore[no-untyped-call]
        rpc = stub.StreamingRecognize(
            iter(requests), metadata=(("authorization", f"Api-Key {key}"),)
        )
        out: list[pb.StreamingRecognitionResponse] = []
        try:
            async for resp in rpc:
                out.append(resp)
        except grpc.aio.AioRpcError as exc:
            return out, exc.code().name, exc.details() or ""
        return out, "OK", ""


def finals(responses: list[pb.StreamingRecognitionResponse]) -> list[pb.SpeechRecognitionChunk]:
    return [c for r in responses for c in r.chunks if c.final]


async def test_finals_carry_words_and_end_of_utterance(server: EmbeddedSpeechKitServer) -> None:
    pcm = synthesize_script(SCRIPT)
    out, code, _ = await call(server, [config(partial_results=True), *audio(pcm)])
    assert code == "OK"
    got = finals(out)
    assert [c.alternatives[0].text for c in got] == ["alpha lima whiskey", "foxtrot quebec one"]
    assert all(c.end_of_utterance for c in got)
    words = got[1].alternatives[0].words
    assert [w.word for w in words] == ["foxtrot", "quebec", "one"]
    assert (
        words[0].start_time.ToMilliseconds()
        > got[0].alternatives[0].words[-1].end_time.ToMilliseconds()
    )
    assert any(not c.final for r in out for c in r.chunks)  # partials were asked for


async def test_no_partials_unless_asked_and_single_utterance(
    server: EmbeddedSpeechKitServer,
) -> None:
    pcm = synthesize_script(SCRIPT)
    out, code, _ = await call(server, [config(single_utterance=True), *audio(pcm)])
    assert code == "OK"
    assert all(c.final for r in out for c in r.chunks)
    assert [c.alternatives[0].text for c in finals(out)] == ["alpha lima whiskey"]


@pytest.mark.parametrize(
    ("first", "message"),
    [
        (pb.StreamingRecognitionRequest(audio_content=b"\0\0"), "the first message must be config"),
        (config(audio_encoding=pb.RecognitionSpec.OGG_OPUS), "OGG_OPUS is not supported"),
        (config(audio_encoding=pb.RecognitionSpec.AUDIO_ENCODING_UNSPECIFIED), "OGG_OPUS"),
        (config(audio_encoding=pb.RecognitionSpec.MP3), "MP3 is accepted only by long-running"),
        (config(sample_rate_hertz=11025), "must be 8000, 16000 or 48000 (got 11025)"),
        (config(audio_channel_count=2), "takes one channel"),
        (config(folder_id="f" * 51), "folder_id must be at most 50 characters"),
    ],
)
async def test_invalid_first_message(
    server: EmbeddedSpeechKitServer, first: pb.StreamingRecognitionRequest, message: str
) -> None:
    _, code, details = await call(server, [first])
    assert code == "INVALID_ARGUMENT"
    assert message in details


async def test_rules_after_config(server: EmbeddedSpeechKitServer) -> None:
    _, code, details = await call(server, [config(), config()])
    assert (code, details) == ("INVALID_ARGUMENT", "config must be sent exactly once")
    _, code, details = await call(server, [config(), pb.StreamingRecognitionRequest()])
    assert code == "INVALID_ARGUMENT" and "neither config nor audio_content" in details
    _, code, details = await call(server, [config(), *audio(b"\0\0\0")])
    assert code == "INVALID_ARGUMENT" and "whole 16-bit samples (got 3 bytes)" in details
    _, code, details = await call(server, [config()], key="wrong")
    assert (code, details) == ("UNAUTHENTICATED", "invalid API key")


async def test_stream_longer_than_the_limit_is_out_of_range(
    server: EmbeddedSpeechKitServer,
) -> None:
    pcm = bytes(2 * 8000 * 21)  # 21 s against a 20 s limit
    _, code, details = await call(server, [config(), *audio(pcm, 16000)])
    assert (code, details) == ("OUT_OF_RANGE", "Exceeded maximum allowed stream duration")


async def test_normalized_text_unless_raw_results(server: EmbeddedSpeechKitServer) -> None:
    pcm = synthesize_script([["foxtrot", "quebec", "one"]])
    out, code, _ = await call(server, [config(raw_results=False), *audio(pcm)])
    assert code == "OK"
    assert [c.alternatives[0].text for c in finals(out)] == ["foxtrot quebec 1"]


async def test_the_documented_v2_sample_runs_against_it(
    server: EmbeddedSpeechKitServer, tmp_path: Path
) -> None:
    raw = tmp_path / "speech.raw"
    raw.write_bytes(synthesize_script(SCRIPT))
    env = {**os.environ, "OFFICIAL_CLIENT_API_KEY": "k-123"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SAMPLE),
        server.address,
        "b1g-folder-id",
        str(raw),
        "en-US",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode()
    lines = [json.loads(ln) for ln in stdout.decode().splitlines()]
    assert lines[-1] == {"type": "done"}
    final = [ln["alternatives"][0] for ln in lines if ln["type"] == "chunk" and ln["final"]]
    assert final == ["alpha lima whiskey", "foxtrot quebec 1"]
    assert any(ln["type"] == "chunk" and not ln["final"] for ln in lines)
