"""SpeechKit's session rules with plain protobuf messages: no gRPC, no event loop.

``SessionRules`` decides what each request means (or which status ends the call); these
tests feed it the requests a client would send and check the decision, the way the wire tests
in test_server.py check it through a real connection.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from ivr_bridge._proto import stt_v3_pb2 as pb
from ivr_bridge.local import rules as srv
from ivr_bridge.local.engine import EngineEou, EngineFinal, EngineOptions, EnginePartial, EngineWord
from ivr_bridge.local.rules import (
    AudioItem,
    EndItem,
    EouItem,
    LocalLimits,
    SessionError,
    SessionRules,
    SilenceItem,
    check_authorization,
    split_audio,
)
from tests.local.conftest import chunk, eou, options, silence

SILENCE_1S = bytes(16000)  # 1 s of 8 kHz PCM16 zeros
ONE_SECOND_8K = bytes(16000)


class Outcome:
    """What the rules made of a request sequence: the work items and the ending status."""

    def __init__(self, rules: SessionRules) -> None:
        self.rules = rules
        self.items: list[object] = []
        self.code = "OK"
        self.details = ""


def run(
    requests: Iterable[pb.StreamingRequest],
    *,
    limits: LocalLimits | None = None,
    half_close: bool = True,
) -> Outcome:
    out = Outcome(SessionRules(limits or LocalLimits(), "uuid-1", "req-1"))
    try:
        for request in requests:
            item = out.rules.accept(request)
            if item is not None:
                out.items.append(item)
        if half_close:
            out.items.append(out.rules.end_of_stream())
    except SessionError as exc:
        out.code, out.details = exc.code, exc.message
    return out


# ---- order and shape of requests ----------------------------------------------------------


def test_first_message_must_be_session_options() -> None:
    out = run([chunk(SILENCE_1S), options()])
    assert out.code == "INVALID_ARGUMENT"
    assert out.details == srv.MSG_OPTIONS_FIRST
    assert out.items == []


def test_session_options_only_once() -> None:
    out = run([options(), chunk(SILENCE_1S), options()])
    assert out.code == "INVALID_ARGUMENT"
    assert out.details == srv.MSG_OPTIONS_TWICE


def test_stream_ending_before_options() -> None:
    out = run([])
    assert out.code == "INVALID_ARGUMENT"
    assert out.details == srv.MSG_NO_OPTIONS


def test_empty_request() -> None:
    out = run([options(), pb.StreamingRequest()])
    assert out.code == "INVALID_ARGUMENT"
    assert out.details == srv.MSG_EMPTY_REQUEST


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            options(
                audio_format=pb.AudioFormatOptions(
                    container_audio=pb.ContainerAudio(container_audio_type=pb.ContainerAudio.WAV)
                )
            ),
            srv.MSG_CONTAINER,
        ),
        (options(audio_format=pb.AudioFormatOptions()), srv.MSG_NO_FORMAT),
        (
            options(raw=pb.RawAudio(sample_rate_hertz=8000, audio_channel_count=1)),
            srv.MSG_ENCODING,
        ),
        (options(44100), srv.MSG_RATE.format(rate=44100)),
        (options(0), srv.MSG_RATE.format(rate=0)),
        (options(channels=2), srv.MSG_CHANNELS.format(channels=2)),
    ],
    ids=["container", "no-format", "no-encoding", "rate-44100", "rate-0", "stereo"],
)
def test_unsupported_audio_format(request_: pb.StreamingRequest, message: str) -> None:
    out = run([request_, chunk(SILENCE_1S)])
    assert out.code == "INVALID_ARGUMENT"
    assert out.details == message


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_supported_rates_and_channel_count_zero(rate: int) -> None:
    one_second = bytes(2 * rate)
    out = run([options(rate, channels=0), chunk(one_second), silence(500)])
    assert out.code == "OK", out.details
    first = out.items[0]
    assert isinstance(first, EngineOptions) and first.sample_rate == rate
    assert out.items[1:] == [AudioItem(one_second), SilenceItem(500), EndItem()]
    assert out.rules.received_ms == 1500


def test_odd_length_chunk() -> None:
    out = run([options(), chunk(bytes(3))])
    assert out.code == "INVALID_ARGUMENT"
    assert out.details == srv.MSG_ODD_CHUNK.format(size=3)


def test_negative_silence() -> None:
    out = run([options(), silence(-1)])
    assert out.code == "INVALID_ARGUMENT"
    assert out.details == srv.MSG_NEGATIVE_SILENCE


def test_empty_chunk_and_zero_silence_ask_nothing_of_the_engine() -> None:
    out = run([options(), chunk(b""), silence(0)])
    assert out.code == "OK"
    assert out.items[1:] == [EndItem()]


def test_eou_is_ignored_without_external_classifier() -> None:
    out = run([options(), chunk(SILENCE_1S), eou(), chunk(SILENCE_1S)])
    assert out.code == "OK"
    assert not any(isinstance(item, EouItem) for item in out.items)


def test_eou_with_external_classifier_is_at_the_received_time() -> None:
    out = run([options(external_eou=True), chunk(SILENCE_1S), silence(250), eou()])
    assert out.code == "OK"
    assert out.items[-2:] == [EouItem(received_ms=1250), EndItem()]


@pytest.mark.parametrize(
    ("classifier", "endpoint_ms"),
    [
        (pb.DefaultEouClassifier(), srv.ENDPOINT_MS),
        (pb.DefaultEouClassifier(type=pb.DefaultEouClassifier.HIGH), srv.ENDPOINT_HIGH_MS),
        (pb.DefaultEouClassifier(max_pause_between_words_hint_ms=50), 200),
        (pb.DefaultEouClassifier(max_pause_between_words_hint_ms=900), 900),
        (pb.DefaultEouClassifier(max_pause_between_words_hint_ms=60_000), 5000),
    ],
    ids=["default", "high", "hint-clamped-low", "hint", "hint-clamped-high"],
)
def test_end_of_utterance_pause(classifier: pb.DefaultEouClassifier, endpoint_ms: int) -> None:
    request = options()
    request.session_options.eou_classifier.default_classifier.CopyFrom(classifier)
    settings = srv.parse_options(request.session_options)
    assert settings.engine.endpoint_ms == endpoint_ms
    assert not settings.engine.external_eou


def test_negative_pause_hint() -> None:
    request = options()
    request.session_options.eou_classifier.default_classifier.max_pause_between_words_hint_ms = -1
    out = run([request])
    assert out.code == "INVALID_ARGUMENT"
    assert out.details == srv.MSG_PAUSE_HINT


# ---- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "code", "details"),
    [
        ({}, "UNAUTHENTICATED", srv.MSG_NO_AUTH),
        ({"authorization": "Api-Key wrong"}, "UNAUTHENTICATED", srv.MSG_BAD_AUTH),
        ({"authorization": "Basic s3cret"}, "UNAUTHENTICATED", srv.MSG_BAD_AUTH),
        ({"authorization": "Api-Key s3cret"}, "OK", ""),
        ({"authorization": "Bearer s3cret"}, "OK", ""),
    ],
    ids=["missing", "wrong-key", "wrong-scheme", "api-key", "bearer"],
)
def test_api_key(metadata: dict[str, str], code: str, details: str) -> None:
    try:
        check_authorization(metadata, "s3cret")
        got = ("OK", "")
    except SessionError as exc:
        got = (exc.code, exc.message)
    assert got == (code, details)


def test_no_api_key_configured_admits_anyone() -> None:
    check_authorization({}, None)
    check_authorization({"authorization": "Api-Key anything"}, "")


# ---- 5 minutes and 10 MB ------------------------------------------------------------------


def test_five_minutes_of_silence_chunks_are_accepted() -> None:
    out = run([options(), *[silence(1000) for _ in range(300)]])
    assert out.code == "OK", out.details
    assert out.rules.received_ms == 300_000


def test_more_than_five_minutes_of_silence_chunks() -> None:
    out = run([options(), *[silence(1000) for _ in range(300)], silence(1)])
    assert out.code == "OUT_OF_RANGE"
    assert out.details == "Exceeded maximum allowed stream duration"


def test_more_than_five_minutes_of_audio() -> None:
    requests = [options()]
    requests += [chunk(ONE_SECOND_8K) for _ in range(299)]
    requests += [silence(999), chunk(bytes(16)), chunk(bytes(2))]  # 300 s + 1 ms + 1 sample
    out = run(requests)
    assert out.code == "OUT_OF_RANGE"
    assert out.details == srv.MSG_DURATION
    assert out.rules.received_ms == 300_000  # the violating sample is counted, not accepted


def test_more_than_ten_megabytes_at_48khz() -> None:
    # 10 MB at 48 kHz is 109 s: the size cap binds before the duration cap.
    one_second = bytes(96_000)
    limit = 10 * 1024 * 1024
    requests = [options(48000)]
    requests += [chunk(one_second) for _ in range(limit // len(one_second))]
    requests += [chunk(bytes(limit % len(one_second)))]  # exactly 10 MB: still fine
    ok = run(requests)
    assert ok.code == "OK", ok.details
    out = run([*requests, chunk(bytes(2))])
    assert out.code == "OUT_OF_RANGE"
    assert out.details == "Exceeded maximum allowed stream size"


def test_size_limit_override() -> None:
    limits = LocalLimits(max_bytes=64_000)
    exact = run([options(), *[chunk(ONE_SECOND_8K) for _ in range(4)]], limits=limits)
    assert exact.code == "OK", exact.details
    over = run(
        [options(), *[chunk(ONE_SECOND_8K) for _ in range(4)], chunk(b"\0\0")], limits=limits
    )
    assert over.code == "OUT_OF_RANGE"
    assert over.details == srv.MSG_SIZE


def test_duration_limit_override_counts_audio_and_silence() -> None:
    limits = LocalLimits(max_audio_ms=2500)
    ok = run([options(), chunk(ONE_SECOND_8K), silence(1000), chunk(bytes(8000))], limits=limits)
    assert ok.code == "OK", ok.details
    over = run([options(), chunk(ONE_SECOND_8K), silence(1500), chunk(bytes(2))], limits=limits)
    assert over.code == "OUT_OF_RANGE"
    assert over.details == srv.MSG_DURATION


# ---- responses and cursors ----------------------------------------------------------------


def words(*spans: tuple[str, int, int]) -> tuple[EngineWord, ...]:
    return tuple(EngineWord(text, start, end) for text, start, end in spans)


def test_responses_carry_the_session_and_cursors() -> None:
    out = run([options(external_eou=True), chunk(SILENCE_1S), silence(250)], half_close=False)
    rules = out.rules
    [event] = rules.render(EngineEou(1250))
    response = rules.response(event, wall_ms=1_700_000_000_000)
    assert response.WhichOneof("Event") == "eou_update"
    assert response.eou_update.time_ms == 1250
    assert response.audio_cursors.eou_time_ms == 1250
    assert response.audio_cursors.received_data_ms == 1250
    assert response.session_uuid.uuid == "uuid-1"
    assert response.session_uuid.user_request_id == "req-1"
    assert response.response_wall_time_ms == 1_700_000_000_000
    assert response.channel_tag == "0"


def test_final_advances_final_time_and_index_before_it_is_sent() -> None:
    rules = run([options(normalize=True), chunk(SILENCE_1S)], half_close=False).rules
    rules.engine_progress(processed_ms=600, final_time_ms=100)
    partial = rules.render(EnginePartial("order", 300, 500, words(("order", 300, 500))))
    assert [name for name, _ in partial] == ["partial"]
    assert rules.response(partial[0], 0).audio_cursors.final_time_ms == 100
    spoken = words(("order", 300, 500), ("one", 500, 700), ("two", 700, 900))
    first = rules.render(EngineFinal("order one two", 300, 900, spoken))
    assert [name for name, _ in first] == ["final", "final_refinement"]
    final = rules.response(first[0], 0)
    assert final.audio_cursors.final_time_ms == 900
    assert final.audio_cursors.final_index == 0
    refinement = first[1][1]
    assert refinement.final_index == 0
    assert refinement.normalized_text.alternatives[0].text == "order 12"
    second = rules.render(EngineFinal("yes", 1000, 1200, words(("yes", 1000, 1200))))
    assert rules.response(second[0], 0).audio_cursors.final_index == 1
    assert second[1][1].final_index == 1
    assert rules.finals == 2
    rules.engine_progress(processed_ms=1300, final_time_ms=1200)
    cursors = rules.cursors()
    assert (cursors.partial_time_ms, cursors.final_time_ms) == (1300, 1200)


def test_no_refinement_without_normalization() -> None:
    rules = run([options()], half_close=False).rules
    sent = rules.render(EngineFinal("one", 0, 200, words(("one", 0, 200))))
    assert [name for name, _ in sent] == ["final"]


def test_working_status() -> None:
    rules = run([options()], half_close=False).rules
    response = rules.response(rules.working(), 5)
    assert response.status_code.code_type == pb.WORKING


def test_split_audio_cuts_long_chunks_into_whole_samples() -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes
    pieces = split_audio(AudioItem(data), 4001)
    assert all(len(p.data) == 4000 for p in pieces[:-1])
    assert b"".join(p.data for p in pieces) == data
    short = AudioItem(bytes(100))
    assert split_audio(short, 4000) == [short]
