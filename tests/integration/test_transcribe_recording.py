"""A recorded call end to end: recording -> upload (local S3) -> asynchronous recognition ->
``transcript_ready``, with the words of the streaming finals of the same call."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import soundfile

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge.clock import ScaledClock
from ivr_bridge.config import RecordingSettings
from ivr_bridge.local.tones import synthesize_script
from ivr_bridge.simulate import simulate_pcm
from tests.integration.conftest import local_settings
from tests.integration.test_continuity import PAUSE_MS, script
from tests.transcribe.s3 import s3_settings  # noqa: F401  (fixture)


async def wait_for(got: Any, kind: str, timeout: float = 60) -> Any:
    async def seen() -> Any:
        while True:
            found = [e for e in got.events if e.type == kind]
            if found:
                return found[0]
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(seen(), timeout)


async def test_recorded_call_gets_a_transcript_matching_its_finals(
    bridge: Any,
    tmp_path: Path,
    s3_settings: Any,  # noqa: F811
) -> None:
    clock = ScaledClock(speed=20)
    settings = replace(
        local_settings("tones"),
        recording=RecordingSettings(enabled=True, directory=str(tmp_path / "rec")),
        storage=s3_settings,
    )
    utterances = script(6)
    pcm = synthesize_script(utterances, pause_ms=PAUSE_MS)
    app, got = await bridge(clock=clock, settings=settings)
    # (Holds are silence in the recording too: tests/transcribe/test_recording.py. Not here:
    # the tones engine reads 10 ms frames, and a hold of a fractional frame shifts them.)
    await simulate_pcm(app.url(), pcm, clock=clock, tracks="both")
    await got.wait_ended(1, timeout=60)
    ready = await wait_for(got, "transcript_ready")
    (call_id,) = got.calls()
    ended = got.of(call_id, "call_ended")[0]
    assert ready.call_id == call_id and ready.seq > ended.seq
    recording = ready.data["recording"]
    assert recording["channels"] == ["caller", "agent"]
    assert recording["uri"].startswith(s3_settings.endpoint + "/ivr-test/calls/")
    info = soundfile.info(recording["path"])
    assert (info.channels, info.samplerate) == (2, 8000)
    # On the ledger's timeline: the audio and the simulator's trailing second of silence.
    assert len(pcm) // 16 + 900 <= info.frames / 8 <= ended.data["duration_ms"]
    streamed = [
        w["text"]
        for e in got.of(call_id, "final")
        if e.channel == "caller"
        for w in e.data["words"]
    ]
    caller = ready.data["channels"]["caller"]
    recognized = [w["text"] for p in caller["phrases"] for w in p["words"]]
    assert recognized == streamed == [w for u in utterances for w in u]
    assert ready.data["channels"]["agent"]["text"] == ""
    # Word times are call times in both.
    stream_times = [
        w["start_ms"]
        for e in got.of(call_id, "final")
        if e.channel == "caller"
        for w in e.data["words"]
    ]
    file_times = [w["start_ms"] for p in caller["phrases"] for w in p["words"]]
    assert all(abs(a - b) <= 40 for a, b in zip(stream_times, file_times, strict=True))
    assert not list((tmp_path / "rec").glob(".*.raw"))  # the per-channel parts are gone


async def test_recording_is_finished_when_the_pbx_breaks_the_protocol(
    bridge: Any, tmp_path: Path
) -> None:
    """A call cut by a protocol error still leaves a complete recording."""
    import json

    from websockets.asyncio.client import connect

    from ivr_bridge.audio.codecs import pcm16_to_ulaw
    from ivr_bridge.simulators.twilio import TwilioStreamEncoder

    settings = replace(
        local_settings("tones"),
        recording=RecordingSettings(
            enabled=True, directory=str(tmp_path / "rec"), transcribe=False
        ),
    )
    app, got = await bridge(settings=settings)
    pcm = synthesize_script(script(1))
    enc = TwilioStreamEncoder()
    async with connect(app.url(), compression=None) as ws:
        await ws.send(enc.connected())
        await ws.send(enc.start())
        for frame in enc.media_frames(pcm16_to_ulaw(pcm)):
            await ws.send(frame)
        await ws.send(json.dumps({"event": "media", "media": "not an object"}))
        await ws.wait_closed()
    await got.wait_ended(1, timeout=30)
    ready = await wait_for(got, "recording_ready")
    ended = got.of(ready.call_id, "call_ended")[0]
    assert ended.data["reason"] == "protocol_error"
    info = soundfile.info(ready.data["recording"]["path"])
    assert info.channels == 1
    assert info.frames >= len(pcm) // 2  # every frame the PBX sent before the error
