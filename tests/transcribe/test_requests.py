"""What the transcribe clients send, and how often they poll (no I/O)."""

from __future__ import annotations

import itertools

from ivr_bridge._proto import stt_v3_pb2 as pb3
from ivr_bridge.clock import ScaledClock
from ivr_bridge.transcribe.audio import Prepared
from ivr_bridge.transcribe.polling import V2_CHECKS_PER_S, Pacer, poll_delay
from ivr_bridge.transcribe.v2 import request_body
from ivr_bridge.transcribe.v3 import recognize_request


def test_v2_body_is_the_documented_one() -> None:
    lpcm = Prepared(b"", "LPCM", 8000, 2)
    body = request_body(lpcm, "https://storage.yandexcloud.net/b/a.raw", language="en-US")
    assert body == {
        "config": {
            "specification": {
                "languageCode": "en-US",
                "model": "general",
                "profanityFilter": False,
                "literature_text": False,
                "rawResults": True,
                "audioEncoding": "LINEAR16_PCM",
                "sampleRateHertz": 8000,
                "audioChannelCount": 2,
            }
        },
        "audio": {"uri": "https://storage.yandexcloud.net/b/a.raw"},
    }
    opus = request_body(Prepared(b"", "OGG_OPUS", 48000, 1), "u", normalize=True, folder_id="f")
    spec = opus["config"]["specification"]
    assert spec["audioEncoding"] == "OGG_OPUS" and "sampleRateHertz" not in spec
    assert not spec["rawResults"] and opus["config"]["folderId"] == "f"


def test_v3_request_inline_or_uri() -> None:
    wav = recognize_request(Prepared(b"RIFF", "WAV", 8000, 1), language="kk-KZ", normalize=True)
    assert wav.WhichOneof("AudioSource") == "content" and wav.content == b"RIFF"
    model = wav.recognition_model
    assert model.audio_format.container_audio.container_audio_type == pb3.ContainerAudio.WAV
    assert list(model.language_restriction.language_code) == ["kk-KZ"]
    assert (
        model.text_normalization.text_normalization
        == pb3.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED
    )
    raw = recognize_request(Prepared(b"\0\0", "LPCM", 16000, 2), uri="https://s/b/k")
    assert raw.WhichOneof("AudioSource") == "uri" and raw.uri == "https://s/b/k"
    fmt = raw.recognition_model.audio_format.raw_audio
    assert (fmt.sample_rate_hertz, fmt.audio_channel_count) == (16000, 2)


def test_poll_delay_grows_and_is_capped() -> None:
    delays = [poll_delay(i, 1.0, 30.0) for i in range(20)]
    assert 0.9 <= delays[0] <= 1.1
    assert all(d <= 33.0 for d in delays) and delays[-1] >= 27.0
    assert delays[5] > delays[1]


async def test_pacer_spaces_checks_across_callers() -> None:
    clock = ScaledClock(speed=2000)
    pacer = Pacer(V2_CHECKS_PER_S, clock)  # 2,500 per hour: one every 1.44 s
    times = []
    for _ in range(4):
        await pacer.wait()
        times.append(clock.now())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g >= 1.43 for g in gaps)
