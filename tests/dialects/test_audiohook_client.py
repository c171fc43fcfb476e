"""The AudioHook client encoder (Genesys's side) against the dialect: signed upgrades, whole
sessions from ``session_plan``, the probe, the client's automatic answers and its checks."""

from __future__ import annotations

import json
import math
from array import array
from typing import Any

import pytest

from ivr_bridge.dialects.audiohook import AudioHookDialect, AudioHookFactory, AudioHookOptions
from ivr_bridge.dialects.audiohook_client import (
    AudioHookClient,
    AudioHookClientError,
    Expect,
    Send,
    session_plan,
)
from ivr_bridge.dialects.base import DialectSettings, Disconnect, SendEvent, UpgradeRequest
from ivr_bridge.model import Audio, CallEnded, CallStarted, Dtmf, MediaGap, Paused, Resumed

KEY = "api-key-1"
SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ=="
NOW = 1_700_000_000.0


def tone(seconds: float, period: float = 5.0) -> bytes:
    samples = int(seconds * 8000)
    return array("h", (int(9000 * math.sin(i / period)) for i in range(samples))).tobytes()


def connect(client: AudioHookClient, options: AudioHookOptions | None = None) -> AudioHookDialect:
    """A signed upgrade through the factory, as server.py would do it."""
    factory = AudioHookFactory(DialectSettings(auth="audiohook", secrets={KEY: SECRET}, options={}))
    headers = client.upgrade_headers(request_target="/audiohook", authority="bridge:8080", now=NOW)
    request = UpgradeRequest(path="/audiohook", headers={**headers, "host": "bridge:8080"}, now=NOW)
    dialect = factory.open(request)
    assert isinstance(dialect, AudioHookDialect)
    if options is not None:
        dialect.options = options
    return dialect


def run(client: AudioHookClient, dialect: AudioHookDialect, steps: Any) -> list[Any]:
    """A synchronous runner: what an I/O runner does, minus sockets and waiting."""
    events: list[Any] = []
    for step in steps:
        if isinstance(step, Send):
            frame = step.frame
            events += (
                dialect.receive_text(frame)
                if isinstance(frame, str)
                else dialect.receive_bytes(frame)
            )
            for reply in dialect.data_to_send():
                if isinstance(reply, str):
                    client.receive(reply)
                else:
                    client.receive_bytes(reply)
            for answer in client.data_to_send():
                events += dialect.receive_text(answer)
        elif isinstance(step, Expect):
            assert any(m.type == step.type for m in client.state.received), step
    return events


def test_signed_stereo_session_end_to_end() -> None:
    client = AudioHookClient(
        api_key=KEY,
        client_secret=SECRET,
        participant={"ani": "+15550100"},
        custom_config={"queue": "billing"},
    )
    dialect = connect(client)
    caller, agent = tone(2.0), tone(2.0, period=9.0)
    plan = session_plan(
        client, caller, agent, pause_at_ms=1000, pause_ms=600, ping_every_ms=800, digits="42"
    )
    events = run(client, dialect, plan)
    started = events[0]
    assert isinstance(started, CallStarted)
    assert started.metadata["organization_id"] == client.organization_id
    assert started.custom_parameters == {"queue": "billing"}
    kinds = [type(e) for e in events if not isinstance(e, Audio)]
    assert kinds == [CallStarted, Paused, MediaGap, Resumed, Dtmf, Dtmf, CallEnded]
    audio = [e for e in events if isinstance(e, Audio)]
    assert sum(len(a.pcm) for a in audio if a.channel == "caller") == len(caller)
    assert sum(len(a.pcm) for a in audio if a.channel == "agent") == len(agent)
    assert [e.duration_ms for e in events if isinstance(e, MediaGap)] == [600]
    assert client.state.pongs == 2 and client.state.closed
    assert dialect.counters.audio_samples + dialect.counters.gap_ms * 8 == client.position_samples


def test_probe_plan() -> None:
    client = AudioHookClient(api_key=KEY, client_secret=SECRET, probe=True)
    dialect = connect(client)
    events = run(client, dialect, session_plan(client, tone(1.0)))
    assert events == [CallEnded("probe")]
    assert client.state.media == [] and client.state.closed
    assert (
        client.participant["id"] == client.conversation_id == "00000000-0000-0000-0000-000000000000"
    )


def test_client_answers_pause_resume_and_disconnect() -> None:
    client = AudioHookClient(offers=[["external"]])
    dialect = AudioHookDialect(AudioHookOptions(send_events=True))
    run(client, dialect, [Send(client.open())])
    dialect.request_pause()
    for reply in dialect.data_to_send():
        assert isinstance(reply, str)
        client.receive(reply)
    answers = client.data_to_send()
    events = [e for a in answers for e in dialect.receive_text(a)]
    assert events == [Paused()] and client.paused and client.state.paused_by_server
    assert client.audio(tone(0.2)) is None  # withheld while paused; the clock runs on
    dialect.request_resume()
    for reply in dialect.data_to_send():
        assert isinstance(reply, str)
        client.receive(reply)
    events = [e for a in client.data_to_send() for e in dialect.receive_text(a)]
    assert events == [MediaGap(None, 200), Resumed()]
    dialect.send(SendEvent({"entities": [{"type": "note", "data": {"n": 1}}]}))
    dialect.send(Disconnect("completed", "done"))
    for reply in dialect.data_to_send():
        assert isinstance(reply, str)
        client.receive(reply)
    assert client.state.events == [{"type": "note", "data": {"n": 1}}]
    assert (client.state.disconnect_reason, client.state.disconnect_info) == ("completed", "done")
    events = [e for a in client.data_to_send() for e in dialect.receive_text(a)]
    assert events == [CallEnded("disconnect")]


def test_unsigned_headers_without_a_secret() -> None:
    headers = AudioHookClient(api_key=KEY).upgrade_headers(
        request_target="/audiohook", authority="h", now=NOW
    )
    assert "signature" not in headers and headers["x-api-key"] == KEY
    assert headers["user-agent"] == "GenesysCloud-AudioHook-Client"


def test_messages_carry_position_and_rtt() -> None:
    client = AudioHookClient()
    client.skip(1500)
    ping = json.loads(client.ping(rtt_ms=42))
    assert ping["position"] == "PT1.5S" and ping["parameters"] == {"rtt": "PT0.042S"}
    error = json.loads(client.error(429, "slow", retry_after_ms=2000))
    assert error["parameters"] == {"code": 429, "message": "slow", "retryAfter": "PT2S"}
    discarded = json.loads(client.discard(250))
    assert discarded["parameters"] == {"start": "PT1.5S", "discarded": "PT0.25S"}
    assert json.loads(client.update("de-DE"))["parameters"] == {"language": "de-DE"}
    assert [json.loads(m)["seq"] for m in (client.close(),)] == [5]


def server(client: AudioHookClient, kind: str, seq: int = 1, **over: Any) -> str:
    body: dict[str, Any] = {
        "version": "2",
        "type": kind,
        "seq": seq,
        "clientseq": 0,
        "id": client.session_id,
        "parameters": {},
    }
    body.update(over)
    return json.dumps(body)


@pytest.mark.parametrize(
    "over",
    [
        {"seq": 2},
        {"clientseq": 5},
        {"id": "00000000-0000-0000-0000-000000000001"},
        {"version": "1"},
        {"parameters": []},
        {"type": "opened", "parameters": {"media": [{"channels": ["left"]}]}},
        {"type": "opened", "parameters": {"media": "x"}},
        {"type": "event", "parameters": {"entities": {}}},
    ],
)
def test_client_rejects_bad_server_messages(over: dict[str, Any]) -> None:
    client = AudioHookClient()
    with pytest.raises(AudioHookClientError):
        client.receive(server(client, str(over.pop("type", "pong")), **over))


def test_client_misuse() -> None:
    client = AudioHookClient()
    with pytest.raises(AudioHookClientError):
        client.receive("not json")
    with pytest.raises(AudioHookClientError):
        client.audio(tone(0.1))
    client.receive(
        server(
            client,
            "opened",
            parameters={
                "media": [
                    {
                        "type": "audio",
                        "format": "PCMU",
                        "channels": ["external", "internal"],
                        "rate": 8000,
                    }
                ]
            },
        )
    )
    with pytest.raises(AudioHookClientError):
        client.audio(tone(0.1), tone(0.2))
    frame = client.audio(tone(0.1))  # no agent audio: silence on that side
    assert frame is not None and frame[1::2] == b"\xff" * 800
    client.receive_bytes(b"\xff" * 1600)
    assert (client.state.binary_frames, client.state.binary_bytes) == (1, 1600)
