"""A SpeechKit v3 streaming client built only from the official ``yandexcloud`` stubs and grpc.

It proves that a real SpeechKit client can talk to the embedded recognizer: if our server
spoke a subtly different protocol, this client (not ours) would notice.

Usage::

    python official_client.py HOST:PORT speech.wav [--chunk-ms 100] [--pace 0]
        [--language en-US] [--model general] [--timeout 60]

The WAV must be 16-bit mono PCM; its sample rate goes into session_options. Audio is sent in
``--chunk-ms`` chunks (``--pace 1`` = real time, 0 = as fast as flow control allows), then
the client half-closes and prints every final as one JSON line on stdout::

    {"type": "final", "text": ..., "start_ms": ..., "end_ms": ..., "words": [...], ...}

and a last ``{"type": "done", ...}`` line. An API key, if needed, comes from the
OFFICIAL_CLIENT_API_KEY environment variable (never from argv, which ``ps`` shows).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import wave
from collections.abc import Iterator

import grpc
from google.protobuf import json_format
from yandex.cloud.ai.stt.v3 import stt_pb2, stt_service_pb2_grpc


def read_pcm(path: str) -> tuple[bytes, int]:
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise SystemExit(f"{path}: need 16-bit mono PCM")
        return w.readframes(w.getnframes()), w.getframerate()


def requests(
    pcm: bytes, rate: int, chunk_ms: int, pace: float, language: str, model: str
) -> Iterator[stt_pb2.StreamingRequest]:
    yield stt_pb2.StreamingRequest(
        session_options=stt_pb2.StreamingOptions(
            recognition_model=stt_pb2.RecognitionModelOptions(
                model=model,
                audio_format=stt_pb2.AudioFormatOptions(
                    raw_audio=stt_pb2.RawAudio(
                        audio_encoding=stt_pb2.RawAudio.LINEAR16_PCM,
                        sample_rate_hertz=rate,
                        audio_channel_count=1,
                    )
                ),
                text_normalization=stt_pb2.TextNormalizationOptions(
                    text_normalization=stt_pb2.TextNormalizationOptions.TEXT_NORMALIZATION_DISABLED,
                ),
                language_restriction=stt_pb2.LanguageRestrictionOptions(
                    restriction_type=stt_pb2.LanguageRestrictionOptions.WHITELIST,
                    language_code=[language],
                ),
                audio_processing_type=stt_pb2.RecognitionModelOptions.REAL_TIME,
            ),
            eou_classifier=stt_pb2.EouClassifierOptions(
                default_classifier=stt_pb2.DefaultEouClassifier(
                    type=stt_pb2.DefaultEouClassifier.DEFAULT
                )
            ),
        )
    )
    step = rate * 2 * chunk_ms // 1000
    started = time.monotonic()
    for i, off in enumerate(range(0, len(pcm), step)):
        if pace > 0:
            delay = started + i * chunk_ms / 1000 / pace - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield stt_pb2.StreamingRequest(chunk=stt_pb2.AudioChunk(data=pcm[off : off + step]))
    # Returning ends the request iterator: grpc half-closes the stream.


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("address")
    ap.add_argument("wav")
    ap.add_argument("--chunk-ms", type=int, default=100)
    ap.add_argument("--pace", type=float, default=0.0)
    ap.add_argument("--language", default="en-US")
    ap.add_argument("--model", default="general")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    pcm, rate = read_pcm(args.wav)
    metadata = [("x-client-request-id", "official-client")]
    api_key = os.environ.get("OFFICIAL_CLIENT_API_KEY")
    if api_key:
        metadata.append(("authorization", f"Api-Key {api_key}"))

    counts: dict[str, int] = {}
    with grpc.insecure_channel(args.address) as channel:
        stub = stt_service_pb2_grpc.RecognizerStub(channel)
        responses = stub.RecognizeStreaming(
            requests(pcm, rate, args.chunk_ms, args.pace, args.language, args.model),
            metadata=metadata,
            timeout=args.timeout,
        )
        try:
            for resp in responses:
                kind = resp.WhichOneof("Event") or "unknown"
                counts[kind] = counts.get(kind, 0) + 1
                if kind != "final":
                    continue
                alts = resp.final.alternatives
                alt = alts[0] if alts else stt_pb2.Alternative()
                line = {
                    "type": "final",
                    "text": alt.text,
                    "start_ms": alt.start_time_ms,
                    "end_ms": alt.end_time_ms,
                    "words": [
                        {"text": w.text, "start_ms": w.start_time_ms, "end_ms": w.end_time_ms}
                        for w in alt.words
                    ],
                    "channel_tag": resp.final.channel_tag or resp.channel_tag,
                    "final_index": resp.audio_cursors.final_index,
                    "session_uuid": resp.session_uuid.uuid,
                    "cursors": json_format.MessageToDict(
                        resp.audio_cursors, preserving_proto_field_name=True
                    ),
                }
                print(json.dumps(line, ensure_ascii=False), flush=True)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            print(json.dumps({"type": "error", "code": str(code), "details": details}), flush=True)
            return 1
    print(
        json.dumps(
            {"type": "done", "responses": counts, "audio_ms": len(pcm) * 1000 // (2 * rate)}
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
