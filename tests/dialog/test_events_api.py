"""GET /events on a real bridge (tones engine, loopback): auth, filters, resume by seq,
commands with acks and clear errors, and ``ivr-bridge events`` tailing it."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from ivr_bridge.app import BridgeApp
from ivr_bridge.audio.wav import pcm16_wav_bytes
from ivr_bridge.cli import _simulate, build_parser
from ivr_bridge.events_client import TailRefused, tail_events
from ivr_bridge.local.tones import synthesize_script
from ivr_bridge.simulate import simulate_pcm

from .conftest import READ_TOKEN, TOKEN, StartBridge

UTTERANCES = [["hello", "agent"], ["account", "balance"]]


def events_url(app: BridgeApp, query: str = "") -> str:
    return app.url("/events") + (f"?{query}" if query else "")


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def play_call(app: BridgeApp, *, fast: bool = True) -> None:
    pcm = synthesize_script(UTTERANCES)
    await simulate_pcm(app.url("/twilio"), pcm, fast=fast, dtmf=[(0.2, "4")])


async def read_until(ws: Any, kind: str, into: list[dict[str, Any]]) -> dict[str, Any]:
    async def loop() -> dict[str, Any]:
        while True:
            doc: dict[str, Any] = json.loads(await ws.recv())
            into.append(doc)
            if doc.get("type") == kind or doc.get("op") == kind:
                return doc

    return await asyncio.wait_for(loop(), 30)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X": "y"}])
async def test_no_or_a_wrong_token_is_401(tone_bridge: StartBridge, headers: Any) -> None:
    app = await tone_bridge()
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(events_url(app), additional_headers=headers):
            pass
    assert refused.value.response.status_code == 401


async def test_a_bad_filter_is_400_naming_it(tone_bridge: StartBridge) -> None:
    app = await tone_bridge()
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(
            events_url(app, "types=final,bogus"), additional_headers=auth()
        ):
            pass
    assert refused.value.response.status_code == 400
    assert b"bogus" in refused.value.response.body


async def test_all_calls_filtered_by_type_then_one_call_resumed_from_a_seq(
    tone_bridge: StartBridge,
) -> None:
    app = await tone_bridge()
    live: list[dict[str, Any]] = []
    async with websockets.connect(
        events_url(app, "types=final,call_ended"), additional_headers=auth(READ_TOKEN)
    ) as ws:
        await play_call(app)
        ended = await read_until(ws, "call_ended", live)
    assert [d["data"]["text"] for d in live if d["type"] == "final"] == [
        "hello agent",
        "account balance",
    ]
    assert {d["type"] for d in live} == {"final", "call_ended"}
    call_id = ended["call_id"]
    # The call has ended; a client that saw up to seq 3 reconnects and gets the rest, in order.
    rest: list[dict[str, Any]] = []
    async with websockets.connect(
        events_url(app, f"call_id={call_id}&after_seq=3"), additional_headers=auth()
    ) as ws:
        await read_until(ws, "call_ended", rest)
    seqs = [d["seq"] for d in rest]
    assert seqs == list(range(4, ended["seq"] + 1))
    assert all(d["call_id"] == call_id for d in rest)


async def test_a_small_ring_reports_the_gap_it_cannot_replay(tone_bridge: StartBridge) -> None:
    app = await tone_bridge(api_ring_size=3)
    got: list[dict[str, Any]] = []
    async with websockets.connect(
        events_url(app, "types=call_ended"), additional_headers=auth()
    ) as ws:
        await play_call(app)
        ended = await read_until(ws, "call_ended", got)
    got.clear()
    call_id = ended["call_id"]
    async with websockets.connect(
        events_url(app, f"call_id={call_id}&after_seq=1"), additional_headers=auth()
    ) as ws:
        gap = await read_until(ws, "gap", got)
        await read_until(ws, "call_ended", got)
    last = got[-1]["seq"]
    assert gap == {"op": "gap", "call_id": call_id, "after_seq": 1, "first_seq": last - 2}
    assert [d["seq"] for d in got[1:]] == [last - 2, last - 1, last]


async def test_commands_are_acked_or_refused_with_a_reason(tone_bridge: StartBridge) -> None:
    app = await tone_bridge()
    seen: list[dict[str, Any]] = []
    async with websockets.connect(
        events_url(app, "types=call_started,call_ended"), additional_headers=auth()
    ) as ws:
        call = asyncio.create_task(play_call(app, fast=False))
        started = await read_until(ws, "call_started", seen)
        call_id = started["call_id"]
        pcm = base64.b64encode(bytes(1600)).decode()
        commands: list[dict[str, Any]] = [
            {"op": "command", "id": "1", "call_id": call_id,
             "command": {"type": "mark", "name": "m"}},
            {"op": "command", "id": "2", "call_id": call_id,
             "command": {"type": "play", "pcm16_b64": pcm, "sample_rate": 8000}},
            {"op": "command", "id": "3", "call_id": call_id, "command": {"type": "clear"}},
            {"op": "command", "id": "4", "call_id": "call_nope", "command": {"type": "clear"}},
            {"op": "command", "id": "5", "call_id": call_id, "command": {"type": "dance"}},
            {"op": "command", "id": "6", "call_id": call_id,
             "command": {"type": "play", "pcm16_b64": "%%%"}},
            {"op": "subscribe", "id": "7"},
        ]  # fmt: skip
        for command in commands:
            await ws.send(json.dumps(command))
        replies: dict[str, dict[str, Any]] = {}
        while len(replies) < len(commands):
            doc = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if doc.get("op") in ("ack", "error"):
                replies[doc["id"]] = doc
        await ws.send("not json")
        bad = await read_until(ws, "error", seen)
        await ws.send(json.dumps({"op": "command", "id": "h", "call_id": call_id,
                                  "command": {"type": "hangup", "reason": "done"}}))  # fmt: skip
        await read_until(ws, "call_ended", seen)
        await call
    assert [replies[i]["op"] for i in "123"] == ["ack", "ack", "ack"]
    assert replies["4"]["error"] == "no such live call on this bridge"
    assert "type must be one of" in replies["5"]["error"]
    assert replies["6"]["error"] == "pcm16_b64 is not valid base64"
    assert replies["7"]["error"] == 'op must be "command"'
    assert bad["error"] == "not JSON"
    assert seen[-1]["data"]["reason"] == "disconnect"


async def test_a_read_only_token_may_not_command(tone_bridge: StartBridge) -> None:
    app = await tone_bridge()
    async with websockets.connect(events_url(app), additional_headers=auth(READ_TOKEN)) as ws:
        await ws.send(json.dumps({"op": "command", "id": 1, "call_id": "c", "command": {}}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert reply == {"op": "error", "id": 1, "error": "this token may only subscribe"}


async def test_ivr_bridge_events_tails_one_call_readably(tone_bridge: StartBridge) -> None:
    app = await tone_bridge()
    out = io.StringIO()
    call = asyncio.create_task(play_call(app, fast=False))
    ws_url = events_url(app)
    async with websockets.connect(ws_url + "?types=call_started", additional_headers=auth()) as ws:
        call_id = json.loads(await asyncio.wait_for(ws.recv(), 30))["call_id"]
    printed = await asyncio.wait_for(tail_events(ws_url, token=TOKEN, call_id=call_id, out=out), 60)
    await call
    lines = out.getvalue().splitlines()
    assert printed == len(lines)
    assert "call_started" in lines[0] and "dialect=twilio" in lines[0]
    assert any("'hello agent'" in line for line in lines)
    assert any("digit=4" in line for line in lines)
    assert "call_ended" in lines[-1]
    with pytest.raises(TailRefused, match="401"):
        await tail_events(ws_url, token="wrong", out=out)


async def test_the_simulator_prints_the_events_of_the_call_it_plays(
    tone_bridge: StartBridge, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = await tone_bridge()
    wav = tmp_path / "caller.wav"
    wav.write_bytes(pcm16_wav_bytes(synthesize_script(UTTERANCES), 8000))
    args = build_parser().parse_args(
        ["simulate", "--url", app.url("/twilio"), "--fast", str(wav),
         "--events-url", events_url(app), "--events-token", READ_TOKEN]
    )  # fmt: skip
    assert await _simulate(args) == 0
    lines = capsys.readouterr().out.splitlines()
    events = [line for line in lines if re.match(r"\d\d:\d\d\.\d{3} ", line)]  # not log lines
    assert "call_started" in events[0] and "call_ended" in events[-1]
    assert "'hello agent'" in "\n".join(events)
    assert any(line.startswith("simulated Twilio call") for line in lines)
