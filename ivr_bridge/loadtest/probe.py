"""The probe recognizer: a SpeechKit v3 streaming endpoint that measures instead of recognizing.

It speaks the same gRPC service as SpeechKit and the embedded recognizer, so the bridge under
test cannot tell the difference. For every audio chunk it records when the chunk arrived and
which call (``tagging.read_tag``) and sample range it carried; every second of audio it answers
with a final whose text is its own send time (``t<epoch ms>``) and an end of utterance, so the
runner can measure how long results take to come out of the bridge as events.

Run as a process of its own (``python -m ivr_bridge.loadtest.probe --port 0 --out FILE``); it
prints ``PORT <n>`` once listening and writes its records to FILE when it gets SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from ivr_bridge._proto import stt_v3_pb2 as pb
from ivr_bridge._proto import stt_v3_service_pb2_grpc as pb_grpc
from ivr_bridge.loadtest.tagging import read_tag

_RESULT_EVERY_MS = 1000
_add_servicer: Callable[[Any, Any], None] = pb_grpc.add_RecognizerServicer_to_server


class _Records:
    """Receipts as compact lines: ``tag end_sample recv_time`` per chunk."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.sessions = 0
        self.untagged_sessions = 0

    def dump(self, path: str) -> None:
        with open(path, "w", encoding="ascii") as fh:
            fh.write(f"# sessions {self.sessions} untagged {self.untagged_sessions}\n")
            fh.write("\n".join(self.lines))
            fh.write("\n")


class _ProbeServicer(pb_grpc.RecognizerServicer):
    def __init__(self, records: _Records) -> None:
        self._records = records

    async def RecognizeStreaming(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        records = self._records
        records.sessions += 1
        rate = 8000
        tag: int | None = None
        samples = 0
        next_result_ms = _RESULT_EVERY_MS
        final_index = 0
        async for request in request_iterator:
            kind = request.WhichOneof("Event")
            if kind == "session_options":
                raw = request.session_options.recognition_model.audio_format.raw_audio
                rate = int(raw.sample_rate_hertz) or 8000
                continue
            if kind == "chunk":
                data = request.chunk.data
                if samples == 0:
                    tag = read_tag(data)
                    if tag is None:
                        records.untagged_sessions += 1
                samples += len(data) // 2
                if tag is not None:
                    records.lines.append(f"{tag} {samples} {time.time():.6f}")
            elif kind == "silence_chunk":
                samples += request.silence_chunk.duration_ms * rate // 1000
            audio_ms = samples * 1000 // rate
            while audio_ms >= next_result_ms:
                final_index += 1
                yield _final(next_result_ms, final_index, audio_ms)
                yield _eou(next_result_ms, final_index, audio_ms)
                next_result_ms += _RESULT_EVERY_MS


def _cursors(at_ms: int, final_index: int, audio_ms: int) -> Any:
    return pb.AudioCursors(
        received_data_ms=audio_ms,
        partial_time_ms=at_ms,
        final_time_ms=at_ms,
        final_index=final_index,
        eou_time_ms=at_ms,
    )


def _final(at_ms: int, final_index: int, audio_ms: int) -> Any:
    text = f"t{time.time() * 1000:.0f}"
    start, end = at_ms - _RESULT_EVERY_MS + 100, at_ms - 100
    alt = pb.Alternative(
        text=text,
        start_time_ms=start,
        end_time_ms=end,
        words=[pb.Word(text=text, start_time_ms=start, end_time_ms=end)],
        confidence=1.0,
    )
    return pb.StreamingResponse(
        audio_cursors=_cursors(at_ms, final_index, audio_ms),
        response_wall_time_ms=int(time.time() * 1000),
        final=pb.AlternativeUpdate(alternatives=[alt], channel_tag="0"),
    )


def _eou(at_ms: int, final_index: int, audio_ms: int) -> Any:
    return pb.StreamingResponse(
        audio_cursors=_cursors(at_ms, final_index, audio_ms),
        response_wall_time_ms=int(time.time() * 1000),
        eou_update=pb.EouUpdate(time_ms=at_ms),
    )


async def _serve(port: int, out: str) -> None:
    records = _Records()
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 1 << 22)])
    _add_servicer(_ProbeServicer(records), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"PORT {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=0.5)
    records.dump(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.port, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
