from __future__ import annotations

from ivr_bridge.local.engine import EngineEou, EngineFinal, EngineOptions, EnginePartial, get_engine
from ivr_bridge.local.tones import synthesize_script, synthesize_words


def test_utterances_give_partials_final_and_eou() -> None:
    engine = get_engine("ivr_bridge.local.tone_engine:ToneEngine")
    session = engine.open_session(EngineOptions(sample_rate=8000))
    pcm = synthesize_script([["hello", "agent"], ["yes"]], pause_ms=1000)
    events = []
    for i in range(0, len(pcm), 1600):
        events += session.feed(pcm[i : i + 1600])
    events += session.finish()
    finals = [e for e in events if isinstance(e, EngineFinal)]
    assert [f.text for f in finals] == ["hello agent", "yes"]
    assert [type(e).__name__ for e in events].count("EngineEou") == 2
    assert any(isinstance(e, EnginePartial) and e.text == "hello" for e in events)
    assert session.final_time_ms == session.processed_ms


def test_silence_chunks_end_the_utterance_and_long_phrases_are_sliced() -> None:
    engine = get_engine("ivr_bridge.local.tone_engine:ToneEngine")
    session = engine.open_session(EngineOptions(sample_rate=8000, max_utterance_ms=1000))
    events = session.feed(synthesize_words(["one", "two", "three", "four", "five", "six"]))
    assert any(isinstance(e, EngineFinal) for e in events)  # sliced before 1 s
    session.feed(synthesize_words(["seven"], gap_ms=0))
    events = session.add_silence(800)
    assert [e.text for e in events if isinstance(e, EngineFinal)] == ["seven"]
    assert isinstance(events[-1], EngineEou)
    forced = session.force_endpoint()
    assert forced == [EngineEou(session.processed_ms)]
    session.close()
