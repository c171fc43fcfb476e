"""Append every event to a file as one JSON object per line, surviving log rotation.

The file is reopened on ``reopen()`` (the CLI calls it on SIGHUP through EventBus.reopen) and
also whenever the path no longer names the open file: before a write, at most once a second,
the path's device and inode are compared with the open handle's (one stat call), so
logrotate's rename or delete is noticed within a second even without a signal (or at every
write with ``rotation_check_s=0``). A failing write raises SinkError (counted by the bus,
dead-lettered when configured) and the next write tries to reopen; nothing here crashes.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from ivr_bridge.errors import ConfigError, SinkError
from ivr_bridge.model import UtteranceEvent, event_json

log = structlog.get_logger(__name__)


class JsonlSink:
    """Open at construction (raises ConfigError naming the path when it cannot be)."""

    name = "jsonl"

    def __init__(self, path: str | Path, *, rotation_check_s: float = 1.0) -> None:
        self.path = Path(path)
        # A stat per event cost more than the write itself at hundreds of events a second.
        self._check_every_s = rotation_check_s
        self.reopened = 0
        self.write_errors = 0
        self._fh: BinaryIO | None = None
        self._identity: tuple[int, int] | None = None
        self._checked_at = 0.0  # monotonic time of the last rotation check
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open()
        except OSError as exc:
            # mkdir of the parent says "File exists" when a parent is a plain file.
            why = (
                "a parent path is not a directory"
                if isinstance(exc, FileExistsError | NotADirectoryError)
                else exc.strerror or type(exc).__name__
            )
            raise ConfigError("events.jsonl", f"cannot open {self.path}: {why}") from exc

    def _open(self) -> None:
        # Unbuffered binary append: each event line is one write(), in the file when deliver
        # returns, and appends from one process never interleave mid-line. (orjson's UTF-8
        # goes as it is: no decode and re-encode through a text layer.)
        fh = open(self.path, "ab", buffering=0)  # noqa: SIM115
        st = os.fstat(fh.fileno())
        self._close_handle()
        self._fh = fh
        self._identity = (st.st_dev, st.st_ino)

    def _close_handle(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError as exc:
                log.warning("jsonl_close_failed", error=exc.strerror)
            self._fh = None

    def _rotated(self) -> bool:
        now = time.monotonic()
        if now - self._checked_at < self._check_every_s:
            return False
        self._checked_at = now
        try:
            st = os.stat(self.path)
        except OSError:
            return True  # deleted or moved away
        return (st.st_dev, st.st_ino) != self._identity

    def reopen(self) -> None:
        """Start a fresh handle on the path (SIGHUP). A failure is logged; writes retry it."""
        try:
            self._open()
        except OSError as exc:
            log.error("jsonl_reopen_failed", path=str(self.path), error=exc.strerror)
            self._close_handle()
            return
        self.reopened += 1
        log.info("jsonl_reopened", path=str(self.path))

    def health(self) -> dict[str, Any]:
        return {"open": self._fh is not None, "write_errors": self.write_errors}

    async def deliver(self, event: UtteranceEvent) -> None:
        self.deliver_now(event)

    def deliver_now(self, event: UtteranceEvent) -> None:
        """A line appended; the bus calls this in its worker (no task per event)."""
        line = event_json(event) + b"\n"
        try:
            if self._fh is None or self._rotated():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._open()
                self.reopened += 1
                log.info("jsonl_reopened", path=str(self.path), why="path changed")
            assert self._fh is not None
            written = self._fh.write(line)
            while written is not None and written < len(line):  # a short write: the rest
                line = line[written:]
                written = self._fh.write(line)
                if not written:
                    raise OSError(errno.ENOSPC, "nothing written")
        except (OSError, ValueError) as exc:
            self.write_errors += 1
            self._checked_at = 0.0  # look again at the next write, not a second later
            reason = exc.strerror if isinstance(exc, OSError) else "file closed"
            raise SinkError(f"cannot write {self.path.name}: {reason}") from exc

    async def aclose(self) -> None:
        self._close_handle()
