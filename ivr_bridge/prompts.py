"""Which prompt is playing to the caller, and how much of it was heard. Sans-I/O.

The bridge cannot see the platform's playback, only what it queued and the marks the platform
echoes back. Prompts play one after another at real time, so prompt i starts when it was queued
or when prompt i-1 ended, whichever is later; its mark's echo says it finished. On barge-in the
tracker says which prompt was cut and at what offset, and forgets everything queued.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

MARK_PREFIX = "prompt:"
# Prompts remembered at once. A platform that never echoes marks would otherwise let the list
# grow for the whole call; past this many, the oldest is taken as finished.
MAX_TRACKED = 256


@dataclass(frozen=True, slots=True)
class Cut:
    """A prompt interrupted by the caller: its name, how much played, how long it was."""

    prompt: str
    played_ms: int
    duration_ms: int
    queued_after: tuple[str, ...]  # prompts that were waiting behind it, also dropped


@dataclass(slots=True)
class _Prompt:
    name: str
    queued_at: float
    duration_ms: int


class PromptTracker:
    """Feed it ``queued`` when audio is sent, ``mark_echoed`` for every mark the platform
    returns, and ask ``cut`` when the caller starts speaking (times in seconds, any clock)."""

    def __init__(self) -> None:
        self._queue: deque[_Prompt] = deque()
        self._finished_at: float | None = None  # when the previous prompt ended

    @property
    def playing(self) -> bool:
        return bool(self._queue)

    @staticmethod
    def mark_for(name: str) -> str:
        return MARK_PREFIX + name

    def queued(self, name: str, duration_ms: int, now: float) -> None:
        if len(self._queue) >= MAX_TRACKED:
            self._finished_at = max(self._finished_at or 0.0, self._queue.popleft().queued_at)
        self._queue.append(_Prompt(name, now, max(0, duration_ms)))

    def mark_echoed(self, mark: str, now: float) -> str | None:
        """A mark came back: the prompts up to and including its prompt have finished.
        Returns the finished prompt's name, or None if the mark is not one of ours."""
        if not mark.startswith(MARK_PREFIX):
            return None
        name = mark[len(MARK_PREFIX) :]
        if all(p.name != name for p in self._queue):
            return None
        while self._queue:
            done = self._queue.popleft()
            if done.name == name:
                break
        self._finished_at = now
        return name

    def cut(self, now: float) -> Cut | None:
        """The caller barged in at ``now``: which prompt was audible and how far it got.
        Forgets all queued prompts (the caller of this clears the platform's queue)."""
        if not self._queue:
            return None
        start = self._queue[0].queued_at
        if self._finished_at is not None:
            start = max(start, self._finished_at)
        current = self._queue[0]
        index = 0
        # Walk the queue at real time: a prompt whose whole length fits before now has played.
        while index + 1 < len(self._queue) and start + current.duration_ms / 1000 <= now:
            start = max(start + current.duration_ms / 1000, self._queue[index + 1].queued_at)
            index += 1
            current = self._queue[index]
        played = round(min(current.duration_ms, max(0.0, (now - start) * 1000)))
        after = tuple(p.name for p in list(self._queue)[index + 1 :])
        self._queue.clear()
        self._finished_at = now
        return Cut(current.name, played, current.duration_ms, after)
