"""Prompt tracking: which prompt the caller interrupted, and where."""

from __future__ import annotations

from ivr_bridge.prompts import PromptTracker


def test_cut_in_the_middle_of_the_first_prompt() -> None:
    t = PromptTracker()
    t.queued("greeting", 3000, now=10.0)
    t.queued("menu", 5000, now=10.1)
    cut = t.cut(now=11.5)
    assert cut is not None
    assert (cut.prompt, cut.played_ms, cut.duration_ms) == ("greeting", 1500, 3000)
    assert cut.queued_after == ("menu",)
    assert not t.playing and t.cut(now=12.0) is None


def test_prompts_play_back_to_back() -> None:
    t = PromptTracker()
    t.queued("a", 1000, now=0.0)
    t.queued("b", 2000, now=0.0)
    cut = t.cut(now=1.8)
    assert cut is not None and (cut.prompt, cut.played_ms) == ("b", 800)


def test_a_late_prompt_starts_when_it_was_queued() -> None:
    t = PromptTracker()
    t.queued("a", 1000, now=0.0)
    t.queued("b", 1000, now=5.0)
    cut = t.cut(now=5.25)
    assert cut is not None and (cut.prompt, cut.played_ms) == ("b", 250)


def test_mark_echo_finishes_prompts_up_to_it() -> None:
    t = PromptTracker()
    t.queued("a", 1000, now=0.0)
    t.queued("b", 1000, now=0.0)
    assert t.mark_echoed("customer-mark", now=0.5) is None
    assert t.mark_echoed(PromptTracker.mark_for("zzz"), now=0.5) is None
    assert t.mark_echoed(PromptTracker.mark_for("a"), now=1.2) == "a"
    cut = t.cut(now=1.7)
    # b started when a's echo came back (1.2 s), not at 1.0 s.
    assert cut is not None and (cut.prompt, cut.played_ms) == ("b", 500)
    assert t.mark_echoed(PromptTracker.mark_for("b"), now=2.0) is None


def test_played_never_exceeds_the_prompt() -> None:
    t = PromptTracker()
    t.queued("a", 1000, now=0.0)
    cut = t.cut(now=9.0)
    assert cut is not None and cut.played_ms == 1000


def test_the_tracked_list_is_bounded() -> None:
    from ivr_bridge.prompts import MAX_TRACKED

    t = PromptTracker()
    for i in range(MAX_TRACKED + 10):
        t.queued(f"p{i}", 1000, now=0.0)
    cut = t.cut(now=0.5)
    # The ten oldest were forgotten: the first one still tracked is the one playing.
    assert cut is not None and cut.prompt == "p10"
    assert len(cut.queued_after) == MAX_TRACKED - 1
