"""The dead-letter file: where an event goes when a sink could not deliver it.

After a sink's last retry, when an endpoint is disabled, or when shutdown's drain period runs
out, the bus appends the event here as one JSON line with the sink's name and the reason, so
an operator can replay it. A failing dead-letter write is counted and logged, never raised:
the caller has nothing better to do with the event.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

import structlog

from ivr_bridge.errors import ConfigError
from ivr_bridge.model import UtteranceEvent, iso_utc

log = structlog.get_logger(__name__)


class DeadLetterFile:
    """Appends undeliverable events; ``write`` answers whether the event is now on disk."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.written = 0
        self.failed = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: TextIO | None = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(
                "events.dead_letter_file", f"cannot open {self.path}: {exc.strerror}"
            ) from exc

    def write(self, event: UtteranceEvent, *, sink: str, reason: str, at: float) -> bool:
        record = {
            "sink": sink,
            "reason": reason,
            "failed_at": iso_utc(at),
            "event": event.to_json(),
        }
        try:
            if self._fh is None:
                raise ValueError("closed")
            self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        except (OSError, ValueError) as exc:
            self.failed += 1
            if self.failed in (1, 10, 100) or self.failed % 1000 == 0:
                log.error("dead_letter_write_failed", error=type(exc).__name__, lost=self.failed)
            return False
        self.written += 1
        return True

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
