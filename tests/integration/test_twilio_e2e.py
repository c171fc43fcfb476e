"""A Twilio call end to end: simulator -> websocket -> bridge -> embedded recognizer -> events.

Real sockets on loopback port 0, the real embedded recognizer, no mocks.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge.clock import ScaledClock
from ivr_bridge.local.tones import synthesize_script
from ivr_bridge.model import EVENT_SCHEMA
from ivr_bridge.recognition.policy import PolicyConfig
from ivr_bridge.simulate import simulate_call, simulate_pcm
from ivr_bridge.wer import word_error_rate
from tests.integration.conftest import SAMPLE
from tests.integration.test_continuity import script
from tests.markers import realtime

# Measured on the bundled sample; the README reports it. A regression guard, not a target.
SAMPLE_WER_LIMIT = 0.30

# Keepalive, both tracks, a bad neighbour, sinks and metrics do not depend on what is said:
# those calls speak the "tones" engine's words (exact, and a fraction of PocketSphinx's CPU),
# three utterances, a place for a gap, and three more. The sample itself is decoded above.
TONES_BEFORE, TONES_AFTER = script(3), script(3, offset=3)
TONE_CALL = synthesize_script(TONES_BEFORE + TONES_AFTER)
TONE_GAP_AT_S = len(synthesize_script(TONES_BEFORE)) / 16000


async def test_sample_call_is_transcribed_end_to_end(bridge: Any) -> None:
    app, got = await bridge()
    report = await simulate_call(app.url(), SAMPLE, fast=True)
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    events = got.of(call_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == "call_started" and events[-1].type == "call_ended"
    started = events[0].data
    assert started["dialect"] == "twilio"
    assert started["metadata"]["call_sid"].startswith("CA")
    assert [c["name"] for c in started["channels"]] == ["caller"]
    finals = got.of(call_id, "final")
    assert len(finals) >= 3
    for f in finals:
        words = f.data["words"]
        assert words and f.data["start_ms"] <= f.data["end_ms"]
        assert [w["start_ms"] for w in words] == sorted(w["start_ms"] for w in words)
    kinds = [e.type for e in events]
    assert kinds.count("speech_started") == kinds.count("eou") >= 3
    ended = events[-1].data
    assert ended["reason"] == "stop"
    assert ended["sessions_opened"] == 1 and ended["errors"] == 0
    assert abs(ended["audio_ms_received"] - report.audio_ms) <= 20
    assert ended["audio_ms_sent"] == ended["audio_ms_received"]
    reference = SAMPLE.with_suffix(".txt").read_text()
    hypothesis = " ".join(f.data["text"] for f in finals)
    wer = word_error_rate(reference, hypothesis)
    print(f"embedded engine WER on the sample: {wer.wer:.3f} ({wer})")
    assert wer.wer <= SAMPLE_WER_LIMIT
    for e in events:
        j = e.to_json()
        assert j["schema"] == EVENT_SCHEMA and j["call_id"] == call_id
        json.dumps(j)


@realtime
async def test_sixty_second_gap_is_bridged_by_keepalive(bridge: Any) -> None:
    clock = ScaledClock(speed=10)
    policy = PolicyConfig(stall_timeout_s=120)  # the engine may lag behind 10x time
    app, got = await bridge(engine="tones", clock=clock, policy=policy)
    await simulate_pcm(app.url(), TONE_CALL, clock=clock, gap_at_s=TONE_GAP_AT_S, gap_s=60.0)
    await got.wait_ended(1, timeout=90)
    (call_id,) = got.calls()
    ended = got.of(call_id, "call_ended")[0].data
    assert ended["sessions_opened"] == 1
    assert ended["errors"] == 0
    assert ended["keepalive_ms"] >= 55_000
    finals = got.of(call_id, "final")
    assert any(f.data["start_ms"] > 60_000 for f in finals), "speech after the gap recognized"
    assert app.embedded is not None


@realtime
async def test_without_keepalive_the_recognizer_ends_the_session(bridge: Any) -> None:
    clock = ScaledClock(speed=10)
    policy = PolicyConfig(keepalive=False, stall_timeout_s=120, backoff_initial_s=0.1)
    app, got = await bridge(engine="tones", clock=clock, policy=policy)
    await simulate_pcm(app.url(), TONE_CALL, clock=clock, gap_at_s=TONE_GAP_AT_S, gap_s=20.0)
    await got.wait_ended(1, timeout=90)
    (call_id,) = got.calls()
    degraded = got.of(call_id, "recognition_degraded")
    assert degraded and degraded[0].data["status"] == "DEADLINE_EXCEEDED"
    ended = got.of(call_id, "call_ended")[0].data
    assert ended["sessions_opened"] >= 2
    assert ended["keepalive_ms"] == 0


async def test_both_tracks_get_a_session_each(bridge: Any) -> None:
    app, got = await bridge(engine="tones")
    await simulate_pcm(app.url(), TONE_CALL, fast=True, tracks="both")
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    started = got.of(call_id, "call_started")[0].data
    assert [c["name"] for c in started["channels"]] == ["caller", "agent"]
    ended = got.of(call_id, "call_ended")[0].data
    assert ended["sessions_opened"] == 2
    assert set(ended["channels"]) == {"caller", "agent"}
    assert any(e.channel == "caller" for e in got.of(call_id, "final"))


async def test_malformed_call_is_closed_and_others_continue(bridge: Any) -> None:
    app, got = await bridge(engine="tones")
    good = asyncio.create_task(simulate_pcm(app.url(), TONE_CALL, fast=True))
    async with connect(app.url(), compression=None) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send("{not json")
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(10):
                await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1007
    await good
    await got.wait_ended(1, timeout=60)
    ended = [e for e in got.events if e.type == "call_ended"]
    assert len(ended) == 1 and ended[0].data["reason"] == "stop"
    assert got.of(ended[0].call_id, "final")


async def test_health_and_unknown_paths(bridge: Any) -> None:
    app, _ = await bridge(engine="tones")
    base = f"http://127.0.0.1:{app.port}"

    def get(path: str) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    status, body = await asyncio.to_thread(get, "/healthz")
    assert status == 200 and body["status"] == "ok" and body["recognizer"] == "embedded"
    status, _ = await asyncio.to_thread(get, "/nope")
    assert status == 404


async def test_events_jsonl_file(bridge: Any, tmp_path: Path) -> None:
    from dataclasses import replace

    from tests.integration.conftest import local_settings

    settings = local_settings("tones")
    out = tmp_path / "events.jsonl"
    settings = replace(settings, events=replace(settings.events, jsonl=str(out)))
    app, got = await bridge(settings=settings)
    await simulate_pcm(app.url(), TONE_CALL, fast=True)
    await got.wait_ended(1, timeout=60)
    await app.stop()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["type"] == "call_started" and lines[-1]["type"] == "call_ended"
    assert len(lines) == len(got.events)


async def test_webhook_receives_every_event_in_order(bridge: Any) -> None:
    """A real HTTP server on loopback; the first two POSTs fail with 503 and are retried."""
    from dataclasses import replace

    from tests.integration.conftest import local_settings

    received: list[dict[str, Any]] = []
    attempts = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            body = await reader.readexactly(length)
            attempts += 1
            if attempts <= 2:
                writer.write(b"HTTP/1.1 503 Busy\r\nretry-after: 0\r\ncontent-length: 0\r\n\r\n")
            else:
                received.append(json.loads(body))
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = local_settings("tones")
    settings = replace(
        settings, events=replace(settings.events, webhook=f"http://127.0.0.1:{port}/hook")
    )
    app, got = await bridge(settings=settings)
    await simulate_pcm(app.url(), TONE_CALL, fast=True)
    await got.wait_ended(1, timeout=60)
    await app.stop()
    server.close()
    assert [e["seq"] for e in received] == [e.seq for e in got.events]
    assert received[-1]["type"] == "call_ended"


async def test_metrics_count_ended_calls(bridge: Any) -> None:
    app, got = await bridge(engine="tones")
    report = await simulate_pcm(app.url(), TONE_CALL, fast=True)
    await got.wait_ended(1, timeout=60)

    def get() -> str:
        url = f"http://127.0.0.1:{app.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            body: bytes = resp.read()
            return body.decode()

    text = await asyncio.to_thread(get)
    values = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert values["ivr_bridge_calls_started_total"] == "1"
    assert values['ivr_bridge_calls_ended_total{reason="stop"}'] == "1"
    received = int(values["ivr_bridge_audio_ms_received_total"])
    assert abs(received - report.audio_ms) <= 20
    assert values["ivr_bridge_audio_ms_dropped_total"] == "0"
    assert values['ivr_bridge_sink_events_dropped_queue_full_total{sink="callback"}'] == "0"


async def test_text_normalization_gives_final_refinements(bridge: Any) -> None:
    from dataclasses import replace

    from tests.integration.conftest import local_settings

    settings = local_settings("tones")
    settings = replace(settings, speechkit=replace(settings.speechkit, text_normalization=True))
    app, got = await bridge(settings=settings)
    # Number words to normalize (the sample's own, on PocketSphinx: tests/local).
    spoken = [["account", "four", "two"], ["payment", "seven"], ["help", "agent"]]
    await simulate_pcm(app.url(), synthesize_script(spoken), fast=True)
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    finals = {e.data["final_index"]: e for e in got.of(call_id, "final")}
    refinements = got.of(call_id, "final_refinement")
    assert len(refinements) == len(finals) >= 3
    for ref in refinements:
        assert ref.data["final_index"] in finals
        assert ref.seq > finals[ref.data["final_index"]].seq
    assert any(any(ch.isdigit() for ch in r.data["text"]) for r in refinements)


async def test_signature_is_checked_against_the_public_url(bridge: Any) -> None:
    """Behind TLS termination Twilio signs the public wss:// URL, not what the bridge sees."""
    from dataclasses import replace

    from twilio.request_validator import RequestValidator
    from websockets.exceptions import InvalidStatus

    from ivr_bridge.dialects.base import DialectSettings
    from tests.integration.conftest import local_settings

    token = "public-url-token"
    settings = local_settings("tones")
    settings = replace(
        settings,
        server=replace(settings.server, public_url="wss://ivr.example.com"),
        dialects={"twilio": DialectSettings(auth="signature", secrets={"auth_token": token})},
    )
    app, got = await bridge(settings=settings)
    public = RequestValidator(token).compute_signature("wss://ivr.example.com/twilio", {})
    async with connect(app.url(), additional_headers={"X-Twilio-Signature": public}) as ws:
        await ws.close()
    local = RequestValidator(token).compute_signature(app.url(), {})
    with pytest.raises(InvalidStatus) as info:
        async with connect(app.url(), additional_headers={"X-Twilio-Signature": local}):
            pass
    assert info.value.response.status_code == 403
    assert got.events == []
