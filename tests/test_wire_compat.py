"""Our protobuf modules are wire-compatible with SpeechKit's official generated stubs.

Ours and the official stubs (``yandexcloud``: ``yandex.cloud.ai.stt.v3``) declare the same
fully-qualified names (``speechkit.stt.v3.*``), so both cannot live in protobuf's default
descriptor pool in one process. The official side therefore runs in a subprocess
(tests/wire_compat/official_side.py) and the two exchange serialized bytes as base64 JSON.

``yandexcloud`` is a declared dev dependency: when it is missing these tests fail, never skip.
"""

from __future__ import annotations

import asyncio
import audioop
import base64
import json
import os
import shutil
import subprocess
import sys
import wave
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor as _d
from google.protobuf import json_format

from ivr_bridge._proto import stt_v3_pb2 as pb
from ivr_bridge._proto import stt_v3_service_pb2 as pb_service
from ivr_bridge._proto import stt_v3_service_pb2_grpc as pb_grpc
from ivr_bridge.clock import SYSTEM_CLOCK
from ivr_bridge.model import FinalRefinement, FinalResult
from ivr_bridge.recognition.base import SessionConfig
from ivr_bridge.recognition.speechkit_v3 import convert_response, session_options

HERE = Path(__file__).parent / "wire_compat"
OFFICIAL_SIDE = HERE / "official_side.py"
OFFICIAL_CLIENT = HERE / "official_client.py"
ESPEAK = "/usr/bin/espeak-ng"


def official(op: str, payload: dict[str, Any] | None = None) -> Any:
    """Run one operation on the official side; any failure there (ImportError too) fails."""
    proc = subprocess.run(
        [sys.executable, str(OFFICIAL_SIDE), op],
        input=json.dumps(payload or {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, (
        f"official side failed (is the yandexcloud dev dependency installed?):\n{proc.stderr}"
    )
    out = json.loads(proc.stdout)
    assert out["loaded_ivr_bridge"] == [], "official side must not load our modules"
    return out["result"]


@cache
def official_descriptors() -> dict[str, Any]:
    result: dict[str, Any] = official("describe")
    return result


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def to_dict(msg: Any) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return result


# ---- (a) requests: ours -> theirs --------------------------------------------------------


def full_session_options() -> pb.StreamingRequest:
    """Every session option the bridge can send, set to a non-default value."""
    return pb.StreamingRequest(
        session_options=pb.StreamingOptions(
            recognition_model=pb.RecognitionModelOptions(
                model="general:rc",
                audio_format=pb.AudioFormatOptions(
                    raw_audio=pb.RawAudio(
                        audio_encoding=pb.RawAudio.LINEAR16_PCM,
                        sample_rate_hertz=8000,
                        audio_channel_count=1,
                    )
                ),
                text_normalization=pb.TextNormalizationOptions(
                    text_normalization=pb.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED,
                    profanity_filter=True,
                    literature_text=True,
                    phone_formatting_mode=pb.TextNormalizationOptions.PHONE_FORMATTING_MODE_DISABLED,
                ),
                language_restriction=pb.LanguageRestrictionOptions(
                    restriction_type=pb.LanguageRestrictionOptions.WHITELIST,
                    language_code=["ru-RU", "en-US"],
                ),
                audio_processing_type=pb.RecognitionModelOptions.REAL_TIME,
            ),
            eou_classifier=pb.EouClassifierOptions(
                default_classifier=pb.DefaultEouClassifier(
                    type=pb.DefaultEouClassifier.HIGH, max_pause_between_words_hint_ms=700
                )
            ),
            speaker_labeling=pb.SpeakerLabelingOptions(
                speaker_labeling=pb.SpeakerLabelingOptions.SPEAKER_LABELING_DISABLED
            ),
        )
    )


def our_requests() -> list[tuple[str, pb.StreamingRequest]]:
    bridge_options = session_options(
        SessionConfig(
            sample_rate=8000,
            languages=("ru-RU",),
            text_normalization=True,
            eou_sensitivity="DEFAULT",
            max_pause_between_words_hint_ms=500,
        )
    )
    return [
        ("full_session_options", full_session_options()),
        ("bridge_session_options", bridge_options),
        (
            "external_eou",
            pb.StreamingRequest(
                session_options=pb.StreamingOptions(
                    eou_classifier=pb.EouClassifierOptions(
                        external_classifier=pb.ExternalEouClassifier()
                    )
                )
            ),
        ),
        ("chunk", pb.StreamingRequest(chunk=pb.AudioChunk(data=bytes(range(256)) * 6))),
        ("silence_chunk", pb.StreamingRequest(silence_chunk=pb.SilenceChunk(duration_ms=1000))),
        ("eou", pb.StreamingRequest(eou=pb.Eou())),
    ]


def test_requests_built_with_ours_parse_identically_with_theirs() -> None:
    built = our_requests()
    wire = [m.SerializeToString(deterministic=True) for _, m in built]
    parsed = official("parse_requests", {"messages": [b64(w) for w in wire]})
    assert len(parsed) == len(built)
    for (name, ours), raw, theirs in zip(built, wire, parsed, strict=True):
        assert theirs["event"] == ours.WhichOneof("Event"), name
        assert theirs["dict"] == to_dict(ours), name
        assert base64.b64decode(theirs["bytes"]) == raw, f"{name}: re-serialized bytes differ"
    # Sanity: the interesting values really crossed the wire.
    opts = parsed[0]["dict"]["session_options"]
    raw_audio = opts["recognition_model"]["audio_format"]["raw_audio"]
    assert raw_audio == {
        "audio_encoding": "LINEAR16_PCM",
        "sample_rate_hertz": "8000",
        "audio_channel_count": "1",
    }
    assert opts["eou_classifier"]["default_classifier"] == {
        "type": "HIGH",
        "max_pause_between_words_hint_ms": "700",
    }


# ---- (b) responses: theirs -> ours -------------------------------------------------------


def test_responses_built_with_theirs_parse_identically_with_ours() -> None:
    built = official("build_responses")
    names = [b["name"] for b in built]
    assert names[:5] == ["partial", "final", "eou_update", "final_refinement", "status_code"]
    for item in built:
        raw = base64.b64decode(item["bytes"])
        ours = pb.StreamingResponse.FromString(raw)
        theirs = item["dict"]
        assert theirs["session_uuid"]["uuid"] and theirs["audio_cursors"] and theirs["channel_tag"]
        # Re-serializing keeps even the fields we do not declare (as unknown fields).
        assert ours.SerializeToString(deterministic=True) == raw, item["name"]
        if item["name"].startswith("unknown_"):
            assert ours.WhichOneof("Event") is None
            assert convert_response(ours) is None
            known = {k: v for k, v in theirs.items() if k != "classifier_update"}
            assert to_dict(ours) == known
            continue
        assert ours.WhichOneof("Event") == item["name"]
        assert to_dict(ours) == theirs, item["name"]


def test_official_results_convert_to_bridge_updates() -> None:
    built = {
        b["name"]: pb.StreamingResponse.FromString(base64.b64decode(b["bytes"]))
        for b in official("build_responses")
    }
    final = convert_response(built["final"])
    assert isinstance(final, FinalResult)
    assert final.hypothesis.text == "здравствуйте я хочу"
    assert [w.text for w in final.hypothesis.words] == ["здравствуйте", "я", "хочу"]
    assert (final.hypothesis.start_ms, final.hypothesis.end_ms) == (120, 1020)
    assert final.cursors.final_index == 2
    refinement = convert_response(built["final_refinement"])
    assert isinstance(refinement, FinalRefinement)
    assert refinement.final_index == 2
    assert refinement.hypothesis.text == "Здравствуйте, я хочу 25 рублей."


# ---- (c) descriptors: names, numbers, types ----------------------------------------------


def _field(f: _d.FieldDescriptor) -> dict[str, Any]:
    return {
        "name": f.name,
        "number": f.number,
        "type": f.type,
        "repeated": f.is_repeated,
        "message_type": f.message_type.full_name if f.message_type else None,
        "enum_type": f.enum_type.full_name if f.enum_type else None,
        "oneof": f.containing_oneof.name if f.containing_oneof else None,
    }


def _our_messages() -> list[_d.Descriptor]:
    out: list[_d.Descriptor] = []

    def walk(desc: _d.Descriptor) -> None:
        out.append(desc)
        for nested in desc.nested_types:
            walk(nested)

    for desc in pb.DESCRIPTOR.message_types_by_name.values():
        walk(desc)
    return out


def _our_enums() -> list[_d.EnumDescriptor]:
    enums = list(pb.DESCRIPTOR.enum_types_by_name.values())
    for msg in _our_messages():
        enums.extend(msg.enum_types)
    return enums


def test_package_service_and_method_names_match() -> None:
    theirs = official_descriptors()
    assert pb.DESCRIPTOR.package == theirs["package"] == "speechkit.stt.v3"
    ours_svc = pb_service.DESCRIPTOR.services_by_name["Recognizer"]
    their_svc = theirs["services"][ours_svc.full_name]
    assert ours_svc.full_name == "speechkit.stt.v3.Recognizer"
    for method in ours_svc.methods:
        assert their_svc[method.name] == {
            "full_name": method.full_name,
            "input": method.input_type.full_name,
            "output": method.output_type.full_name,
            "client_streaming": method.client_streaming,
            "server_streaming": method.server_streaming,
        }

    class Recording:
        def __init__(self) -> None:
            self.paths: list[str] = []

        def stream_stream(self, path: str, *args: Any, **kwargs: Any) -> None:
            self.paths.append(path)

        unary_unary = unary_stream = stream_unary = stream_stream

    channel = Recording()
    pb_grpc.RecognizerStub(channel)  # type: ignore[no-untyped-call]  # generated, untyped
    assert channel.paths == theirs["recognizer_stub_paths"]
    assert channel.paths == ["/speechkit.stt.v3.Recognizer/RecognizeStreaming"]


def test_every_field_we_declare_matches_theirs() -> None:
    theirs = official_descriptors()["messages"]
    checked = 0
    for desc in _our_messages():
        assert desc.full_name in theirs, f"{desc.full_name} is not an official message"
        their_fields = theirs[desc.full_name]["fields"]
        their_by_number = {f["number"]: f for f in their_fields.values()}
        for field in desc.fields:
            mine = _field(field)
            assert their_fields.get(field.name) == mine, f"{desc.full_name}.{field.name}"
            assert their_by_number[field.number]["name"] == field.name
            checked += 1
    assert checked >= 60  # the walk really covered our schema


def test_every_enum_value_we_declare_matches_theirs() -> None:
    theirs = official_descriptors()["enums"]
    for enum in _our_enums():
        assert enum.full_name in theirs, enum.full_name
        for value in enum.values:
            assert theirs[enum.full_name].get(value.name) == value.number, (
                f"{enum.full_name}.{value.name}"
            )


# ---- (d) the official client against the embedded recognizer ----------------------------


def speech_wav(tmp_path: Path, text: str) -> tuple[Path, int]:
    """espeak-ng speech resampled to 8 kHz 16-bit mono, with a little trailing silence."""
    raw = tmp_path / "espeak.wav"
    subprocess.run([ESPEAK, "-s", "140", "-w", str(raw), text], check=True, timeout=30)
    with wave.open(str(raw), "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        rate = w.getframerate()
        frames = w.readframes(w.getnframes())
    pcm, _ = audioop.ratecv(frames, 2, 1, rate, 8000, None)
    pcm += bytes(2 * 8000 * 600 // 1000)
    out = tmp_path / "speech-8k.wav"
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)
    return out, len(pcm) * 1000 // (2 * 8000)


async def run_official_client(
    address: str, wav: Path, api_key: str | None
) -> tuple[int, list[dict[str, Any]], str]:
    """The official client in a subprocess; asyncio, because the server shares this loop."""
    env = {k: v for k, v in os.environ.items() if k != "OFFICIAL_CLIENT_API_KEY"}
    if api_key is not None:
        env["OFFICIAL_CLIENT_API_KEY"] = api_key  # by environment, never on the command line
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(OFFICIAL_CLIENT),
        address,
        str(wav),
        "--chunk-ms",
        "100",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=90)
    lines = [json.loads(ln) for ln in stdout.decode().splitlines() if ln.strip()]
    assert proc.returncode is not None
    return proc.returncode, lines, stderr.decode()


@pytest.mark.slow
async def test_official_client_streams_to_embedded_recognizer(tmp_path: Path) -> None:
    if not shutil.which(ESPEAK):
        pytest.skip("espeak-ng is not installed")
    from ivr_bridge.local.server import EmbeddedServerConfig, EmbeddedSpeechKitServer

    wav, audio_ms = speech_wav(tmp_path, "hello world. please call me back tomorrow morning.")
    api_key = "local-test-key-0123456789"
    rec = EmbeddedSpeechKitServer(
        EmbeddedServerConfig(host="127.0.0.1", port=0, api_key=api_key), SYSTEM_CLOCK
    )
    port = await rec.start()
    try:
        assert str(port) in rec.address
        rc, lines, stderr = await run_official_client(rec.address, wav, api_key)
        # The official client sees the server's refusal as SpeechKit's own status code.
        rc_noauth, lines_noauth, _ = await run_official_client(rec.address, wav, None)
    finally:
        await rec.stop()
    assert rc == 0, f"{lines}\n{stderr}"
    assert lines and lines[-1]["type"] == "done"
    assert lines[-1]["responses"].get("final", 0) >= 1
    finals = [ln for ln in lines if ln["type"] == "final"]
    spoken = [f for f in finals if f["text"].strip()]
    assert spoken, f"no final with text: {lines}"
    for f in spoken:
        assert 0 <= f["start_ms"] < f["end_ms"] <= audio_ms + 200, f
        assert f["session_uuid"] and f["channel_tag"] == "0"
        for w in f["words"]:
            assert f["start_ms"] - 50 <= w["start_ms"] <= w["end_ms"] <= f["end_ms"] + 50, w
    assert [f["final_index"] for f in finals] == list(range(len(finals)))
    assert rc_noauth == 1
    assert lines_noauth[-1]["type"] == "error"
    assert lines_noauth[-1]["code"] == "StatusCode.UNAUTHENTICATED"
