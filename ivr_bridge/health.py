"""What /healthz and /readyz say about each component, sans-I/O (the caller passes ``now``).

- The recognizer: the gRPC channel's connectivity, sampled at each probe. Unreachable means
  the channel reports TRANSIENT_FAILURE or SHUTDOWN; readiness fails once that has lasted
  longer than a grace period (0: never, for a single replica that would rather stay ready).
- Each event sink: failing when its last deliveries failed and none succeeded since the
  previous probe, or when the sink itself says its file is not open or its circuit is open.

Liveness stays 200 either way (restarting the pod cures neither an outage nor a full disk);
the body says ``degraded`` and names the component.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

UNREACHABLE_STATES = frozenset({"TRANSIENT_FAILURE", "SHUTDOWN"})


class RecognizerWatch:
    """Remembers since when the recognizer has been unreachable."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.state = "UNKNOWN"
        self.unreachable_since: float | None = None

    def observe(self, state: str, now: float) -> None:
        self.state = state
        if state in UNREACHABLE_STATES:
            if self.unreachable_since is None:
                self.unreachable_since = now
        else:
            self.unreachable_since = None

    @property
    def reachable(self) -> bool:
        return self.unreachable_since is None

    def ready(self, now: float) -> bool:
        """False once unreachable for longer than the grace period (never when it is 0)."""
        if self.grace_s <= 0 or self.unreachable_since is None:
            return True
        return now - self.unreachable_since <= self.grace_s

    def report(self, now: float) -> dict[str, Any]:
        report: dict[str, Any] = {
            "status": "ok" if self.reachable else "unreachable",
            "state": self.state,
        }
        if self.unreachable_since is not None:
            report["unreachable_for_s"] = round(now - self.unreachable_since, 1)
        return report


class SinkWatch:
    """Per sink: did deliveries fail since the last probe with none getting through?"""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}  # sink -> (delivered, failed)
        self._failing: dict[str, bool] = {}

    def report(
        self, name: str, delivered: int, failed: int, own: Mapping[str, Any]
    ) -> dict[str, Any]:
        before_delivered, before_failed = self._last.get(name, (0, 0))
        if failed > before_failed and delivered == before_delivered:
            self._failing[name] = True
        elif delivered > before_delivered:
            self._failing[name] = False
        self._last[name] = (delivered, failed)
        broken = own.get("open") is False or own.get("state") in ("open", "disconnected")
        failing = self._failing.get(name, False) or broken
        return {"status": "failing" if failing else "ok", "delivered": delivered, **own}
