"""Process-wide counters, rendered in the Prometheus text format at GET /metrics.

Labels never carry call ids, phone numbers or anything else personal: only totals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Per-call accounting keys (call_ended data) summed into counters.
CALL_TOTALS = (
    "audio_ms_received",
    "audio_ms_sent",
    "audio_ms_replayed",
    "audio_ms_dropped",
    "keepalive_ms",
    "sessions_opened",
    "errors",
)
CHANNEL_TOTALS = (
    "rotations",
    "forced_rotations",
    "reconnects",
    "stalls",
    "finals",
    "seam_words_dropped",
)


@dataclass
class Metrics:
    calls_started: int = 0
    calls_ended: dict[str, int] = field(default_factory=dict)  # by end reason
    totals: dict[str, int] = field(default_factory=dict)
    recognition_failed_channels: int = 0
    upgrades_refused: dict[tuple[str, str], int] = field(default_factory=dict)

    def upgrade_refused(self, dialect: str, reason: str) -> None:
        """A websocket upgrade was refused before any call began (auth, origin, query)."""
        key = (dialect, reason)
        self.upgrades_refused[key] = self.upgrades_refused.get(key, 0) + 1

    def call_started(self) -> None:
        self.calls_started += 1

    def call_ended(self, reason: str, accounting: Mapping[str, Any]) -> None:
        self.calls_ended[reason] = self.calls_ended.get(reason, 0) + 1
        for key in CALL_TOTALS:
            self.totals[key] = self.totals.get(key, 0) + int(accounting.get(key, 0))
        channels: Mapping[str, Mapping[str, Any]] = accounting.get("channels", {})
        for acc in channels.values():
            for key in CHANNEL_TOTALS:
                self.totals[key] = self.totals.get(key, 0) + int(acc.get(key, 0))
            if acc.get("recognition_failed"):
                self.recognition_failed_channels += 1

    def render(self, gauges: Mapping[str, float], sinks: Mapping[str, Mapping[str, int]]) -> str:
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP ivr_bridge_{name} {help_text}")
            lines.append(f"# TYPE ivr_bridge_{name} {kind}")
            for labels, value in samples:
                lines.append(f"ivr_bridge_{name}{labels} {value:g}")

        for name, value in gauges.items():
            metric(name, "gauge", name.replace("_", " "), [("", value)])
        metric(
            "calls_started_total",
            "counter",
            "calls whose stream started",
            [("", self.calls_started)],
        )
        metric(
            "calls_ended_total",
            "counter",
            "calls ended, by reason",
            [(f'{{reason="{r}"}}', n) for r, n in sorted(self.calls_ended.items())],
        )
        for key in (*CALL_TOTALS, *CHANNEL_TOTALS):
            metric(
                f"{key}_total",
                "counter",
                f"sum of {key} over ended calls",
                [("", self.totals.get(key, 0))],
            )
        metric(
            "recognition_failed_channels_total",
            "counter",
            "channels whose recognition was refused",
            [("", self.recognition_failed_channels)],
        )
        metric(
            "upgrades_refused_total",
            "counter",
            "websocket upgrades refused, by dialect and reason",
            [
                (f'{{dialect="{d}",reason="{r}"}}', n)
                for (d, r), n in sorted(self.upgrades_refused.items())
            ],
        )
        for stat in ("delivered", "failed", "dropped_queue_full"):
            metric(
                f"sink_events_{stat}_total",
                "counter",
                f"events {stat.replace('_', ' ')}, by sink",
                [
                    (f'{{sink="{name}"}}', counts.get(stat, 0))
                    for name, counts in sorted(sinks.items())
                ],
            )
        return "\n".join(lines) + "\n"
