"""The call recorder: the ledger's timeline in the WAV, never blocking, events at the end."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from ivr_bridge.recording import QUEUE_FRAMES, Recordings
from ivr_bridge.transcribe.runner import Options, Progress, Transcriber
from ivr_bridge.transcribe.v3 import V3AsyncClient


def tone(n: int, value: int) -> bytes:
    return np.full(n, value, dtype="<i2").tobytes()


class Events:
    def __init__(self) -> None:
        self.got: list[tuple[str, int, dict[str, Any]]] = []

    def __call__(self, kind: str, channel: str | None, call_ms: int, data: dict[str, Any]) -> None:
        self.got.append((kind, call_ms, data))


async def test_gaps_are_silence_and_channels_line_up(tmp_path: Path) -> None:
    recs = Recordings(tmp_path)
    rec = recs.start_call("c1", ["caller", "agent"], 8000)
    rec.on_audio("caller", tone(160, 1000), 160)
    rec.on_audio("agent", tone(160, -1000), 160)
    # The caller's ledger got 640 samples of inserted silence before the next frame.
    rec.on_audio("caller", tone(160, 2000), 960)
    rec.on_audio("nobody", tone(160, 5), 160)  # not a channel of this call: ignored
    events = Events()
    await recs.finish_call(rec, {"caller": 960, "agent": 1200}, 150, events)
    ((kind, call_ms, data),) = events.got
    assert (kind, call_ms) == ("recording_ready", 150)
    assert data["recording"]["path"] == str(tmp_path / "c1.wav")
    frames, rate = soundfile.read(tmp_path / "c1.wav", dtype="int16")
    assert rate == 8000 and frames.shape == (1200, 2)
    assert (frames[:160, 0] == 1000).all() and (frames[160:800, 0] == 0).all()
    assert (frames[800:960, 0] == 2000).all() and (frames[960:, 0] == 0).all()
    assert (frames[:160, 1] == -1000).all() and (frames[160:, 1] == 0).all()
    assert not list(tmp_path.glob(".*.raw"))
    await recs.aclose()


async def test_a_full_queue_drops_frames_but_keeps_the_timeline(tmp_path: Path) -> None:
    recs = Recordings(tmp_path)
    rec = recs.start_call("c2", ["caller"], 8000)
    # Without yielding to the writer, more frames than the queue holds: the rest are dropped.
    total = QUEUE_FRAMES + 10
    for i in range(total):
        rec.on_audio("caller", tone(160, 7), 160 * (i + 1))
    assert rec.stats.frames_dropped == 10
    await recs.finish_call(rec, {"caller": 160 * total}, 0, Events())
    frames, _ = soundfile.read(tmp_path / "c2.wav", dtype="int16")
    assert frames.shape == (160 * total,)
    assert (frames[: 160 * QUEUE_FRAMES] == 7).all() and (frames[160 * QUEUE_FRAMES :] == 0).all()


async def test_no_audio_no_file(tmp_path: Path) -> None:
    recs = Recordings(tmp_path)
    rec = recs.start_call("c3", ["caller"], 8000)
    events = Events()
    await recs.finish_call(rec, {"caller": 0}, 0, events)
    assert events.got == [] and not (tmp_path / "c3.wav").exists()


async def test_recognition_failure_gives_transcript_failed(tmp_path: Path) -> None:
    client = V3AsyncClient("127.0.0.1:1", "127.0.0.1:1", tls=False)
    transcriber = Transcriber(Options(), v3=client, progress=Progress(open("/dev/null", "w")))  # noqa: SIM115
    recs = Recordings(tmp_path, transcriber=transcriber)
    recs.on_close.append(client.close)
    rec = recs.start_call("c4", ["caller"], 8000)
    rec.on_audio("caller", tone(1600, 100), 1600)
    events = Events()
    await recs.finish_call(rec, {"caller": 1600}, 200, events)
    await asyncio.wait_for(recs.aclose(), 30)
    ((kind, _, data),) = events.got
    assert kind == "transcript_failed"
    assert data["error"].startswith("SpeechKit is unavailable")
    assert data["recording"]["path"].endswith("c4.wav")


def test_recording_config_checks() -> None:
    import pytest

    from ivr_bridge.config import load_settings
    from ivr_bridge.errors import ConfigError

    assert not load_settings(env={}).recording.enabled
    with pytest.raises(ConfigError, match=r"set storage\.bucket"):
        load_settings(env={"IVR_BRIDGE_RECORDING_API": "v2"})
    with pytest.raises(ConfigError, match="supported: v2, v3"):
        load_settings(env={"IVR_BRIDGE_RECORDING_API": "v9"})
    ok = load_settings(env={"IVR_BRIDGE_RECORDING_API": "v2", "IVR_BRIDGE_STORAGE_BUCKET": "b"})
    assert ok.storage.bucket == "b"
    with pytest.raises(ConfigError, match="at most 604800 s"):
        load_settings(env={"IVR_BRIDGE_STORAGE_PRESIGN_TTL_S": "0"})
    with pytest.raises(ConfigError, match=r"storage\.endpoint"):
        load_settings(env={"IVR_BRIDGE_STORAGE_ENDPOINT": "storage.yandexcloud.net"})
