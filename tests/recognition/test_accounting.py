"""The accounting record: call_ended's documented keys and /metrics come from one definition."""

from __future__ import annotations

from dataclasses import fields

from ivr_bridge.metrics import Metrics
from ivr_bridge.recognition.accounting import CallAccounting, ChannelAccounting, sum_channels

# The documented wire form (README, call_ended): these keys must not change.
CHANNEL_KEYS = [
    "audio_ms_received",
    "audio_ms_sent",
    "audio_ms_replayed",
    "audio_ms_dropped",
    "audio_ms_pending",
    "samples_received",
    "samples_sent_first",
    "samples_replayed",
    "samples_dropped",
    "keepalive_ms",
    "sessions_opened",
    "rotations",
    "forced_rotations",
    "reconnects",
    "stalls",
    "errors",
    "finals",
    "seam_words_dropped",
    "last_error",
    "recognition_failed",
]
CALL_KEYS = {
    "audio_ms_received",
    "audio_ms_sent",
    "audio_ms_replayed",
    "audio_ms_dropped",
    "sessions_opened",
    "keepalive_ms",
    "errors",
}


def channel(seed: int, **overrides: object) -> ChannelAccounting:
    numbers = {
        f.name: seed * 100 + i for i, f in enumerate(fields(ChannelAccounting)) if f.type == "int"
    }
    return ChannelAccounting(**{**numbers, **overrides})  # type: ignore[arg-type]


def test_channel_and_call_json_keep_their_keys() -> None:
    caller, agent = channel(1, last_error="UNAVAILABLE"), channel(2, recognition_failed=True)
    assert list(caller.to_json()) == CHANNEL_KEYS
    data = CallAccounting({"caller": caller, "agent": agent}).to_json()
    assert set(data) == CALL_KEYS | {"channels"}
    for key in CALL_KEYS:
        assert data[key] == getattr(caller, key) + getattr(agent, key)
    assert data["channels"] == {"caller": caller.to_json(), "agent": agent.to_json()}
    assert data["channels"]["caller"]["last_error"] == "UNAVAILABLE"


def test_sum_and_metrics_use_the_same_counters() -> None:
    calls = CallAccounting({"caller": channel(1), "agent": channel(3, recognition_failed=True)})
    total = sum_channels(calls.channels)
    assert total.rotations == calls.channels["caller"].rotations + calls.channels["agent"].rotations
    assert total.recognition_failed and calls.failed_channels == 1
    metrics = Metrics()
    metrics.call_ended("stop", calls)
    metrics.call_ended("hangup", calls)
    text = metrics.render({}, {})
    values = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    for key in [*CALL_KEYS, "rotations", "forced_rotations", "reconnects", "stalls", "finals"]:
        assert values[f"ivr_bridge_{key}_total"] == str(2 * getattr(total, key))
    assert values["ivr_bridge_seam_words_dropped_total"] == str(2 * total.seam_words_dropped)
    assert values["ivr_bridge_recognition_failed_channels_total"] == "2"
    assert "ivr_bridge_samples_received_total" not in values
