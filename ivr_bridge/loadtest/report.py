"""Joins what the generator sent with what the probe received, and formats the result."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

FRAME_SAMPLES = 160


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def upstream_delays(
    send_times: dict[int, list[float]],
    receipts: Iterable[tuple[int, int, float]],
    frame_samples: dict[int, int] | None = None,
) -> list[float]:
    """Per frame: the probe's receipt of the chunk that completed it, minus its send time (ms).

    ``receipts`` are (call, end_sample, receive time) in the order the probe saw them; a frame
    replayed after a reconnect counts at its first receipt.
    """
    delays: list[float] = []
    done: dict[int, int] = {}
    for call, end_sample, received in receipts:
        sent = send_times.get(call)
        if sent is None:
            continue
        first = done.get(call, 0)
        size = (frame_samples or {}).get(call, FRAME_SAMPLES)
        last = min(end_sample // size, len(sent))
        for k in range(first, last):
            delays.append((received - sent[k]) * 1000)
        done[call] = max(first, last)
    return delays


def parse_receipts(text: str) -> list[tuple[int, int, float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        tag, end, when = line.split()
        out.append((int(tag), int(end), float(when)))
    return out


def event_latencies(jsonl_lines: Iterable[str]) -> tuple[list[float], int]:
    """From the bridge's JSON-lines events: (final latencies in ms, dropped samples).

    The probe writes its send time into each final's text (``t<epoch ms>``); the event's
    ``time`` is when the bridge emitted it.
    """
    latencies: list[float] = []
    dropped = 0
    for line in jsonl_lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        kind = event.get("type")
        data = event.get("data") or {}
        if kind == "final":
            text = str(data.get("text", ""))
            if text.startswith("t") and text[1:].isdigit():
                emitted = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
                latencies.append(emitted.timestamp() * 1000 - int(text[1:]))
        elif kind == "call_ended":
            for channel in (data.get("channels") or {}).values():
                dropped += int(channel.get("samples_dropped", 0))
    return latencies, dropped


@dataclass(frozen=True, slots=True)
class LoadReport:
    target: str
    calls: int
    calls_ok: int
    calls_failed: int
    duration_s: float
    send_lateness_p50_ms: float
    send_lateness_p99_ms: float
    upstream_delay_p50_ms: float
    upstream_delay_p99_ms: float
    upstream_delay_max_ms: float
    frames_sent: int
    frames_received: int
    event_latency_p50_ms: float
    event_latency_p99_ms: float
    finals: int
    cpu_ms_per_call_second: float
    rss_kb_per_call: float
    dropped_samples: int

    def as_json(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in asdict(self).items()
        }

    def format(self) -> str:
        def ms(v: float) -> str:
            return "n/a" if math.isnan(v) else f"{v:.1f} ms"

        return "\n".join(
            [
                f"load test: {self.target}, {self.calls} calls x {self.duration_s:g} s",
                f"  calls ok/failed:        {self.calls_ok}/{self.calls_failed}",
                f"  send lateness p50/p99:  {ms(self.send_lateness_p50_ms)} / "
                f"{ms(self.send_lateness_p99_ms)}",
                f"  frame->upstream p50/p99/max: {ms(self.upstream_delay_p50_ms)} / "
                f"{ms(self.upstream_delay_p99_ms)} / {ms(self.upstream_delay_max_ms)} "
                f"({self.frames_received} of {self.frames_sent} frames seen upstream)",
                f"  event latency p50/p99:  {ms(self.event_latency_p50_ms)} / "
                f"{ms(self.event_latency_p99_ms)} ({self.finals} finals)",
                f"  bridge CPU:             {self.cpu_ms_per_call_second:.2f} ms per call-second",
                f"  bridge RSS:             {self.rss_kb_per_call:.0f} KB per call",
                f"  dropped samples:        {self.dropped_samples}",
            ]
        )
