"""SpeechKit's documented API v2 streaming sample, built only from the official stubs.

The docs' Python example for v2 streaming ("streaming-examples"): a generator that yields a
``RecognitionConfig`` (LINEAR16_PCM, 8 kHz, partial results, profanity filter, model
general) and then the raw LPCM file in 4,000-byte pieces; the response loop prints each
response's first chunk: its alternatives and whether it is final; a gRPC error prints its
code and message. This is the same program with one change, as the issue requires: the
endpoint (argv[1], a plaintext loopback port, instead of stt.api.cloud.yandex.net:443 with
TLS). It prints JSON lines instead of free text so the test can read them.

Usage: python official_v2_sample.py HOST:PORT FOLDER_ID AUDIO.raw [LANGUAGE]
An IAM token or API key, if needed, comes from OFFICIAL_CLIENT_API_KEY (never argv).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator

import grpc
from yandex.cloud.ai.stt.v2 import stt_service_pb2, stt_service_pb2_grpc

CHUNK_SIZE = 4000


def gen(folder_id: str, audio_file_name: str, language: str) -> Iterator[object]:
    specification = stt_service_pb2.RecognitionSpec(
        language_code=language,
        profanity_filter=True,
        model="general",
        partial_results=True,
        audio_encoding="LINEAR16_PCM",  # type: ignore[arg-type]  # as the docs write it
        sample_rate_hertz=8000,
    )
    streaming_config = stt_service_pb2.RecognitionConfig(
        specification=specification, folder_id=folder_id
    )
    yield stt_service_pb2.StreamingRecognitionRequest(config=streaming_config)
    with open(audio_file_name, "rb") as f:
        data = f.read(CHUNK_SIZE)
        while data != b"":
            yield stt_service_pb2.StreamingRecognitionRequest(audio_content=data)
            data = f.read(CHUNK_SIZE)


def run(endpoint: str, folder_id: str, audio_file_name: str, language: str) -> int:
    channel = grpc.insecure_channel(endpoint)  # the one change: the endpoint
    stub = stt_service_pb2_grpc.SttServiceStub(channel)
    key = os.environ.get("OFFICIAL_CLIENT_API_KEY", "")
    metadata = (("authorization", f"Api-Key {key}"),) if key else ()
    it = stub.StreamingRecognize(gen(folder_id, audio_file_name, language), metadata=metadata)
    try:
        for r in it:
            try:
                chunk = r.chunks[0]
            except IndexError:
                print(json.dumps({"type": "no_chunks"}), flush=True)
                continue
            print(
                json.dumps(
                    {
                        "type": "chunk",
                        "alternatives": [a.text for a in chunk.alternatives],
                        "final": chunk.final,
                        "end_of_utterance": chunk.end_of_utterance,
                    }
                ),
                flush=True,
            )
    except grpc.RpcError as err:
        print(json.dumps({"type": "error", "code": err.code().name, "message": err.details()}))
        return 1
    print(json.dumps({"type": "done"}), flush=True)
    return 0


if __name__ == "__main__":
    language = sys.argv[4] if len(sys.argv) > 4 else "ru-RU"
    sys.exit(run(sys.argv[1], sys.argv[2], sys.argv[3], language))
