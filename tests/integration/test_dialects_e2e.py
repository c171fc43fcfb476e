"""Every Twilio-family dialect end to end, authenticated: its simulator -> the bridge -> the
embedded recognizer (tones engine: exact transcripts) -> events. One also plays the sample."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge.dialects.base import DialectSettings
from ivr_bridge.local.tones import VOCABULARY, synthesize_script
from ivr_bridge.simulate import simulate_call, simulate_pcm
from ivr_bridge.simulators.base import ClientAuth
from ivr_bridge.wer import word_error_rate
from tests.integration.conftest import SAMPLE, local_settings

SECRET = "e2e-secret-77"
AUTH = {
    "twilio": ("signature", {"auth_token": SECRET}),
    "signalwire": ("token", {"token": SECRET}),
    "telnyx": ("token", {"token": SECRET}),
    "plivo": ("token", {"token": SECRET}),
    "exotel": ("basic", {"username": "key", "password": SECRET}),
}
RATES = {"twilio": 8000, "signalwire": 16000, "telnyx": 8000, "plivo": 8000, "exotel": 8000}


def authenticated(engine: str) -> Any:
    settings = local_settings(engine)
    dialects = {
        name: DialectSettings(auth=scheme, secrets=secrets)
        for name, (scheme, secrets) in AUTH.items()
    }
    return replace(settings, dialects=dialects)


@pytest.mark.parametrize("dialect", sorted(AUTH))
async def test_dialect_end_to_end_with_exact_words(bridge: Any, dialect: str) -> None:
    app, got = await bridge(engine="tones", settings=authenticated("tones"))
    utterances = [
        [VOCABULARY[(i * 7 + j * 3) % len(VOCABULARY)] for j in range(3)] for i in range(3)
    ]
    pcm = synthesize_script(utterances, pause_ms=1200)
    scheme, secrets = AUTH[dialect]
    report = await simulate_pcm(
        app.url(f"/{dialect}"),
        pcm,
        fast=True,
        dialect=dialect,
        auth=ClientAuth(scheme, secrets),
        dtmf=[(0.5, "4")],
    )
    assert report.close_code == 1000, report.close_reason
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    started = got.of(call_id, "call_started")[0].data
    assert started["dialect"] == dialect and started["sample_rate"] == RATES[dialect]
    assert [str(e.data["text"]) for e in got.of(call_id, "final")] == [
        " ".join(u) for u in utterances
    ]
    assert [e.data["digit"] for e in got.of(call_id, "dtmf")] == ["4"]
    ended = got.of(call_id, "call_ended")[0].data
    assert ended["errors"] == 0 and ended["sessions_opened"] == 1


async def test_unauthenticated_call_is_refused_before_recognition(bridge: Any) -> None:
    app, got = await bridge(engine="tones", settings=authenticated("tones"))
    with pytest.raises(Exception) as info:
        await simulate_pcm(app.url("/telnyx"), b"\x00" * 3200, fast=True, dialect="telnyx")
    assert "401" in str(info.value)
    assert app.server is not None and app.server.metrics.upgrades_refused == {
        ("telnyx", "token required"): 1
    }
    assert got.events == []


async def test_sample_call_over_plivo(bridge: Any) -> None:
    app, got = await bridge()
    await simulate_call(app.url("/plivo"), SAMPLE, fast=True, dialect="plivo")
    await got.wait_ended(1, timeout=90)
    (call_id,) = got.calls()
    finals = " ".join(str(e.data["text"]) for e in got.of(call_id, "final"))
    wer = word_error_rate(SAMPLE.with_suffix(".txt").read_text(encoding="utf-8"), finals)
    assert wer.wer <= 0.30, wer
