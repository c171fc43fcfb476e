"""Probing and converting input files: WAV, OggOpus, MP3 and raw LPCM."""

from __future__ import annotations

import io

import pytest
import soundfile

from ivr_bridge.transcribe import audio
from ivr_bridge.transcribe.audio import for_v2, for_v3, probe, read
from ivr_bridge.transcribe.errors import TranscribeError
from tests.transcribe.audio_files import LEFT, encode, mono_wav, pcm, stereo_frames, stereo_wav


def test_pcm16_wav_goes_to_v3_as_is_and_to_v2_as_lpcm() -> None:
    data = mono_wav()
    f = probe("a.wav", data)
    assert (f.container, f.sample_rate, f.channels, f.subtype) == ("WAV", 8000, 1, "PCM_16")
    assert for_v3(f).data is data
    v2 = for_v2(f)
    assert (v2.container, v2.sample_rate, v2.channels) == ("LPCM", 8000, 1)
    assert v2.data == pcm(LEFT).tobytes()


def test_stereo_keeps_its_channels() -> None:
    f = probe("s.wav", stereo_wav())
    assert f.channels == 2
    v2 = for_v2(f)
    assert v2.channels == 2 and len(v2.data) == stereo_frames().size * 2


def test_other_wav_sample_formats_and_rates_are_converted() -> None:
    f = probe("f.wav", encode(pcm(LEFT, 22050).astype("<f4") / 32768, 22050, "WAV", "FLOAT"))
    assert f.subtype == "FLOAT"
    v3 = for_v3(f)
    info = soundfile.info(io.BytesIO(v3.data))
    assert (v3.container, info.samplerate, info.subtype) == ("WAV", 16000, "PCM_16")
    v2 = for_v2(f)
    assert (v2.container, v2.sample_rate) == ("LPCM", 16000)


def test_ogg_opus_and_mp3_pass_through() -> None:
    frames = pcm(LEFT, 16000)
    opus = probe("a.ogg", encode(frames, 16000, "OGG", "OPUS"))
    assert opus.container == "OGG_OPUS"
    assert for_v3(opus).container == "OGG_OPUS" and for_v2(opus).data is opus.data
    mp3 = probe("a.mp3", encode(frames, 16000, "MP3", "MPEG_LAYER_III"))
    assert mp3.container == "MP3"
    assert for_v3(mp3).data is mp3.data and for_v2(mp3).container == "MP3"
    vorbis = probe("v.ogg", encode(frames, 16000, "OGG", "VORBIS"))
    assert vorbis.container == "OGG"
    assert for_v3(vorbis).container == "WAV" and for_v2(vorbis).container == "LPCM"


def test_raw_lpcm_needs_its_rate() -> None:
    raw = pcm(LEFT).tobytes()
    f = probe("a.raw", raw, raw_rate=8000)
    assert (f.container, f.channels) == ("LPCM", 1)
    assert abs(f.seconds - len(raw) / 16000) < 1e-6
    assert for_v3(f).container == "LPCM" and for_v2(f).data is raw
    odd = probe("b.raw", raw, raw_rate=11025)
    assert for_v3(odd).container == "WAV" and for_v2(odd).sample_rate == 16000
    with pytest.raises(TranscribeError, match="give --rate and --channels"):
        probe("a.raw", raw)


def test_limits_and_unreadable_files(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TranscribeError, match="not a readable WAV"):
        probe("x.txt", b"hello, not audio")
    # The 4 h limit counts every channel: 0.6 s of stereo against a limit of 1 s.
    monkeypatch.setattr(audio, "MAX_SECONDS", 1)
    assert probe("ok.raw", bytes(8000 * 4 * 4 // 10), raw_rate=8000, raw_channels=1)
    with pytest.raises(TranscribeError, match="more than the 4 h"):
        probe("long.raw", bytes(8000 * 4 * 6 // 10), raw_rate=8000, raw_channels=2)
    monkeypatch.setattr(audio, "MAX_FILE_BYTES", 10)
    with pytest.raises(TranscribeError, match="larger than 1 GB"):
        probe("big.wav", bytes(11))
    with pytest.raises(TranscribeError, match="cannot read"):
        read("/nonexistent/file.wav")
