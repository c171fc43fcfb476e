"""AudioHook end to end: client encoder -> websocket -> bridge -> embedded recognizer -> events.

Real sockets on loopback port 0, the real embedded recognizer, no mocks. The bridge serves
/audiohook from the dialect registry with auth "none" (the default); the signed upgrade goes
end to end in test_every_dialect_e2e.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge.audio.wav import read_wav
from ivr_bridge.dialects.audiohook_client import (
    AudioHookClient,
    Expect,
    Send,
    Step,
    session_plan,
)
from ivr_bridge.local.tones import synthesize_script
from ivr_bridge.wer import word_error_rate
from tests.integration.conftest import SAMPLE

CALLER = [["hello", "account", "balance"], ["payment", "order", "card"], ["yes", "thanks"]]
AGENT = [["help", "agent"], ["one", "two", "three"], ["goodbye"]]
PAUSE_MS = 1200


async def play(url: str, client: AudioHookClient, steps: Iterable[Step]) -> None:
    """Run a session plan as fast as the socket allows, answering the bridge like Genesys."""
    async with connect(url, max_size=2**20, compression=None) as ws:
        for step in steps:
            if isinstance(step, Send):
                await ws.send(step.frame)
            elif isinstance(step, Expect):
                await _until(ws, client, step.type)
            else:
                await asyncio.sleep(0)
        await _drain(ws, client)


async def _until(ws: ClientConnection, client: AudioHookClient, kind: str) -> None:
    while not any(m.type == kind for m in client.state.received):
        message = await asyncio.wait_for(ws.recv(), 30)
        await _feed(ws, client, message)


async def _feed(ws: ClientConnection, client: AudioHookClient, message: str | bytes) -> None:
    if isinstance(message, str):
        client.receive(message)
    else:
        client.receive_bytes(message)
    for answer in client.data_to_send():
        await ws.send(answer)


async def _drain(ws: ClientConnection, client: AudioHookClient) -> None:
    """After ``closed`` the session is over: read until the socket closes."""
    try:
        while True:
            await _feed(ws, client, await asyncio.wait_for(ws.recv(), 30))
    except ConnectionClosed:
        return


def finals(got: Any, call_id: str, channel: str) -> list[str]:
    return [e.data["text"] for e in got.of(call_id, "final") if e.channel == channel]


async def test_stereo_call_with_a_hold_is_transcribed_per_channel(bridge: Any) -> None:
    app, got = await bridge(engine="tones")
    caller, agent = synthesize_script(CALLER), synthesize_script(AGENT)
    length = max(len(caller), len(agent))
    caller, agent = caller.ljust(length, b"\0"), agent.ljust(length, b"\0")
    client = AudioHookClient(
        participant={"ani": "+15550100", "dnis": "+15550199"},
        custom_config={"queue": "billing"},
    )
    # The hold falls in the silence after the first utterances (both sides are quiet then).
    plan = session_plan(client, caller, agent, pause_at_ms=1400, pause_ms=PAUSE_MS)
    await play(app.url("/audiohook"), client, plan)
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    started = got.of(call_id, "call_started")[0].data
    assert started["dialect"] == "audiohook"
    assert started["platform_call_id"] == client.conversation_id
    assert [c["name"] for c in started["channels"]] == ["caller", "agent"]
    assert started["metadata"]["ani"] == "+15550100"
    assert started["custom_parameters"] == {"queue": "billing"}
    assert finals(got, call_id, "caller") == [" ".join(u) for u in CALLER]
    assert finals(got, call_id, "agent") == [" ".join(u) for u in AGENT]
    assert [e.type for e in got.of(call_id) if e.type in ("paused", "resumed")] == [
        "paused",
        "resumed",
    ]
    ended = got.of(call_id, "call_ended")[0].data
    assert ended["reason"] == "end"
    assert ended["sessions_opened"] == 2 and ended["errors"] == 0
    assert client.state.closed and client.state.media[0]["channels"] == ["external", "internal"]


async def test_connection_probe_opens_no_recognition(bridge: Any) -> None:
    app, got = await bridge(engine="tones")
    client = AudioHookClient(probe=True)
    await play(app.url("/audiohook"), client, session_plan(client, b""))
    assert client.state.opened and client.state.media == [] and client.state.closed
    assert app.embedded is not None
    await asyncio.sleep(0.1)  # anything the bridge might still do would show up by now
    assert app.embedded.stats.sessions_opened == 0
    assert [e.type for e in got.events] == []


async def test_sample_call_on_the_external_channel(bridge: Any) -> None:
    app, got = await bridge()
    pcm = read_wav(SAMPLE, 8000)
    client = AudioHookClient(offers=[["external"]])
    await play(app.url("/audiohook"), client, session_plan(client, pcm))
    await got.wait_ended(1, timeout=90)
    (call_id,) = got.calls()
    heard = " ".join(finals(got, call_id, "caller"))
    wer = word_error_rate(SAMPLE.with_suffix(".txt").read_text(), heard)
    print(f"embedded engine WER on the sample over AudioHook: {wer.wer:.3f}")
    assert wer.wer <= 0.30
    ended = got.of(call_id, "call_ended")[0].data
    assert ended["sessions_opened"] == 1 and ended["errors"] == 0
    assert abs(ended["audio_ms_received"] - len(pcm) // 16) <= 200
