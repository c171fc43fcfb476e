"""Readable one-line rendering of events, for the demo and for watching a bridge by eye."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import TextIO

from ivr_bridge.model import UtteranceEvent


def _clock(ms: int) -> str:
    minutes, rest = divmod(max(0, ms), 60_000)
    return f"{minutes:02d}:{rest / 1000:06.3f}"


def render(event: UtteranceEvent) -> str:
    d = event.data
    head = f"{_clock(event.call_ms)} {event.channel or '-':<6} {event.type:<19}"
    kind = event.type
    if kind in ("partial", "final", "final_refinement"):
        span = ""
        if "start_ms" in d:
            span = f" [{_clock(int(d['start_ms']))} - {_clock(int(d['end_ms']))}]"
        return f"{head} {d.get('text', '')!r}{span}"
    if kind == "call_started":
        chans = ", ".join(c["name"] for c in d.get("channels", []))
        return f"{head} dialect={d.get('dialect')} channels={chans} rate={d.get('sample_rate')}"
    if kind == "call_ended":
        return f"{head} reason={d.get('reason')} duration={d.get('duration_ms')} ms"
    if kind == "dtmf":
        return f"{head} digit={d.get('digit')}"
    if kind in ("speech_started", "eou"):
        return head.rstrip()
    detail = " ".join(f"{k}={v}" for k, v in d.items() if not isinstance(v, dict | list))
    return f"{head} {detail}".rstrip()


class ConsoleSink:
    name = "console"

    def __init__(
        self,
        stream: TextIO | None = None,
        include_partials: bool = True,
        formatter: Callable[[UtteranceEvent], str] = render,
    ) -> None:
        self._stream = stream or sys.stdout
        self._include_partials = include_partials
        self._format = formatter

    async def deliver(self, event: UtteranceEvent) -> None:
        if event.type == "partial" and not self._include_partials:
            return
        self._stream.write(self._format(event) + "\n")
        self._stream.flush()

    async def aclose(self) -> None:
        self._stream.flush()


class CallbackSink:
    """In-process Python API: hand each event to an async callback."""

    name = "callback"

    def __init__(self, callback: Callable[[UtteranceEvent], object]) -> None:
        self._callback = callback

    async def deliver(self, event: UtteranceEvent) -> None:
        result = self._callback(event)
        if inspect.isawaitable(result):
            await result

    async def aclose(self) -> None:
        return None
