"""The official SDK's half of tests/test_wire_compat.py; runs in its own process.

Usage: ``python official_side.py OP`` with a JSON payload on stdin. Prints one JSON document,
``{"result": ..., "loaded_ivr_bridge": [...]}``.

The official stubs (``yandex.cloud.ai.stt.v3``) and ivr_bridge's modules declare the same fully
qualified names (``speechkit.stt.v3.*``); protobuf's default descriptor pool refuses a second
definition of a name, so this script imports only the official stubs, never ivr_bridge, and
exchanges serialized messages as base64.

Ops:
  parse_requests   {"messages": [b64, ...]} -> [{"event", "dict", "bytes": re-serialized b64}]
  build_responses  {} -> [{"name", "bytes": b64, "dict"}], built with the official classes
  describe         {} -> package, messages/fields, enums, services, RecognizerStub method paths
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

from google.protobuf import json_format
from yandex.cloud.ai.stt.v3 import stt_pb2, stt_service_pb2, stt_service_pb2_grpc


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def to_dict(msg: Any) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return result


# ---- parse_requests ------------------------------------------------------------------------


def parse_requests(payload: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for item in payload["messages"]:
        msg = stt_pb2.StreamingRequest.FromString(base64.b64decode(item))
        out.append(
            {
                "event": msg.WhichOneof("Event"),
                "dict": to_dict(msg),
                "bytes": b64(msg.SerializeToString(deterministic=True)),
            }
        )
    return out


# ---- build_responses -----------------------------------------------------------------------

UUID = stt_pb2.SessionUuid(uuid="0f6e2a4c-5b1d-4c3e-9a8f-7d6b5c4a3e21", user_request_id="req-42")
WORDS = [("здравствуйте", 120, 640), ("я", 700, 760), ("хочу", 780, 1020)]


def cursors(received: int, final_ms: int, final_index: int, eou_ms: int = 0) -> Any:
    return stt_pb2.AudioCursors(
        received_data_ms=received,
        reset_time_ms=0,
        partial_time_ms=received - 100,
        final_time_ms=final_ms,
        final_index=final_index,
        eou_time_ms=eou_ms,
    )


def alternative(text: str, words: list[tuple[str, int, int]], confidence: float) -> Any:
    return stt_pb2.Alternative(
        words=[stt_pb2.Word(text=w, start_time_ms=s, end_time_ms=e) for w, s, e in words],
        text=text,
        start_time_ms=words[0][1],
        end_time_ms=words[-1][2],
        confidence=confidence,
        languages=[stt_pb2.LanguageEstimation(language_code="ru-RU", probability=0.96875)],
    )


def response(**kwargs: Any) -> Any:
    return stt_pb2.StreamingResponse(session_uuid=UUID, channel_tag="0", **kwargs)


def build_responses(_payload: dict[str, Any]) -> list[dict[str, Any]]:
    """One response per event the bridge reads, filled the way SpeechKit fills them."""
    built = [
        (
            "partial",
            response(
                audio_cursors=cursors(700, 0, 2),
                response_wall_time_ms=1_763_782_000_123,
                partial=stt_pb2.AlternativeUpdate(
                    alternatives=[alternative("здравствуйте", WORDS[:1], 0.0)], channel_tag="0"
                ),
            ),
        ),
        (
            "final",
            response(
                audio_cursors=cursors(1200, 1020, 2),
                response_wall_time_ms=1_763_782_000_456,
                final=stt_pb2.AlternativeUpdate(
                    alternatives=[
                        alternative("здравствуйте я хочу", WORDS, 0.875),
                        alternative("здравствуйте я хочу", WORDS, 0.5),
                    ],
                    channel_tag="0",
                ),
            ),
        ),
        (
            "eou_update",
            response(
                audio_cursors=cursors(1500, 1020, 2, eou_ms=1400),
                response_wall_time_ms=1_763_782_000_789,
                eou_update=stt_pb2.EouUpdate(time_ms=1400),
            ),
        ),
        (
            "final_refinement",
            response(
                audio_cursors=cursors(1500, 1020, 2, eou_ms=1400),
                response_wall_time_ms=1_763_782_000_801,
                final_refinement=stt_pb2.FinalRefinement(
                    final_index=2,
                    normalized_text=stt_pb2.AlternativeUpdate(
                        alternatives=[alternative("Здравствуйте, я хочу 25 рублей.", WORDS, 0.875)],
                        channel_tag="0",
                    ),
                ),
            ),
        ),
        (
            "status_code",
            response(
                audio_cursors=cursors(1600, 1020, 3),
                response_wall_time_ms=1_763_782_001_000,
                status_code=stt_pb2.StatusCode(code_type=stt_pb2.WORKING, message="ok"),
            ),
        ),
        # An event the bridge never requests: ours must keep it as unknown and skip it.
        (
            "unknown_classifier_update",
            response(
                audio_cursors=cursors(1700, 1020, 3),
                response_wall_time_ms=1_763_782_001_100,
                classifier_update=stt_pb2.RecognitionClassifierUpdate(
                    start_time_ms=120,
                    end_time_ms=1020,
                    classifier_result=stt_pb2.RecognitionClassifierResult(
                        classifier="formal_greeting",
                        labels=[stt_pb2.RecognitionClassifierLabel(label="yes", confidence=0.5)],
                    ),
                ),
            ),
        ),
    ]
    return [
        {
            "name": name,
            "bytes": b64(msg.SerializeToString(deterministic=True)),
            "dict": to_dict(msg),
        }
        for name, msg in built
    ]


# ---- describe ------------------------------------------------------------------------------


def field_summary(f: Any) -> dict[str, Any]:
    """Same shape as ``_field`` in tests/test_wire_compat.py."""
    return {
        "name": f.name,
        "number": f.number,
        "type": f.type,
        "repeated": f.is_repeated,
        "message_type": f.message_type.full_name if f.message_type else None,
        "enum_type": f.enum_type.full_name if f.enum_type else None,
        "oneof": f.containing_oneof.name if f.containing_oneof else None,
    }


def describe(_payload: dict[str, Any]) -> dict[str, Any]:
    messages: dict[str, Any] = {}
    enums: dict[str, dict[str, int]] = {}

    def walk(desc: Any) -> None:
        messages[desc.full_name] = {"fields": {f.name: field_summary(f) for f in desc.fields}}
        for enum in desc.enum_types:
            enums[enum.full_name] = {v.name: v.number for v in enum.values}
        for nested in desc.nested_types:
            walk(nested)

    for desc in stt_pb2.DESCRIPTOR.message_types_by_name.values():
        walk(desc)
    for enum in stt_pb2.DESCRIPTOR.enum_types_by_name.values():
        enums[enum.full_name] = {v.name: v.number for v in enum.values}

    services = {
        svc.full_name: {
            m.name: {
                "full_name": m.full_name,
                "input": m.input_type.full_name,
                "output": m.output_type.full_name,
                "client_streaming": m.client_streaming,
                "server_streaming": m.server_streaming,
            }
            for m in svc.methods
        }
        for svc in stt_service_pb2.DESCRIPTOR.services_by_name.values()
    }

    class Recording:
        """Stands in for a grpc.Channel and records the paths the stub registers."""

        def __init__(self) -> None:
            self.paths: list[str] = []

        def stream_stream(self, path: str, *args: Any, **kwargs: Any) -> None:
            self.paths.append(path)

        unary_unary = unary_stream = stream_unary = stream_stream

    channel = Recording()
    stt_service_pb2_grpc.RecognizerStub(channel)
    return {
        "package": stt_pb2.DESCRIPTOR.package,
        "messages": messages,
        "enums": enums,
        "services": services,
        "recognizer_stub_paths": channel.paths,
    }


OPS = {"parse_requests": parse_requests, "build_responses": build_responses, "describe": describe}


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in OPS:
        print(f"usage: {sys.argv[0]} {{{'|'.join(OPS)}}} < payload.json", file=sys.stderr)
        return 2
    payload = json.loads(sys.stdin.read() or "{}")
    result = OPS[sys.argv[1]](payload)
    # Proof of isolation: the official side never loads the bridge's own modules.
    loaded = sorted(m for m in sys.modules if m == "ivr_bridge" or m.startswith("ivr_bridge."))
    json.dump({"result": result, "loaded_ivr_bridge": loaded}, sys.stdout, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
