"""The per-call handle a dialog handler receives: the call's events in, commands out.

    async def handler(call: CallHandle) -> None:
        await call.play("welcome.wav")
        async for event in call.events():
            if event.type == "final":
                ...

``next_event(timeout)`` is the same stream one event at a time, with a silence timeout.
Events reach the handle through a bounded per-call queue filled synchronously by the call, so a
slow handler never slows the audio path: when the queue is full the oldest partial (else the
oldest event) is dropped and counted (``dropped_events``, and in ``call_ended``). Commands go to
the call's dialect, which encodes them for the platform; one the platform cannot carry raises
``UnsupportedRequest``. With ``barge_in`` on, the caller starting to speak while a prompt plays
clears the platform's playback queue and emits a ``barge_in`` event naming the prompt that was
cut and how much of it played.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ivr_bridge.audio.codecs import pcm16_duration_ms
from ivr_bridge.audio.wav import load_wav
from ivr_bridge.clock import Clock
from ivr_bridge.dialects.base import (
    ClearAudio,
    Disconnect,
    OutboundRequest,
    PlayAudio,
    SendEvent,
    SendMark,
)
from ivr_bridge.errors import BridgeError
from ivr_bridge.events.types import BargeIn
from ivr_bridge.model import CallStarted, EventPayload, UtteranceEvent
from ivr_bridge.prompts import Cut, PromptTracker

_prompt_numbers = itertools.count(1)


class CallGone(BridgeError):
    """A command for a call that has already ended."""


@dataclass(frozen=True, slots=True)
class DialogOptions:
    """How the bridge runs an in-process dialog handler (``ivr_bridge.serve``)."""

    handler: Handler
    barge_in: bool = False  # the caller speaking over a prompt clears playback
    queue_size: int = 256  # events buffered per call for the handler; beyond, oldest dropped
    finish_timeout_s: float = 5.0  # after call_ended, then a lingering handler is cancelled


class CallControl(Protocol):
    """What the handle needs from the call that owns it (``ivr_bridge.call.Call``)."""

    call_id: str

    @property
    def capabilities(self) -> frozenset[str]: ...

    async def send(self, request: OutboundRequest) -> None:
        """Queue a request on the dialect and flush it to the platform."""
        ...

    def emit(self, payload: EventPayload) -> None:
        """Publish an event of the call's own (e.g. ``barge_in``) to every sink."""
        ...


class CallHandle:
    """One call, as dialog logic sees it. Created by the bridge when the call starts."""

    def __init__(
        self,
        control: CallControl,
        started: CallStarted,
        *,
        clock: Clock,
        queue_size: int = 256,
        barge_in: bool = False,
    ) -> None:
        self._control = control
        self._clock = clock
        self.started = started
        self.barge_in = barge_in
        self._queue: deque[UtteranceEvent] = deque()
        self._queue_size = max(1, queue_size)
        self._ready = asyncio.Event()
        self._closed = False
        self._prompts = PromptTracker()
        self.dropped_events = 0

    # ---- what the call is -------------------------------------------------------------

    @property
    def call_id(self) -> str:
        """The bridge's id for this call (the ``call_id`` of its events)."""
        return self._control.call_id

    @property
    def platform_call_id(self) -> str:
        return self.started.platform_call_id

    @property
    def dialect(self) -> str:
        return self.started.dialect

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.started.channels)

    @property
    def metadata(self) -> Mapping[str, str]:
        return self.started.metadata

    @property
    def custom_parameters(self) -> Mapping[str, str]:
        return self.started.custom_parameters

    @property
    def capabilities(self) -> frozenset[str]:
        """What this platform can carry: "play", "mark", "clear", "event", "disconnect"."""
        return self._control.capabilities

    @property
    def playing(self) -> bool:
        """True while a prompt queued with ``play`` has not been echoed back as finished."""
        return self._prompts.playing

    # ---- events in ---------------------------------------------------------------------

    def deliver(self, event: UtteranceEvent) -> None:
        """Called by the call for each of its events; never blocks, never raises."""
        if self._closed:
            return
        cut = None
        if event.type == "mark":
            self._prompts.mark_echoed(str(event.data.get("name", "")), self._clock.now())
        elif event.type == "speech_started" and self.barge_in and self._prompts.playing:
            cut = self._barge_in()  # the clear is scheduled before the handler can wake
        if len(self._queue) >= self._queue_size:
            self._drop_one()
        self._queue.append(event)
        self._ready.set()
        if cut is not None:
            # Emitted after queueing: the barge_in event comes back here and must follow.
            self._control.emit(
                BargeIn(cut.prompt, cut.played_ms, cut.duration_ms, cut.queued_after)
            )

    def _drop_one(self) -> None:
        for i, queued in enumerate(self._queue):
            if queued.type == "partial":
                del self._queue[i]
                break
        else:
            self._queue.popleft()
        self.dropped_events += 1

    def _barge_in(self) -> Cut | None:
        cut = self._prompts.cut(self._clock.now())
        if cut is not None:
            task = asyncio.get_running_loop().create_task(self._control.send(ClearAudio()))
            task.add_done_callback(_ignore_result)
        return cut

    def close(self) -> None:
        """The call ended: ``events()`` finishes once the queued events are read."""
        self._closed = True
        self._ready.set()

    @property
    def closed(self) -> bool:
        """True once the call has ended (commands then raise CallGone)."""
        return self._closed

    async def _send(self, request: OutboundRequest) -> None:
        if self._closed:
            raise CallGone(f"call {self.call_id} has ended")
        await self._control.send(request)

    async def events(self) -> AsyncIterator[UtteranceEvent]:
        """The call's events in order, ending after ``call_ended``."""
        while True:
            while self._queue:
                yield self._queue.popleft()
            if self._closed:
                return
            self._ready.clear()
            await self._ready.wait()

    async def next_event(self, timeout: float | None = None) -> UtteranceEvent | None:
        """The next event, or None when ``timeout`` seconds (on the bridge's clock) pass
        without one: a silence timeout. Raises CallGone once the call ended and every event
        was read."""
        while not self._queue:
            if self._closed:
                raise CallGone(f"call {self.call_id} has ended")
            self._ready.clear()
            if timeout is None:
                await self._ready.wait()
                continue
            try:
                await self._clock.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None
        return self._queue.popleft()

    # ---- commands out ------------------------------------------------------------------

    async def play(
        self,
        audio: bytes | str | Path,
        *,
        sample_rate: int = 8000,
        name: str | None = None,
    ) -> str:
        """Play PCM16 mono (``sample_rate``) or a WAV file to the caller; returns the prompt's
        name. The platform's mark echo tells the bridge when it finished (see ``playing``)."""
        if isinstance(audio, str | Path):
            wav = load_wav(audio)
            pcm, rate = wav.pcm, wav.sample_rate
        else:
            pcm, rate = bytes(audio), sample_rate
        prompt = name or f"p{next(_prompt_numbers)}"
        await self._send(PlayAudio(pcm, rate))
        if "mark" in self.capabilities:
            self._prompts.queued(prompt, round(pcm16_duration_ms(pcm, rate)), self._clock.now())
            await self._send(SendMark(PromptTracker.mark_for(prompt)))
        return prompt

    async def mark(self, name: str) -> None:
        """Ask the platform to echo ``name`` (a ``mark`` event) when playback reaches it."""
        await self._send(SendMark(name))

    async def clear(self) -> None:
        """Stop playback now and drop what was queued."""
        self._prompts.cut(self._clock.now())
        await self._send(ClearAudio())

    async def hangup(self, reason: str = "completed") -> None:
        """End the call from the bridge's side."""
        await self._send(Disconnect(reason))

    async def send_event(self, data: Mapping[str, Any]) -> None:
        """A transcript/event message, on platforms that carry one ("event" capability)."""
        await self._send(SendEvent(dict(data)))


Handler = Callable[[CallHandle], Awaitable[None]]
"""``async def handler(call: CallHandle) -> None``: run once per call, as its own task."""


def _ignore_result(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a failed clear is the call's to log, not the loop's
