"""Fakes for testing your own dialog handler without sockets, ports or a speech engine.

``ScriptedCall`` drives a real :class:`~ivr_bridge.call.Call` (the Twilio dialect, the same
recognition channel, the same CallHandle your handler gets in production) over an in-memory
connection, with a ``ScriptedRecognizer`` that "recognizes" the phrases you script::

    from ivr_bridge.testing import ScriptedCall

    async def test_my_menu_routes_sales() -> None:
        async with ScriptedCall(my_handler) as call:
            await call.wait_for_play()           # the greeting went out
            await call.say("sales")              # the caller speaks; a final "sales" follows
            await call.wait_for_play(2)          # the handler answered with a second prompt
        assert call.hung_up_by_bridge is False
        assert [e.type for e in call.events][:1] == ["call_started"]

What the handler sent to the caller is in ``call.outbound`` (plays with their length, marks,
clears); what the bridge emitted is in ``call.events``. Marks are echoed as soon as they
arrive (the prompt "played" instantly) unless ``echo_marks=False``: then call
:meth:`ScriptedCall.finish_playback` yourself, and speech before it barges in.
"""

from __future__ import annotations

import array
import asyncio
import base64
import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from ivr_bridge.call import Call, CallOptions
from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.dialects.base import UpgradeRequest
from ivr_bridge.dialects.registry import build_routes
from ivr_bridge.events.bus import EventBus
from ivr_bridge.events.console import CallbackSink
from ivr_bridge.handle import DialogOptions, Handler
from ivr_bridge.model import (
    Cursors,
    EndOfUtterance,
    FinalResult,
    Hypothesis,
    PartialResult,
    RecognitionUpdate,
    UtteranceEvent,
    Word,
)
from ivr_bridge.recognition.base import SessionConfig
from ivr_bridge.simulators.twilio import TwilioStreamEncoder

RATE = 8000
_LOUD = 200  # |sample| above this is speech to the scripted recognizer
_SPEECH_AMPLITUDE = 8000


# ---- the recognizer ----------------------------------------------------------------------


class ScriptedRecognizer:
    """A Recognizer whose every utterance (a run of loud audio, then ``eou_ms`` of quiet) is
    recognized as the next of the scripted phrases, in order; "" when they run out."""

    def __init__(self, phrases: Iterable[str] = (), *, eou_ms: int = 300) -> None:
        self.phrases: deque[str] = deque(phrases)
        self.eou_ms = eou_ms
        self.streams_opened = 0

    async def open_stream(self, config: SessionConfig, *, request_id: str) -> ScriptedStream:
        self.streams_opened += 1
        return ScriptedStream(self, config.sample_rate)

    async def refresh_credentials(self) -> bool:
        return False

    async def close(self) -> None:
        return None


class ScriptedStream:
    """One session of the ScriptedRecognizer (a RecognitionStream)."""

    def __init__(self, recognizer: ScriptedRecognizer, rate: int) -> None:
        self._rec = recognizer
        self._rate = rate
        self._pos = 0  # samples of session time
        self._speech_from: int | None = None
        self._speech_to = 0
        self._finals = 0
        self._updates: asyncio.Queue[RecognitionUpdate | None] = asyncio.Queue()

    def _ms(self, samples: int) -> int:
        return samples * 1000 // self._rate

    def _cursors(self) -> Cursors:
        now = self._ms(self._pos)
        return Cursors(received_data_ms=now, partial_time_ms=now, final_index=self._finals)

    def _advance(self, loud: bool, samples: int) -> None:
        if loud:
            if self._speech_from is None:
                self._speech_from = self._pos
                # A first partial (the phrase's first word) opens the utterance: speech_started.
                coming = self._rec.phrases[0].split()[:1] if self._rec.phrases else []
                start = self._ms(self._pos)
                hyp = Hypothesis(" ".join(coming), start, start + 20)
                self._updates.put_nowait(PartialResult(hyp, self._cursors()))
            self._speech_to = self._pos + samples
        self._pos += samples
        quiet_ms = self._ms(self._pos - self._speech_to)
        if self._speech_from is not None and not loud and quiet_ms >= self._rec.eou_ms:
            self._final()

    def _final(self) -> None:
        if self._speech_from is None:
            return
        text = self._rec.phrases.popleft() if self._rec.phrases else ""
        start, end = self._ms(self._speech_from), self._ms(self._speech_to)
        words = tuple(Word(w, start, end) for w in text.split())
        self._finals += 1
        self._speech_from = None
        cursors = self._cursors()
        self._updates.put_nowait(FinalResult(Hypothesis(text, start, end, words), cursors))
        self._updates.put_nowait(EndOfUtterance(end, cursors))

    async def send_audio(self, pcm: bytes) -> None:
        samples = array.array("h")
        samples.frombytes(pcm[: len(pcm) // 2 * 2])
        step = self._rate // 50  # judge 20 ms at a time, as a VAD would
        for i in range(0, len(samples), step):
            chunk = samples[i : i + step]
            self._advance(max(map(abs, chunk), default=0) > _LOUD, len(chunk))
        await asyncio.sleep(0)

    async def send_silence(self, duration_ms: int) -> None:
        self._advance(False, self._rate * duration_ms // 1000)
        await asyncio.sleep(0)

    async def finish(self) -> None:
        self._final()
        self._updates.put_nowait(None)

    async def updates(self) -> AsyncIterator[RecognitionUpdate]:
        while (item := await self._updates.get()) is not None:
            yield item

    def cancel(self) -> None:
        self._updates.put_nowait(None)


# ---- the connection and the call ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outbound:
    """Something the bridge sent to the caller's platform."""

    kind: str  # "play" | "mark" | "clear"
    ms: int = 0  # audio length, for a play
    name: str = ""  # for a mark


class _MemoryStream:
    """The platform's side of the websocket, in memory (a call.MessageStream)."""

    def __init__(self, on_frame: Callable[[str | bytes], None]) -> None:
        self.inbound: asyncio.Queue[str | bytes | None] = asyncio.Queue(maxsize=10_000)
        self.closed: tuple[int, str] | None = None
        self._on_frame = on_frame

    async def recv(self) -> str | bytes | None:
        return await self.inbound.get()

    async def send(self, message: str | bytes) -> None:
        self._on_frame(message)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


@dataclass
class _Seen:
    events: list[UtteranceEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class ScriptedCall:
    """One call from a scripted caller to ``handler``, in memory. Use ``async with``."""

    def __init__(
        self,
        handler: Handler,
        *,
        barge_in: bool = False,
        echo_marks: bool = True,
        clock: Clock = SYSTEM_CLOCK,
        custom_parameters: dict[str, str] | None = None,
        timeout_s: float = 10.0,
        queue_size: int = 256,
    ) -> None:
        self.recognizer = ScriptedRecognizer()
        self.outbound: list[Outbound] = []
        self.echo_marks = echo_marks
        self._pending_marks: list[str] = []
        self._timeout = timeout_s
        self._seen = _Seen()
        self._encoder = TwilioStreamEncoder(
            tracks=("inbound",), custom_parameters=custom_parameters or {}
        )
        self._stream = _MemoryStream(self._on_frame)
        self._bus = EventBus(1000, clock=clock)
        self._bus.add_sink(CallbackSink(self._on_event))
        route = build_routes({})["/twilio"]
        dialog = DialogOptions(handler, barge_in=barge_in, queue_size=queue_size)
        self.call = Call(
            call_id="call_scripted",
            dialect=route.factory.open(_upgrade(route.path, clock)),
            stream=self._stream,
            recognizer=self.recognizer,
            options=CallOptions(SessionConfig(sample_rate=RATE), dialog=dialog),
            bus=self._bus,
            clock=clock,
        )
        self._task: asyncio.Task[None] | None = None

    # ---- what happened ---------------------------------------------------------------

    @property
    def events(self) -> list[UtteranceEvent]:
        """Every event the bridge emitted for this call so far, in order."""
        return list(self._seen.events)

    @property
    def plays(self) -> list[Outbound]:
        return [o for o in self.outbound if o.kind == "play"]

    @property
    def hung_up_by_bridge(self) -> bool:
        """The bridge closed the connection (the handler called ``hangup``)."""
        return self.call.end_reason == "disconnect"

    def of_type(self, kind: str) -> list[UtteranceEvent]:
        return [e for e in self._seen.events if e.type == kind]

    # ---- driving the call ---------------------------------------------------------------

    async def __aenter__(self) -> ScriptedCall:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.hangup()

    async def start(self) -> None:
        """Connect and send the platform's opening; returns once call_started is out."""
        self._task = asyncio.create_task(self.call.run(), name="scripted-call")
        for frame in self._encoder.opening():
            await self._send(frame)
        await self.wait_for_event("call_started")

    async def say(self, text: str, *, speech_ms: int = 600, quiet_ms: int = 400) -> None:
        """The caller says ``text``: loud audio, then quiet; returns once its final is out."""
        self.recognizer.phrases.append(text)
        finals = len(self.of_type("final"))
        speech = array.array("h", [_SPEECH_AMPLITUDE] * (RATE * speech_ms // 1000)).tobytes()
        await self._audio(speech)
        await self._audio(bytes(2 * (RATE * quiet_ms // 1000)))
        await self.wait_for_event("final", count=finals + 1)

    async def press(self, digit: str) -> None:
        """A DTMF key press; returns once the dtmf event is out."""
        count = len(self.of_type("dtmf"))
        for frame in self._encoder.digit(digit):
            await self._send(frame)
        await self.wait_for_event("dtmf", count=count + 1)

    async def silence(self, ms: int) -> None:
        """The caller says nothing for ``ms`` of call audio."""
        await self._audio(bytes(2 * (RATE * ms // 1000)))

    def finish_playback(self) -> None:
        """The platform finished playing what was queued: echo its marks now."""
        for name in self._pending_marks:
            self._stream.inbound.put_nowait(self._encoder.mark(name))
        self._pending_marks.clear()

    async def wait_for_play(self, count: int = 1) -> None:
        """Until the bridge has sent ``count`` prompts (plays) in all."""
        await self._until(lambda: len(self.plays) >= count, f"{count} play(s)")

    async def wait_for_event(self, kind: str, count: int = 1) -> UtteranceEvent:
        """Until ``count`` events of ``kind`` were emitted; returns the last of them."""
        await self._until(lambda: len(self.of_type(kind)) >= count, f"{count} {kind} event(s)")
        return self.of_type(kind)[count - 1]

    async def hangup(self) -> None:
        """The caller hangs up (if the bridge has not already); returns after call_ended and
        the handler's end."""
        if self._task is None:
            return
        if not self._task.done():
            for frame in self._encoder.closing():
                await self._send(frame)
            self._stream.inbound.put_nowait(None)
        await asyncio.wait_for(asyncio.shield(self._task), self._timeout)
        await self._bus.aclose(self._timeout)
        self._task = None

    # ---- internals ------------------------------------------------------------------

    async def _audio(self, pcm: bytes) -> None:
        step = RATE * self._encoder.frame_ms // 1000 * 2
        for i in range(0, len(pcm), step):
            frame, _ = self._encoder.audio(pcm[i : i + step], "inbound")
            await self._send(frame)

    async def _send(self, frame: str | bytes) -> None:
        if self._task is not None and self._task.done():
            return  # the bridge already ended the call; the caller's frames go nowhere
        await self._stream.inbound.put(frame)
        await asyncio.sleep(0)

    def _on_frame(self, frame: str | bytes) -> None:
        message: Any = json.loads(frame)
        kind = message.get("event")
        if kind == "media":
            samples = len(base64.b64decode(message["media"]["payload"]))  # one byte each
            last = self.outbound[-1] if self.outbound else None
            if last is not None and last.kind == "play":
                # Consecutive media frames are one prompt until a mark closes it.
                self.outbound[-1] = Outbound("play", last.ms + samples * 1000 // RATE)
            else:
                self.outbound.append(Outbound("play", samples * 1000 // RATE))
            self._seen.changed.set()
        elif kind == "mark":
            name = message["mark"]["name"]
            self.outbound.append(Outbound("mark", name=name))
            self._pending_marks.append(name)
            if self.echo_marks:
                self.finish_playback()
        elif kind == "clear":
            self.outbound.append(Outbound("clear"))
            self._pending_marks.clear()
        self._seen.changed.set()

    def _on_event(self, event: UtteranceEvent) -> None:
        self._seen.events.append(event)
        self._seen.changed.set()

    async def _until(self, condition: Callable[[], bool], what: str) -> None:
        async def wait() -> None:
            while not condition():
                if self._task is not None and self._task.done() and not condition():
                    raise AssertionError(f"the call ended before {what}")
                self._seen.changed.clear()
                try:
                    await asyncio.wait_for(self._seen.changed.wait(), 0.05)
                except TimeoutError:
                    continue

        try:
            await asyncio.wait_for(wait(), self._timeout)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None


def _upgrade(path: str, clock: Clock) -> UpgradeRequest:
    return UpgradeRequest(path=path, now=clock.wall())
