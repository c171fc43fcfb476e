"""Append every event to a file as one JSON object per line."""

from __future__ import annotations

import json
from pathlib import Path

from ivr_bridge.errors import SinkError
from ivr_bridge.model import UtteranceEvent


class JsonlSink:
    name = "jsonl"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Line-buffered append: each event is on disk when deliver returns, and appends from
        # one process never interleave mid-line.
        self._fh = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    async def deliver(self, event: UtteranceEvent) -> None:
        try:
            self._fh.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")
        except OSError as exc:
            raise SinkError(f"cannot write {self.path.name}: {exc.strerror}") from exc

    async def aclose(self) -> None:
        self._fh.close()
