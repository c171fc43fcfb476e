"""ivr_bridge.testing: a handler driven by a scripted call, as a user would test theirs."""

from __future__ import annotations

from ivr_bridge.handle import CallHandle
from ivr_bridge.testing import ScriptedCall


async def echo_digits(call: CallHandle) -> None:
    await call.play(bytes(1600), name="hello")
    async for event in call.events():
        if event.type == "dtmf":
            await call.play(bytes(800), name=f"digit-{event.data['digit']}")
        elif event.type == "final" and event.data["text"] == "goodbye":
            await call.hangup("caller said goodbye")


async def test_a_handler_plays_answers_digits_and_hangs_up_on_request() -> None:
    async with ScriptedCall(echo_digits) as call:
        await call.wait_for_play()
        await call.press("7")
        await call.wait_for_play(2)
        await call.say("goodbye")
        await call.wait_for_event("call_ended")
    assert [p.ms for p in call.plays] == [100, 50]  # 1600 and 800 bytes of PCM16 at 8 kHz
    assert [o.name for o in call.outbound if o.kind == "mark"] == ["prompt:hello", "prompt:digit-7"]
    assert call.hung_up_by_bridge
    ended = call.of_type("call_ended")[0]
    assert ended.data["reason"] == "disconnect" and ended.data["dialog_events_dropped"] == 0
    types = [e.type for e in call.events]
    assert types[0] == "call_started" and "mark" in types and types[-1] == "call_ended"


async def test_speech_over_a_prompt_barges_in_and_says_where() -> None:
    async def menu(call: CallHandle) -> None:
        await call.play(bytes(16000), name="menu")  # 1 s at 8 kHz
        async for event in call.events():
            if event.type == "barge_in":
                await call.play(bytes(1600), name="sorry")

    async with ScriptedCall(menu, barge_in=True, echo_marks=False) as call:
        await call.wait_for_play()
        await call.say("operator")
        barge = await call.wait_for_event("barge_in")
        await call.wait_for_play(2)
    assert barge.data["prompt"] == "menu" and barge.data["duration_ms"] == 1000
    assert 0 <= barge.data["played_ms"] <= 1000
    kinds = [o.kind for o in call.outbound]
    assert kinds == ["play", "mark", "clear", "play", "mark"]
    seqs = [(e.type, e.seq) for e in call.events if e.type in ("speech_started", "barge_in")]
    assert seqs[0][0] == "speech_started" and seqs[1][0] == "barge_in" and seqs[1][1] > seqs[0][1]


async def test_a_crashing_handler_is_logged_and_the_call_goes_on() -> None:
    async def broken(call: CallHandle) -> None:
        raise RuntimeError("bug in user code")

    async with ScriptedCall(broken) as call:
        await call.say("hello")
    assert [e.data["text"] for e in call.of_type("final")] == ["hello"]
    assert call.of_type("call_ended")[0].data["reason"] != "disconnect"


async def test_a_slow_handler_loses_only_its_own_oldest_events_and_they_are_counted() -> None:
    async def never_reads(call: CallHandle) -> None:
        await call.play(bytes(160))

    async with ScriptedCall(never_reads, queue_size=2) as call:
        for digit in "1234":
            await call.press(digit)
    ended = call.of_type("call_ended")[0]
    assert ended.data["dialog_events_dropped"] >= 3
    assert len(call.of_type("dtmf")) == 4  # the sinks still got every event
