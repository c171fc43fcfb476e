"""examples/voice_menu.py end to end: a real bridge (embedded recognizer, tones engine) and
the simulator's Twilio call, by speech, by keys, and in silence."""

from __future__ import annotations

import json
from typing import Any

from ivr_bridge.local.tones import synthesize_script
from ivr_bridge.simulate import simulate_pcm

from .conftest import StartBridge
from .examples import load_example

menu_module = load_example("voice_menu")


def prompts_sent(received: list[str]) -> list[str]:
    """The prompts the bridge played to the simulated caller, from its mark frames."""
    names = []
    for frame in received:
        message: dict[str, Any] = json.loads(frame)
        if message.get("event") == "mark":
            names.append(message["mark"]["name"].removeprefix("prompt:"))
    return names


async def run_menu(
    tone_bridge: StartBridge, pcm: bytes, *, fast: bool, dtmf: list[tuple[float, str]], **cfg: Any
) -> tuple[list[Any], Any, list[str]]:
    outcomes: list[Any] = []
    menu = menu_module.VoiceMenu(menu_module.MenuConfig(**cfg), on_outcome=outcomes.append)
    app = await tone_bridge(handler=menu)
    report = await simulate_pcm(
        app.url("/twilio"), pcm, fast=fast, dtmf=dtmf, trailing_silence_s=2.0
    )
    return outcomes, report, prompts_sent(report.received)


async def test_a_caller_chooses_by_speech_and_confirms(tone_bridge: StartBridge) -> None:
    caller = synthesize_script([["balance"], ["yes"]])
    outcomes, report, prompts = await run_menu(tone_bridge, caller, fast=False, dtmf=[])
    (outcome,) = outcomes
    assert (outcome.choice, outcome.reason) == ("balance", "confirmed")
    assert prompts == ["greeting", "menu", "confirm_balance", "goodbye"]
    assert report.closed_by_server  # the menu hung up
    # The simulator echoes no marks, so the menu was still "playing" when the caller spoke.
    assert outcome.barge_ins >= 1
    assert any('"event": "clear"' in f or '"event":"clear"' in f for f in report.received)


async def test_a_caller_chooses_by_keys_and_can_say_no_first(tone_bridge: StartBridge) -> None:
    silence = bytes(2 * 8000 * 3)
    dtmf = [(0.2, "2"), (0.8, "2"), (1.4, "0"), (2.0, "1")]
    outcomes, _, prompts = await run_menu(tone_bridge, silence, fast=False, dtmf=dtmf)
    (outcome,) = outcomes
    assert (outcome.choice, outcome.reason) == ("agent", "confirmed")
    assert prompts == [
        "greeting",
        "menu",
        "confirm_payment",
        "menu_again",
        "confirm_agent",
        "goodbye",
    ]


async def test_silence_reprompts_then_ends_the_call(tone_bridge: StartBridge) -> None:
    silence = bytes(2 * 8000 * 4)
    outcomes, report, prompts = await run_menu(
        tone_bridge, silence, fast=False, dtmf=[], silence_timeout_s=0.5, max_retries=1
    )
    (outcome,) = outcomes
    assert (outcome.choice, outcome.reason) == (None, "no_input")
    assert prompts == ["greeting", "menu", "menu_again", "no_input"]
    assert report.closed_by_server
