"""A voice menu on the in-process dialog API: greet, offer choices, confirm, hang up.

    python examples/voice_menu.py [--config bridge.toml] [--prompts DIR]
    ivr-bridge simulate --url ws://127.0.0.1:8080/twilio caller.wav

The caller picks by speech ("balance", "payment", "agent") or by key (1, 2, 0), then confirms
("yes"/1 or "no"/2). Speaking over a prompt stops it (barge-in is switched on here); a caller
who says nothing for ``silence_timeout_s`` hears the menu again, and after ``max_retries``
silent or unclear answers the call ends with the outcome ``no_input``.

Prompts are WAV files ``DIR/<name>.wav`` (greeting, menu, menu_again, confirm_balance, ...);
without ``--prompts`` each is a short beep, so the example runs with nothing to record.
"""

from __future__ import annotations

import argparse
import asyncio
import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import structlog

import ivr_bridge
from ivr_bridge.handle import CallHandle
from ivr_bridge.model import UtteranceEvent

log = structlog.get_logger("voice_menu")
T = TypeVar("T")

CHOICES = {"balance": "1", "payment": "2", "agent": "0"}  # spoken word -> key
YES, NO = ({"yes", "one"}, "1"), ({"no", "two"}, "2")
PROMPT_MS = {"greeting": 700, "menu": 1500, "menu_again": 1200, "goodbye": 500, "no_input": 600}


@dataclass(frozen=True, slots=True)
class Outcome:
    call_id: str
    choice: str | None  # "balance" | "payment" | "agent", or None
    reason: str  # "confirmed" | "no_input"
    barge_ins: int


@dataclass(frozen=True, slots=True)
class MenuConfig:
    silence_timeout_s: float = 5.0
    max_retries: int = 2
    prompts_dir: Path | None = None


def beep(ms: int, hz: float = 440.0, rate: int = 8000) -> bytes:
    """A quiet sine beep standing in for a recorded prompt (PCM16 mono)."""
    n = rate * ms // 1000
    return array(
        "h", (int(3000 * math.sin(2 * math.pi * hz * i / rate)) for i in range(n))
    ).tobytes()


def parse_choice(event: UtteranceEvent) -> str | None:
    if event.type == "dtmf":
        return next((c for c, key in CHOICES.items() if key == event.data["digit"]), None)
    words = str(event.data.get("text", "")).split()
    return next((w for w in words if w in CHOICES), None)


def parse_yes_no(event: UtteranceEvent) -> bool | None:
    if event.type == "dtmf":
        digit = event.data["digit"]
        return True if digit == YES[1] else False if digit == NO[1] else None
    words = set(str(event.data.get("text", "")).split())
    return True if words & YES[0] else False if words & NO[0] else None


class VoiceMenu:
    """The handler: ``ivr_bridge.serve(VoiceMenu(), settings)``; one run per call."""

    def __init__(
        self, config: MenuConfig = MenuConfig(), on_outcome: Callable[[Outcome], None] | None = None
    ) -> None:
        self.config = config
        self.on_outcome = on_outcome

    async def __call__(self, call: CallHandle) -> None:
        barge_ins = [0]
        try:
            choice = await self._menu(call, barge_ins)
        except ivr_bridge.CallGone:
            return  # the caller hung up first
        outcome = Outcome(call.call_id, choice, "confirmed" if choice else "no_input", barge_ins[0])
        log.info("menu_outcome", call_id=call.call_id, choice=choice, reason=outcome.reason)
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        await self._say(call, "goodbye" if choice else "no_input")
        await call.hangup(outcome.reason)

    async def _menu(self, call: CallHandle, barge_ins: list[int]) -> str | None:
        await self._say(call, "greeting")
        prompt = "menu"
        for _ in range(self.config.max_retries + 1):
            await self._say(call, prompt)
            prompt = "menu_again"
            choice = await self._ask(call, parse_choice, barge_ins)
            if choice is None:
                continue
            await self._say(call, f"confirm_{choice}")
            if await self._ask(call, parse_yes_no, barge_ins):
                return choice
        return None

    async def _ask(
        self, call: CallHandle, parse: Callable[[UtteranceEvent], T | None], barge_ins: list[int]
    ) -> T | None:
        """The caller's answer, or None after a silence timeout or an answer we cannot use."""
        while True:
            event = await call.next_event(timeout=self.config.silence_timeout_s)
            if event is None:
                log.info("menu_silence", call_id=call.call_id)
                return None
            if event.type == "barge_in":
                barge_ins[0] += 1
                log.info(
                    "menu_barge_in", prompt=event.data["prompt"], at_ms=event.data["played_ms"]
                )
            elif event.type in ("final", "dtmf"):
                return parse(event)
            elif event.type == "call_ended":
                raise ivr_bridge.CallGone(call.call_id)

    async def _say(self, call: CallHandle, name: str) -> None:
        directory = self.config.prompts_dir
        if directory is not None and (directory / f"{name}.wav").exists():
            await call.play(directory / f"{name}.wav", name=name)
        else:
            await call.play(beep(PROMPT_MS.get(name, 900)), name=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="the bridge's TOML config")
    parser.add_argument("--prompts", type=Path, help="directory of <prompt>.wav files")
    parser.add_argument("--silence-timeout", type=float, default=5.0)
    args = parser.parse_args()
    settings = ivr_bridge.load_settings(args.config)
    settings = replace(settings, dialog=replace(settings.dialog, barge_in=True))
    menu = VoiceMenu(MenuConfig(args.silence_timeout, prompts_dir=args.prompts))
    asyncio.run(ivr_bridge.serve(menu, settings))


if __name__ == "__main__":
    main()
