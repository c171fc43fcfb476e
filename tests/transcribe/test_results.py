"""Transcripts from both APIs' answers, and the four output formats (no I/O)."""

from __future__ import annotations

import json

import pytest

from ivr_bridge._proto import stt_v3_pb2 as pb
from ivr_bridge.transcribe.results import Phrase, TimedWord, Transcript, from_v2, from_v3, render


def final(text: str, start: int, end: int, tag: str = "0") -> pb.StreamingResponse:
    words = [pb.Word(text=w, start_time_ms=start, end_time_ms=end) for w in text.split()]
    alt = pb.Alternative(words=words, text=text, start_time_ms=start, end_time_ms=end)
    return pb.StreamingResponse(
        final=pb.AlternativeUpdate(alternatives=[alt], channel_tag=tag), channel_tag=tag
    )


def test_v3_finals_per_channel_in_time_order_with_refinements() -> None:
    refinement = pb.StreamingResponse(
        final_refinement=pb.FinalRefinement(
            final_index=0,
            normalized_text=pb.AlternativeUpdate(alternatives=[pb.Alternative(text="call 1")]),
        ),
        channel_tag="1",
    )
    responses = [
        final("hello there", 0, 900),
        final("call one", 500, 1200, "1"),
        refinement,
        pb.StreamingResponse(eou_update=pb.EouUpdate(time_ms=900)),
        final("bye", 2000, 2400),
    ]
    t = from_v3("a.wav", 2, responses)
    assert [(p.channel, p.text) for p in t.phrases] == [
        (0, "hello there"),
        (1, "call 1"),
        (0, "bye"),
    ]
    assert t.phrases[1].words == (TimedWord("call", 500, 1200), TimedWord("one", 500, 1200))
    assert t.channel_text(0) == "hello there bye"


def test_v2_operation_chunks_with_duration_strings() -> None:
    operation = {
        "done": True,
        "response": {
            "@type": "type.googleapis.com/yandex.cloud.ai.stt.v2.LongRunningRecognitionResponse",
            "chunks": [
                {
                    "alternatives": [
                        {
                            "text": "two words",
                            "words": [
                                {"word": "two", "startTime": "0.879999999s", "endTime": "1.2s"},
                                {"word": "words", "startTime": "1.3s", "endTime": "2s"},
                            ],
                        }
                    ],
                    "channelTag": "2",
                },
                {"alternatives": [{"text": "  "}], "channelTag": "1"},
                {"alternatives": [{"text": "first"}], "channelTag": "1"},
            ],
        },
    }
    t = from_v2("x.ogg", 2, operation)
    assert [(p.channel, p.text, p.start_ms, p.end_ms) for p in t.phrases] == [
        (0, "first", 0, 0),
        (1, "two words", 880, 2000),
    ]


def test_v2_failed_file_without_chunks_is_empty() -> None:
    assert from_v2("x", 1, {"done": True, "response": {}}).phrases == []


TWO = Transcript(
    "call.wav",
    2,
    [
        Phrase(0, "hello", 1500, 2250, (TimedWord("hello", 1500, 2250),)),
        Phrase(1, "hi", 3_723_004, 3_724_000),
    ],
)


def test_text_json_srt_vtt() -> None:
    assert render(TWO, "text") == "channel 0: hello\nchannel 1: hi\n"
    assert render(Transcript("m", 1, TWO.phrases[:1]), "text") == "hello\n"
    data = json.loads(render(TWO, "json"))
    assert data["channels"][0]["phrases"][0]["words"][0] == {
        "text": "hello",
        "start_ms": 1500,
        "end_ms": 2250,
    }
    assert data["channels"][1]["text"] == "hi"
    assert render(TWO, "srt") == (
        "1\n00:00:01,500 --> 00:00:02,250\n[0] hello\n\n2\n01:02:03,004 --> 01:02:04,000\n[1] hi\n"
    )
    assert render(TWO, "vtt") == (
        "WEBVTT\n\n00:00:01.500 --> 00:00:02.250\n[0] hello\n\n"
        "01:02:03.004 --> 01:02:04.000\n[1] hi\n"
    )
    with pytest.raises(ValueError, match="unknown format"):
        render(TWO, "doc")
