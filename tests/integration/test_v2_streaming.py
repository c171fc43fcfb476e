"""The bridge on SpeechKit API v2 (``speechkit.api = "v2"``) against the embedded recognizer.

Real gRPC on loopback, the exact ``tones`` engine: a call long enough for a rotation, with
an outage in the middle and a hold, must give every scripted word exactly once.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge.clock import ScaledClock
from ivr_bridge.config import SpeechKitSettings
from ivr_bridge.local.faults import FaultPlan
from ivr_bridge.local.server import LocalLimits
from ivr_bridge.local.tones import synthesize_script
from ivr_bridge.recognition.policy import PolicyConfig
from ivr_bridge.recognition.speechkit_v2 import SpeechKitV2Recognizer
from ivr_bridge.simulate import simulate_pcm
from tests.integration.conftest import local_settings
from tests.integration.test_continuity import PAUSE_MS, accounting_holds, finals_text, script
from tests.markers import realtime

pytestmark = realtime


def v2_settings() -> Any:
    s = local_settings("tones")
    return replace(s, speechkit=SpeechKitSettings(api="v2", languages=("en-US",)))


async def test_v2_call_with_rotation_and_outage_hears_every_word_once(bridge: Any) -> None:
    # 5x, not more: on a loaded machine, results that lag the audio keep utterances open
    # (forced rotations, cut words) and delays look like PBX silence (keepalive mid-word).
    clock = ScaledClock(speed=5)
    utterances = script(24)  # about 44 s of call
    pcm = synthesize_script(utterances, pause_ms=PAUSE_MS)
    # Sessions of at most 18 s of audio: the bridge must rotate at pauses before that.
    policy = PolicyConfig(rotate_soft_ms=9_000, rotate_hard_ms=16_000)
    # The 5 s idle rule is the hold test's subject; here, at 20x, a loaded machine's
    # scheduling delays must not turn into idle timeouts (and replays) of their own.
    limits = LocalLimits(max_audio_ms=18_000, idle_timeout_s=20)
    app, got = await bridge(clock=clock, policy=policy, limits=limits, settings=v2_settings())
    assert isinstance(app.recognizer, SpeechKitV2Recognizer)
    assert app.embedded is not None
    embedded = app.embedded

    async def outage() -> None:
        await clock.sleep(20)
        embedded.outage(3)

    chaos = asyncio.create_task(outage())
    await simulate_pcm(app.url(), pcm, clock=clock, close_timeout_s=600)
    await chaos
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    assert finals_text(got, call_id) == [" ".join(u) for u in utterances]
    ended = got.of(call_id, "call_ended")[0].data
    assert ended["channels"]["caller"]["rotations"] >= 2
    assert len(got.of(call_id, "recognition_degraded")) == 1
    assert len(got.of(call_id, "recognition_restored")) == 1
    assert not got.of(call_id, "audio_gap")
    assert "OUT_OF_RANGE" not in embedded.stats.ended
    assert embedded.stats.ended.get("UNAVAILABLE", 0) >= 1
    accounting_holds(ended)


async def test_v2_hold_is_kept_alive_with_zero_pcm(bridge: Any) -> None:
    """A 30 s hold: the v2 session gets zero LPCM (no silence message in v2) and survives."""
    clock = ScaledClock(speed=20)
    utterances = script(4)
    pcm = synthesize_script(utterances, pause_ms=PAUSE_MS)
    split = len(synthesize_script(utterances[:2], pause_ms=PAUSE_MS)) / 16000
    app, got = await bridge(clock=clock, settings=v2_settings())
    await simulate_pcm(app.url(), pcm, clock=clock, gap_at_s=split, gap_s=30)
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    ended = got.of(call_id, "call_ended")[0].data
    assert ended["sessions_opened"] == 1 and ended["errors"] == 0
    assert ended["keepalive_ms"] >= 28_000
    assert ended["channels"]["caller"]["stalls"] == 0
    assert finals_text(got, call_id) == [" ".join(u) for u in utterances]
    assert app.embedded is not None and app.embedded.stats.ended == {"OK": 1}
    # /healthz reports the v2 channel like the v3 one.
    assert app.recognizer is not None and app.recognizer.connectivity() == "READY"


async def test_v2_server_that_goes_mute_during_speech_is_a_stall(bridge: Any) -> None:
    """Self-reported liveness covers silence only: a mute server during speech is detected."""
    clock = ScaledClock(speed=10)
    utterances = script(20)
    app, got = await bridge(
        clock=clock,
        settings=v2_settings(),
        faults=FaultPlan(stall_after_ms=15_000, sessions=frozenset({1})),
    )
    await simulate_pcm(app.url(), synthesize_script(utterances), clock=clock, close_timeout_s=600)
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    assert finals_text(got, call_id) == [" ".join(u) for u in utterances]
    ended = got.of(call_id, "call_ended")[0].data
    assert ended["channels"]["caller"]["stalls"] == 1
    assert ended["sessions_opened"] == 2
