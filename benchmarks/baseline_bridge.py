"""The baseline for the load benchmark: a Twilio -> SpeechKit v3 bridge written the plain way.

websockets server, orjson parsing, audioop decoding, one grpc.aio stream per call fed in
100 ms chunks, finals appended to a JSON-lines file, uvloop. No keepalive, no ledger, no
rotation, no recovery, no metrics: what a straightforward bridge costs, so the real bridge's
figures can be read as ratios measured in the same run on the same machine.

    python benchmarks/baseline_bridge.py --port 8081 --recognizer 127.0.0.1:50051 --events e.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import audioop
import base64
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import orjson
import uvloop
from websockets.asyncio.server import ServerConnection, serve

from ivr_bridge._proto import stt_v3_pb2 as pb
from ivr_bridge._proto import stt_v3_service_pb2_grpc as pb_grpc

CHUNK_BYTES = 1600  # 100 ms of PCM16 at 8 kHz


def _options() -> Any:
    raw = pb.RawAudio(
        audio_encoding=pb.RawAudio.LINEAR16_PCM, sample_rate_hertz=8000, audio_channel_count=1
    )
    model = pb.RecognitionModelOptions(
        model="general", audio_format=pb.AudioFormatOptions(raw_audio=raw)
    )
    return pb.StreamingRequest(session_options=pb.StreamingOptions(recognition_model=model))


class Baseline:
    def __init__(self, recognizer: str, events_path: str) -> None:
        self._channel = grpc.aio.insecure_channel(recognizer)
        self._stub = pb_grpc.RecognizerStub(self._channel)
        self._events = open(events_path, "ab")  # noqa: SIM115 - lives as long as the server

    def _write_final(self, text: str) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self._events.write(orjson.dumps({"type": "final", "time": now, "data": {"text": text}}))
        self._events.write(b"\n")
        self._events.flush()

    async def handle(self, ws: ServerConnection) -> None:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=100)
        pending = bytearray()
        reader: asyncio.Task[None] | None = None

        async def requests() -> AsyncIterator[Any]:
            yield _options()
            while (item := await queue.get()) is not None:
                yield item

        async def results(call: Any) -> None:
            async for response in call:
                if response.WhichOneof("Event") == "final" and response.final.alternatives:
                    self._write_final(response.final.alternatives[0].text)

        async for message in ws:
            event = orjson.loads(message)
            kind = event.get("event")
            if kind == "media":
                pending += audioop.ulaw2lin(base64.b64decode(event["media"]["payload"]), 2)
                if len(pending) >= CHUNK_BYTES:
                    await queue.put(pb.StreamingRequest(chunk=pb.AudioChunk(data=bytes(pending))))
                    pending.clear()
            elif kind == "start":
                reader = asyncio.create_task(results(self._stub.RecognizeStreaming(requests())))
            elif kind == "stop":
                break
        await queue.put(None)
        if reader is not None:
            await reader


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--recognizer", required=True)
    parser.add_argument("--events", required=True)
    args = parser.parse_args()
    bridge = Baseline(args.recognizer, args.events)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with serve(bridge.handle, "127.0.0.1", args.port, compression=None):
        await stop.wait()


if __name__ == "__main__":
    uvloop.run(main())
