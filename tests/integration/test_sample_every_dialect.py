"""The bundled sample call through every dialect: simulator -> bridge -> PocketSphinx.

Each platform's encoder (``ivr-bridge simulate --dialect NAME``) authenticates as that
platform does and sends the sample in fast mode to one bridge shared by the module (AudioSocket
on the bridge's TCP port, sent at once: it has no simulator mode of its own); the words
must come back with WER <= 30%. To keep ten PocketSphinx decodes quick, each plays the first
three utterances of the sample (13 s of 25 s, cut in the pause before the fourth, per
sample_call.json; the whole sample goes through Plivo in test_dialects_e2e.py and AudioHook in
test_audiohook_e2e.py); starting the recognizer's workers once per module helps too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ivr_bridge.app import BridgeApp
from ivr_bridge.audio.wav import read_wav
from ivr_bridge.dialects.audiosocket_client import AudioSocketClient
from ivr_bridge.events.console import CallbackSink
from ivr_bridge.simulate import simulate_pcm
from ivr_bridge.simulators.base import ClientAuth
from ivr_bridge.wer import word_error_rate
from tests.integration.conftest import SAMPLE, Collector
from tests.integration.test_audiosocket_e2e import free_tcp_port, send_call, with_audiosocket
from tests.integration.test_every_dialect_e2e import AUTH, authenticated

pytestmark = pytest.mark.asyncio(loop_scope="module")

UTTERANCES = 3
CUT_S = 13.0  # between the third utterance's end (12.26 s) and the fourth's start (13.76 s)


def sample_excerpt() -> tuple[bytes, str]:
    """The sample's first UTTERANCES utterances as PCM16 8 kHz, and their reference text."""
    meta = json.loads(SAMPLE.with_suffix(".json").read_text(encoding="utf-8"))
    spoken = meta["utterances"][:UTTERANCES]
    assert spoken[-1]["end_s"] < CUT_S < meta["utterances"][UTTERANCES]["start_s"]
    pcm = read_wav(SAMPLE, 8000)[: int(CUT_S * 8000) * 2]
    return pcm, " ".join(u["text"] for u in spoken)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared() -> AsyncIterator[tuple[BridgeApp, Collector]]:
    collector = Collector()
    settings = with_audiosocket(authenticated("pocketsphinx"), free_tcp_port())
    app = BridgeApp(settings, sinks=[CallbackSink(collector)])
    await app.start()
    yield app, collector
    await app.stop()


@pytest.mark.parametrize("dialect", sorted(AUTH))
async def test_sample_call_through_every_dialect(
    shared: tuple[BridgeApp, Collector], dialect: str
) -> None:
    app, got = shared
    scheme, secrets = AUTH[dialect]
    ended_before = len([e for e in got.events if e.type == "call_ended"])
    pcm, reference = sample_excerpt()
    report = await simulate_pcm(
        app.url(f"/{dialect}"),
        pcm,
        sample_rate=8000,
        fast=True,
        dialect=dialect,
        auth=ClientAuth(scheme, secrets),
        dtmf=[(1.0, "7")],
    )
    assert report.close_code == 1000, report.close_reason
    await got.wait_ended(ended_before + 1, timeout=180)
    (call_id,) = [
        e.call_id for e in got.events if e.type == "call_started" and e.data["dialect"] == dialect
    ]
    heard = " ".join(str(e.data["text"]) for e in got.of(call_id, "final"))
    wer = word_error_rate(reference, heard)
    print(f"{dialect}: WER {wer.wer:.3f}")
    assert wer.wer <= 0.30, (dialect, wer)
    assert [e.data["digit"] for e in got.of(call_id, "dtmf")] == ["7"]
    ended = got.of(call_id, "call_ended")[0].data
    assert ended["sessions_opened"] == 1 and ended["errors"] == 0


async def test_sample_call_over_audiosocket(shared: tuple[BridgeApp, Collector]) -> None:
    """Asterisk's AudioSocket, on the bridge's own TCP port (no upgrade, no auth)."""
    app, got = shared
    assert app.audiosocket is not None
    ended_before = len([e for e in got.events if e.type == "call_ended"])
    pcm, reference = sample_excerpt()
    client = AudioSocketClient()
    trailing = bytes(8000 * 2)  # a second of line noise after the last word, as simulate adds
    frames = [*client.start_frames(), *client.audio_frames(pcm + trailing, 8000), client.hangup()]
    await send_call(app.audiosocket.port, frames)
    await got.wait_ended(ended_before + 1, timeout=180)
    (call_id,) = [
        e.call_id
        for e in got.events
        if e.type == "call_started" and e.data["dialect"] == "audiosocket"
    ]
    heard = " ".join(str(e.data["text"]) for e in got.of(call_id, "final"))
    wer = word_error_rate(reference, heard)
    print(f"audiosocket: WER {wer.wer:.3f}")
    assert wer.wer <= 0.30, wer
