"""Both streaming transports (``speechkit.transport``: the bridge's own HTTP/2 client, or
grpc.aio) carry a whole call, on both SpeechKit APIs, with exact transcripts.

Real sockets on loopback port 0, the embedded recognizer with the ``tones`` engine.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge.config import load_settings
from ivr_bridge.local.tones import synthesize_script
from ivr_bridge.recognition.grpc_transport import SpeechKitClient
from ivr_bridge.simulate import simulate_pcm
from tests.integration.conftest import local_settings
from tests.integration.test_continuity import finals_text, script

UTTERANCES = script(4)
CALL = synthesize_script(UTTERANCES)


@pytest.mark.parametrize("api", ["v3", "v2"])
@pytest.mark.parametrize("transport", ["h2", "grpc"])
async def test_a_call_on_either_transport(bridge: Any, transport: str, api: str) -> None:
    settings = local_settings("tones")
    settings = replace(
        settings, speechkit=replace(settings.speechkit, api=api, transport=transport)
    )
    app, got = await bridge(settings=settings)
    assert isinstance(app.recognizer, SpeechKitClient)
    assert app.recognizer.transport == transport
    await simulate_pcm(app.url(), CALL, fast=True)
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    assert finals_text(got, call_id) == [" ".join(u) for u in UTTERANCES]
    ended = got.of(call_id, "call_ended")[0].data
    assert ended["errors"] == 0 and ended["sessions_opened"] == 1
    assert app.recognizer.connectivity() == "READY"


def test_transport_settings_are_read(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[speechkit]\ntransport = 'grpc'\nwrite_coalesce_ms = 0\n")
    settings = load_settings(cfg, env={})
    assert (settings.speechkit.transport, settings.speechkit.write_coalesce_ms) == ("grpc", 0)
    assert load_settings(None, env={}).speechkit.transport == "h2"
