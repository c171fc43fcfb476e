"""The v2 client's sans-I/O parts: the config message and the synthesized cursors."""

from __future__ import annotations

from ivr_bridge._proto import stt_v2_pb2 as pb
from ivr_bridge.model import EndOfUtterance, FinalResult, PartialResult
from ivr_bridge.recognition.base import SessionConfig
from ivr_bridge.recognition.speechkit_v2 import V2Cursors, recognition_config


def word(text: str, start_ms: int, end_ms: int) -> pb.WordInfo:
    return pb.WordInfo(
        word=text,
        start_time={"seconds": start_ms // 1000, "nanos": start_ms % 1000 * 1_000_000},
        end_time={"seconds": end_ms // 1000, "nanos": end_ms % 1000 * 1_000_000},
    )


def response(*chunks: pb.SpeechRecognitionChunk) -> pb.StreamingRecognitionResponse:
    return pb.StreamingRecognitionResponse(chunks=list(chunks))


def test_config_carries_every_spec_field() -> None:
    cfg = SessionConfig(
        sample_rate=8000,
        model="general:rc",
        languages=("en-US",),
        text_normalization=True,
        profanity_filter=True,
        literature_text=True,
    )
    req = recognition_config(cfg, folder_id="b1g-folder")
    assert req.WhichOneof("streaming_request") == "config"
    spec = req.config.specification
    assert spec.audio_encoding == pb.RecognitionSpec.LINEAR16_PCM
    assert spec.sample_rate_hertz == 8000
    assert spec.language_code == "en-US" and spec.model == "general:rc"
    assert spec.profanity_filter and spec.literature_text and spec.partial_results
    assert not spec.raw_results and not spec.single_utterance
    assert req.config.folder_id == "b1g-folder"


def test_raw_results_when_normalization_is_off_and_no_folder_for_service_accounts() -> None:
    req = recognition_config(SessionConfig(sample_rate=16000), single_utterance=True)
    assert req.config.specification.raw_results
    assert req.config.specification.single_utterance
    assert req.config.folder_id == ""
    assert req.config.specification.language_code == "ru-RU"


def test_cursors_follow_audio_and_finals() -> None:
    cur = V2Cursors(8000)
    cur.on_sent(bytes(16000))  # 1 s of zeros
    assert cur.received_ms == 1000 and not cur.loud_since_response
    partial = pb.SpeechRecognitionChunk(
        alternatives=[
            pb.SpeechRecognitionAlternative(text="alpha", words=[word("alpha", 200, 400)])
        ]
    )
    (p,) = cur.convert(response(partial))
    assert isinstance(p, PartialResult)
    assert p.hypothesis.start_ms == 200 and p.hypothesis.end_ms == 400
    assert p.cursors.final_time_ms == 0 and p.cursors.received_data_ms == 1000
    final = pb.SpeechRecognitionChunk(
        alternatives=[
            pb.SpeechRecognitionAlternative(
                text="alpha lima", words=[word("alpha", 200, 400), word("lima", 450, 700)]
            )
        ],
        final=True,
        end_of_utterance=True,
    )
    f, eou = cur.convert(response(final))
    assert isinstance(f, FinalResult) and isinstance(eou, EndOfUtterance)
    assert [w.text for w in f.hypothesis.words] == ["alpha", "lima"]
    assert f.cursors.final_time_ms == 700 and f.cursors.final_index == 0
    assert eou.time_ms == 700


def test_final_without_word_times_spans_last_final_to_audio_sent() -> None:
    cur = V2Cursors(16000)
    cur.on_sent(bytes(32000))
    first = pb.SpeechRecognitionChunk(
        alternatives=[pb.SpeechRecognitionAlternative(text="one")], final=True
    )
    (f,) = cur.convert(response(first))
    assert isinstance(f, FinalResult)
    assert (f.hypothesis.start_ms, f.hypothesis.end_ms) == (0, 1000)
    cur.on_sent(bytes(32000))
    (g,) = cur.convert(response(first))
    assert isinstance(g, FinalResult)
    assert (g.hypothesis.start_ms, g.hypothesis.end_ms) == (1000, 2000)
    assert g.cursors.final_index == 1 and g.cursors.final_time_ms == 2000


def test_final_time_never_passes_audio_sent_nor_goes_back() -> None:
    cur = V2Cursors(8000)
    cur.on_sent(bytes(8000))  # 500 ms
    late = pb.SpeechRecognitionChunk(
        alternatives=[pb.SpeechRecognitionAlternative(text="x", words=[word("x", 100, 900)])],
        final=True,
    )
    (f,) = cur.convert(response(late))
    assert f.cursors.final_time_ms == 500
    early = pb.SpeechRecognitionChunk(
        alternatives=[pb.SpeechRecognitionAlternative(text="y", words=[word("y", 100, 200)])],
        final=True,
    )
    (g,) = cur.convert(response(early))
    assert g.cursors.final_time_ms == 500


def test_loudness_since_last_response_decides_liveness() -> None:
    cur = V2Cursors(8000)
    loud = b"\x00\x40\x00\xc0" * 400
    cur.on_sent(loud)
    assert cur.loud_since_response
    assert cur.convert(response()) == []
    assert not cur.loud_since_response
    # An empty partial (no text) is not an update; an end of utterance alone still is.
    eou_only = pb.SpeechRecognitionChunk(end_of_utterance=True)
    (e,) = cur.convert(response(eou_only))
    assert isinstance(e, EndOfUtterance)


def test_config_accepts_v2_with_one_language_only() -> None:
    import pytest

    from ivr_bridge.config import load_settings
    from ivr_bridge.errors import ConfigError

    env = {"IVR_BRIDGE_SPEECHKIT_API": "v2"}
    assert load_settings(env=env).speechkit.api == "v2"
    for languages in ("en-US,ru-RU", "auto"):
        with pytest.raises(ConfigError, match="exactly one language"):
            load_settings(env={**env, "IVR_BRIDGE_SPEECHKIT_LANGUAGES": languages})
    with pytest.raises(ConfigError, match="supported: v2, v3"):
        load_settings(env={"IVR_BRIDGE_SPEECHKIT_API": "v1"})
