"""Process-wide counters, rendered in the Prometheus text format at GET /metrics.

Labels never carry call ids, phone numbers or anything else personal: only totals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from ivr_bridge.events.bus import SinkStats
from ivr_bridge.recognition.accounting import METRICS, CallAccounting


@dataclass
class Metrics:
    calls_started: int = 0
    calls_ended: dict[str, int] = field(default_factory=dict)  # by end reason
    totals: dict[str, int] = field(default_factory=dict)  # accounting counters, all calls
    recognition_failed_channels: int = 0
    upgrades_refused: dict[tuple[str, str], int] = field(default_factory=dict)
    # Connections that ended before their start message (no call_ended for them), by reason.
    connections_not_started: dict[str, int] = field(default_factory=dict)
    connections_refused: dict[str, int] = field(default_factory=dict)  # per-address cap...
    # What the PBX's streams looked like on the wire (sequence gaps, duplicates, timestamp
    # jumps...), summed over ended calls, by dialect and counter.
    wire: dict[tuple[str, str], int] = field(default_factory=dict)

    def wire_counters(self, dialect: str, counters: Mapping[str, int]) -> None:
        for name, n in counters.items():
            if name.startswith("last_"):
                continue  # a reading of one call (AudioHook's last_rtt_ms), not a count
            key = (dialect, name)
            self.wire[key] = self.wire.get(key, 0) + n

    def connection_not_started(self, reason: str) -> None:
        self.connections_not_started[reason] = self.connections_not_started.get(reason, 0) + 1

    def connection_refused(self, reason: str) -> None:
        """Refused before any dialect saw it: per-address cap, file descriptors."""
        self.connections_refused[reason] = self.connections_refused.get(reason, 0) + 1

    def upgrade_refused(self, dialect: str, reason: str) -> None:
        """A websocket upgrade was refused before any call began (auth, origin, query)."""
        key = (dialect, reason)
        self.upgrades_refused[key] = self.upgrades_refused.get(key, 0) + 1

    def call_started(self) -> None:
        self.calls_started += 1

    def call_ended(self, reason: str, accounting: CallAccounting) -> None:
        self.calls_ended[reason] = self.calls_ended.get(reason, 0) + 1
        total = accounting.total
        for name, _ in METRICS:
            self.totals[name] = self.totals.get(name, 0) + int(getattr(total, name))
        self.recognition_failed_channels += accounting.failed_channels

    def render(
        self,
        gauges: Mapping[str, float],
        sinks: Mapping[str, Mapping[str, int]],
        factories: Mapping[str, Mapping[str, int]] | None = None,
    ) -> str:
        """``factories``: dialect -> that dialect factory's own counters (auth checks)."""
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
        for name, help_text in METRICS:
            metric(
                f"{name}_total",
                "counter",
                f"{help_text}, summed over ended calls",
                [("", self.totals.get(name, 0))],
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
        metric(
            "connections_not_started_total",
            "counter",
            "connections closed before their start message, by reason",
            [(f'{{reason="{r}"}}', n) for r, n in sorted(self.connections_not_started.items())],
        )
        metric(
            "connections_refused_total",
            "counter",
            "connections refused before the upgrade, by reason",
            [(f'{{reason="{r}"}}', n) for r, n in sorted(self.connections_refused.items())],
        )
        metric(
            "dialect_wire_total",
            "counter",
            "what ended calls' streams looked like on the wire, by dialect and counter",
            [(f'{{dialect="{d}",counter="{c}"}}', n) for (d, c), n in sorted(self.wire.items())],
        )
        metric(
            "dialect_factory_total",
            "counter",
            "dialect factories' own counters (upgrade checks), by dialect and counter",
            [
                (f'{{dialect="{d}",counter="{c}"}}', n)
                for d, counts in sorted((factories or {}).items())
                for c, n in sorted(counts.items())
            ],
        )
        # Every SinkStats field, from its one definition: counters, and "queued" as a gauge.
        for stat in (f.name for f in fields(SinkStats)):
            gauge = stat == "queued"
            subject = (
                "sink_calls_over_quota" if stat == "calls_over_quota" else f"sink_events_{stat}"
            )
            metric(
                subject if gauge else f"{subject}_total",
                "gauge" if gauge else "counter",
                f"events {stat.replace('_', ' ')}, by sink",
                [
                    (f'{{sink="{name}"}}', counts.get(stat, 0))
                    for name, counts in sorted(sinks.items())
                ],
            )
        return "\n".join(lines) + "\n"
