"""The bundled sample call through every dialect: simulator -> bridge -> PocketSphinx.

Each platform's encoder (``ivr-bridge simulate --dialect NAME``) authenticates as that
platform does and sends the sample in fast mode to one bridge shared by the module (AudioSocket
on the bridge's TCP port, sent at once: it has no simulator mode of its own); the words
must come back with WER <= 30%. To keep ten PocketSphinx decodes quick, each plays the first
three utterances of the sample (13 s of 25 s, cut in the pause before the fourth, per
sample_call.json; the whole sample goes through Plivo in test_dialects_e2e.py and AudioHook in
test_audiohook_e2e.py), all into one bridge started once, two calls at a time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from ivr_bridge.app import BridgeApp
from ivr_bridge.audio.wav import read_wav
from ivr_bridge.dialects.audiosocket_client import AudioSocketClient
from ivr_bridge.events.console import CallbackSink
from ivr_bridge.model import UtteranceEvent
from ivr_bridge.simulate import simulate_pcm
from ivr_bridge.simulators.base import ClientAuth
from ivr_bridge.wer import word_error_rate
from tests.integration.conftest import SAMPLE, Collector
from tests.integration.test_audiosocket_e2e import send_call, with_audiosocket
from tests.integration.test_every_dialect_e2e import AUTH, authenticated
from tests.ports import free_tcp_port

# One process runs the whole module: its tests read one module-wide run of every dialect.
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("every_dialect")]

UTTERANCES = 3
CUT_S = 13.0  # between the third utterance's end (12.26 s) and the fourth's start (13.76 s)


def sample_excerpt() -> tuple[bytes, str]:
    """The sample's first UTTERANCES utterances as PCM16 8 kHz, and their reference text."""
    meta = json.loads(SAMPLE.with_suffix(".json").read_text(encoding="utf-8"))
    spoken = meta["utterances"][:UTTERANCES]
    assert spoken[-1]["end_s"] < CUT_S < meta["utterances"][UTTERANCES]["start_s"]
    pcm = read_wav(SAMPLE, 8000)[: int(CUT_S * 8000) * 2]
    return pcm, " ".join(u["text"] for u in spoken)


@dataclass
class Played:
    """One dialect's run of the excerpt: how the socket ended and what the bridge emitted."""

    close_code: int | None
    events: list[UtteranceEvent]


async def _play(app: BridgeApp, got: Collector, dialect: str, pcm: bytes) -> Played:
    if dialect == "audiosocket":
        assert app.audiosocket is not None
        client = AudioSocketClient()
        trailing = bytes(8000 * 2)  # a second of line noise after the last word, as simulate adds
        frames = [*client.start_frames(), *client.audio_frames(pcm + trailing, 8000),
                  client.hangup()]  # fmt: skip
        await send_call(app.audiosocket.port, frames)
        close_code: int | None = 1000
    else:
        report = await simulate_pcm(
            app.url(f"/{dialect}"),
            pcm,
            sample_rate=8000,
            fast=True,
            dialect=dialect,
            auth=ClientAuth(*AUTH[dialect]),
            dtmf=[(1.0, "7")],
        )
        close_code = report.close_code
    started = [e for e in got.events if e.type == "call_started" and e.data["dialect"] == dialect]
    call_id = started[0].call_id if started else ""
    while call_id and not got.of(call_id, "call_ended"):
        await asyncio.sleep(0.05)
    return Played(close_code, got.of(call_id))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def played() -> AsyncIterator[dict[str, Played]]:
    """Every dialect plays the excerpt into one bridge, two calls at a time (the recognizer
    has a worker per core), before the per-dialect checks below read the results."""
    collector = Collector()
    settings = with_audiosocket(authenticated("pocketsphinx"), free_tcp_port())
    app = BridgeApp(settings, sinks=[CallbackSink(collector)])
    await app.start()
    pcm, _ = sample_excerpt()
    two_at_a_time = asyncio.Semaphore(2)

    async def one(dialect: str) -> Played:
        async with two_at_a_time:
            return await asyncio.wait_for(_play(app, collector, dialect, pcm), 300)

    names = [*sorted(AUTH), "audiosocket"]
    try:
        results = await asyncio.gather(*(one(name) for name in names))
        yield dict(zip(names, results, strict=True))
    finally:
        await app.stop()


@pytest.mark.parametrize("dialect", [*sorted(AUTH), "audiosocket"])
async def test_sample_call_through_every_dialect(played: dict[str, Played], dialect: str) -> None:
    run = played[dialect]
    assert run.close_code == 1000
    kinds = [e.type for e in run.events]
    assert kinds[0] == "call_started" and kinds[-1] == "call_ended"
    assert run.events[0].data["dialect"] == dialect
    _, reference = sample_excerpt()
    heard = " ".join(str(e.data["text"]) for e in run.events if e.type == "final")
    wer = word_error_rate(reference, heard)
    print(f"{dialect}: WER {wer.wer:.3f}")
    assert wer.wer <= 0.30, (dialect, wer)
    if dialect != "audiosocket":  # its client sends no digit here
        assert [e.data["digit"] for e in run.events if e.type == "dtmf"] == ["7"]
    ended = run.events[-1].data
    assert ended["sessions_opened"] == 1 and ended["errors"] == 0
