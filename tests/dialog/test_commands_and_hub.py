"""Sans-I/O parts of out-of-process control: command parsing, the per-call rings (bounded,
expiring after hang-up on the injected clock) and subscriber outboxes (bounded, counted)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from ivr_bridge.audio.wav import pcm16_wav_bytes
from ivr_bridge.commands import CommandError, parse_command
from ivr_bridge.config import DialogSettings, EventSettings, load_settings
from ivr_bridge.dialects.base import ClearAudio, Disconnect, PlayAudio, SendMark
from ivr_bridge.errors import ConfigError
from ivr_bridge.events_api import BadQuery, EventHub, parse_query
from tests.events.factories import make


class StepClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds

    async def wait_for(self, awaitable: Any, timeout: float | None) -> Any:
        return await awaitable


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_every_command_shape_becomes_its_request() -> None:
    pcm = bytes(range(200)) * 2
    assert parse_command({"type": "play", "pcm16_b64": b64(pcm)}) == PlayAudio(pcm, 8000)
    wav = pcm16_wav_bytes(pcm, 16000)
    assert parse_command({"type": "play", "wav_b64": b64(wav)}) == PlayAudio(pcm, 16000)
    assert parse_command({"type": "mark", "name": "menu"}) == SendMark("menu")
    assert parse_command({"type": "clear"}) == ClearAudio()
    assert parse_command({"type": "hangup"}) == Disconnect("completed")
    assert parse_command({"type": "hangup", "reason": "done"}) == Disconnect("done")


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ([], "a command is a JSON object"),
        ({"type": "transfer"}, "type must be one of play, mark, clear, hangup"),
        ({"type": 3}, "type must be one of"),
        ({"type": "clear", "now": True}, "unknown field(s) for clear: now"),
        ({"type": "play"}, "exactly one of pcm16_b64 or wav_b64"),
        ({"type": "play", "pcm16_b64": "AA==", "wav_b64": "AA=="}, "exactly one of"),
        ({"type": "play", "pcm16_b64": "AAAA"}, "whole 16-bit samples"),  # 3 bytes
        ({"type": "play", "pcm16_b64": ""}, "needs some audio"),
        ({"type": "play", "pcm16_b64": 5}, "must be a base64 string"),
        ({"type": "play", "pcm16_b64": "AAAAAA==", "sample_rate": 7}, "sample_rate must be one of"),
        ({"type": "play", "pcm16_b64": "AAAAAA==", "sample_rate": True}, "sample_rate must be"),
        ({"type": "play", "wav_b64": b64(b"RIFF....WAVE")}, "not a usable WAV file"),
        ({"type": "mark"}, "name must be a non-empty string"),
        ({"type": "mark", "name": "x" * 300}, "at most 256"),
        ({"type": "hangup", "reason": 5}, "reason must be a non-empty string"),
    ],
)
def test_a_bad_command_is_a_clear_error(command: object, error: str) -> None:
    with pytest.raises(CommandError, match=error.replace("(", r"\(").replace(")", r"\)")):
        parse_command(command)


def test_rings_are_bounded_and_outlive_the_call_for_keep_s_only() -> None:
    clock = StepClock()
    hub = EventHub(ring_size=3, keep_s=60.0, clock=clock)
    for seq in range(1, 6):
        hub.record(make("a", seq, "final"))
    hub.record(make("a", 6, "call_ended"))
    sub = hub.subscribe(call_id="a")
    sent = sub.take()
    assert sent[0] == {"op": "gap", "call_id": "a", "after_seq": 0, "first_seq": 4}
    assert [m["seq"] for m in sent[1:]] == [4, 5, 6]
    clock.t += 59.0
    hub.record(make("b", 1, "call_started"))
    assert hub.calls_kept == 2
    clock.t += 2.0
    hub.record(make("b", 2, "final"))
    assert hub.calls_kept == 1  # a's ring expired 60 s after its hang-up; b is live
    late = hub.subscribe(call_id="a", after={"a": 6})
    assert late.take() == [{"op": "gap", "call_id": "a", "after_seq": 6, "first_seq": None}]


def test_a_slow_subscriber_loses_its_oldest_and_is_told_how_many() -> None:
    hub = EventHub(ring_size=100)
    sub = hub.subscribe(call_id=None, types=frozenset({"final"}), limit=10)
    for seq in range(1, 26):
        hub.record(make("c", seq, "final"))
        hub.record(make("c", 100 + seq, "partial"))  # filtered out: not counted
    got = sub.take()
    assert got[0] == {"op": "dropped", "count": 15}
    assert [m["seq"] for m in got[1:]] == list(range(16, 26))
    hub.unsubscribe(sub)
    hub.record(make("c", 26, "final"))
    assert sub.take() == []


def test_resume_points_for_several_calls_from_the_query() -> None:
    assert parse_query("after=call_a:4,call_b:0&types=final") == (
        None,
        frozenset({"final"}),
        {"call_a": 4, "call_b": 0},
    )
    assert parse_query("call_id=x&after_seq=7")[2] == {"x": 7}
    for bad, why in [
        ("after_seq=3", "needs call_id"),
        ("after=nocolon", "CALL_ID:SEQ"),
        ("after=a:x", "integers"),
        ("after=a:-1", ">= 0"),
        ("token=abc", "unknown parameter"),
        ("types=", "unknown event type"),
    ]:
        with pytest.raises(BadQuery, match=why):
            parse_query(bad)


def test_dialog_and_events_api_settings_load_and_validate(tmp_path: Any) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(
        '[dialog]\nbarge_in = true\nqueue_size = 64\n[events]\napi_token = "t1"\n'
        "api_ring_size = 50\n"
    )
    settings = load_settings(path, env={"IVR_BRIDGE_DIALOG_FINISH_TIMEOUT_S": "2"})
    assert settings.dialog == DialogSettings(barge_in=True, queue_size=64, finish_timeout_s=2.0)
    assert settings.events.api_token == "t1" and settings.events.api_ring_size == 50
    assert "t1" not in repr(settings.events)
    for section, text, key in [
        ("dialog", "queue_size = 0", "dialog.queue_size"),
        ("events", "api_ring_size = 0", "events.api_ring_size"),
        ("events", "api_ring_keep_s = -1.0", "events.api_ring_keep_s"),
        ("events", "api_subscriber_queue = 1", "events.api_subscriber_queue"),
        ("events", 'api_token = "same"\napi_read_token = "same"', "events.api_read_token"),
    ]:
        path.write_text(f"[{section}]\n{text}\n")
        with pytest.raises(ConfigError) as err:
            load_settings(path, env={})
        assert err.value.key == key
    assert EventSettings().api_token == ""
