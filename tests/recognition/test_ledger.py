from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_bridge.audio.codecs import ulaw_to_pcm16
from ivr_bridge.recognition.ledger import AudioLedger


def pcm(n: int, value: int = 1) -> bytes:
    return value.to_bytes(2, "little", signed=True) * n


def test_append_and_read_audio_in_chunks() -> None:
    led = AudioLedger(8000, 60)
    for _ in range(10):
        led.append_audio(pcm(160))
    assert led.end == 1600
    piece = led.read(0, 800, 8000)
    assert piece is not None and piece.start == 0 and piece.length == 800
    assert piece.pcm == pcm(800)
    assert led.read(1600, 800, 8000) is None


def test_silence_runs_are_separate_pieces() -> None:
    led = AudioLedger(8000, 60)
    led.append_audio(pcm(400))
    led.append_silence(8000)
    led.append_audio(pcm(400, 7))
    first = led.read(0, 800, 8000)
    assert first is not None and first.length == 400 and not first.is_silence
    silence = led.read(400, 800, 4000)
    assert silence is not None and silence.is_silence and silence.length == 4000
    rest = led.read(4400, 800, 8000)
    assert rest is not None and rest.is_silence and rest.length == 4000
    last = led.read(8400, 800, 8000)
    assert last is not None and last.pcm == pcm(400, 7)


def test_odd_trailing_byte_is_ignored() -> None:
    led = AudioLedger(8000, 60)
    led.append_audio(b"\x01\x00\x02")
    led.append_audio(b"")
    assert led.end == 1


def test_sent_first_and_replay_accounting() -> None:
    led = AudioLedger(8000, 60)
    led.append_audio(pcm(1600))
    a = led.read(0, 800, 8000)
    b = led.read(800, 800, 8000)
    assert a and b
    led.note_sent(a)
    led.note_sent(b)
    led.note_sent(a)  # a replay after a reconnect
    st_ = led.stats()
    assert st_.sent_first_samples == 1600
    assert st_.replayed_samples == 800
    assert st_.pending_samples == 0


def test_overflow_drops_oldest_unsent_and_counts_it() -> None:
    led = AudioLedger(1000, 2)  # 2 s = 2000 samples
    for _ in range(5):
        led.append_audio(pcm(1000))
    assert led.base == 3000
    assert led.dropped == 3000
    stats = led.stats()
    assert (
        stats.received_samples
        == stats.sent_first_samples + stats.dropped_samples + stats.pending_samples
    )


def test_overflow_after_sending_drops_nothing() -> None:
    led = AudioLedger(1000, 1)
    led.append_audio(pcm(1000))
    p = led.read(0, 1000, 1000)
    assert p
    led.note_sent(p)
    led.append_audio(pcm(500))
    assert led.base == 500 and led.dropped == 0


def test_read_before_base_is_clamped() -> None:
    led = AudioLedger(1000, 1)
    led.append_audio(pcm(3000))
    piece = led.read(0, 100, 100)
    assert piece is not None and piece.start == 2000


def test_abandon_pending_counts_dropped() -> None:
    led = AudioLedger(8000, 60)
    led.append_audio(pcm(500))
    assert led.abandon_pending() == 500
    assert led.stats().pending_samples == 0 and led.dropped == 500


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        AudioLedger(0, 1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["audio", "silence", "send", "abandon"]),
            st.integers(min_value=1, max_value=3000),
        ),
        max_size=60,
    )
)
def test_every_sample_is_accounted_for(ops: list[tuple[str, int]]) -> None:
    """received = sent first + dropped + pending, whatever happens."""
    led = AudioLedger(1000, 4)
    cursor = 0
    for op, n in ops:
        if op == "audio":
            led.append_audio(pcm(n))
        elif op == "silence":
            led.append_silence(n)
        elif op == "send":
            cursor = max(cursor, led.base)
            piece = led.read(cursor, n, n)
            if piece is not None:
                led.note_sent(piece)
                cursor = piece.end
        else:
            led.abandon_pending()
            cursor = led.end
        s = led.stats()
        assert s.received_samples == s.sent_first_samples + s.dropped_samples + s.pending_samples
        assert led.end - led.base <= led.capacity


def test_quietest_point_finds_the_gap_between_words() -> None:
    led = AudioLedger(1000, 60)
    led.append_audio(pcm(500, 3000) + pcm(30, 0) + pcm(500, 3000))
    assert 495 <= led.quietest_point(450, radius=200, window=10) <= 520
    led.append_silence(100)
    assert led.quietest_point(1000, radius=100, window=10) == 1030
    assert led.quietest_point(5000, radius=10, window=10) == 5000


def test_loudest_sees_speech_but_not_inserted_silence() -> None:
    led = AudioLedger(1000, 60)
    led.append_audio(pcm(100, 0))
    led.append_silence(200)
    assert led.loudest(0, led.end, 20) == 0
    led.append_audio(pcm(40, 0) + pcm(40, 5000))
    assert led.loudest(0, led.end, 20) == 5000
    assert led.loudest(0, 340, 20) == 0


def test_mulaw_exact_audio_is_kept_in_one_byte_per_sample_and_read_back_exactly() -> None:
    telephony = ulaw_to_pcm16(bytes(range(256)) * 5)  # every mu-law code, as a PBX sends it
    other = pcm(640, 5)  # 5 has no exact mu-law code: stays PCM16
    led = AudioLedger(8000, 60)
    led.append_audio(telephony)
    led.append_audio(other)
    assert led.held_bytes == 1280 + 1280
    piece = led.read(0, 1920, 8000)
    assert piece is not None and piece.pcm == telephony + other


def test_released_audio_is_freed_once_sent_but_never_before() -> None:
    led = AudioLedger(8000, 60)
    for _ in range(50):  # one second in 20 ms frames
        led.append_audio(pcm(160, 8))
    led.release(4000)
    assert led.base == 0  # nothing sent yet: nothing may go
    piece = led.read(0, 6000, 8000)
    assert piece is not None
    led.note_sent(piece)
    led.hold(piece.end)
    led.release(4000)
    assert led.base == 4000 and led.held_bytes == 4000  # mu-law: one byte per sample
    led.hold(3000)  # a session about to replay from (before) the base holds it there
    led.release(8000)
    assert led.base == 4000  # the hold at 3000 bounds it
    led.hold(None)
    led.release(8000)
    assert led.base == 6000  # never past what was sent
    st = led.stats()
    assert st.dropped_samples == 0 and st.pending_samples == 2000
    assert st.received_samples == st.sent_first_samples + st.dropped_samples + st.pending_samples


@given(st.lists(st.binary(min_size=0, max_size=400), min_size=1, max_size=12))
@settings(max_examples=60, deadline=None)
def test_wire_ulaw_is_kept_as_received_and_reads_back_the_same(frames: list[bytes]) -> None:
    """Audio that arrived as mu-law is stored from the wire bytes, not re-encoded, and reads
    back exactly as the ledger that encodes the PCM itself."""
    given_wire = AudioLedger(8000, 60)
    encoded = AudioLedger(8000, 60)
    for wire in frames:
        decoded = ulaw_to_pcm16(wire)
        given_wire.append_audio(decoded, wire)
        encoded.append_audio(decoded)
    assert given_wire.end == encoded.end
    assert given_wire.held_bytes == encoded.held_bytes
    if encoded.end:
        a = given_wire.read(0, encoded.end, 8000)
        b = encoded.read(0, encoded.end, 8000)
        assert a is not None and b is not None and a.pcm == b.pcm


def test_wire_ulaw_of_the_wrong_length_is_ignored() -> None:
    """A mismatched wire copy cannot corrupt the ledger: the PCM is encoded as usual."""
    led = AudioLedger(8000, 60)
    led.append_audio(pcm(160, 1000), b"\xff" * 10)
    piece = led.read(0, 160, 8000)
    assert piece is not None and piece.pcm == pcm(160, 1000)


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("ulaw"), st.integers(1, 3000)),
            st.tuples(st.just("pcm"), st.integers(1, 3000)),
            st.tuples(st.just("silence"), st.integers(1, 3000)),
        ),
        min_size=1,
        max_size=14,
    ),
    st.lists(st.tuples(st.integers(0, 20000), st.integers(1, 9000)), min_size=1, max_size=8),
)
@settings(max_examples=150, deadline=None)
def test_reads_match_the_timeline_across_blocks(
    ops: list[tuple[str, int]], reads: list[tuple[int, int]]
) -> None:
    """Any read is the timeline's samples from its start: the run of audio up to the limit
    (across mu-law and PCM16 blocks, and the 8000-sample block size), or one silence run."""
    led = AudioLedger(8000, 60)
    timeline: list[int | None] = []  # each sample's PCM16 value, None for inserted silence
    for i, (kind, n) in enumerate(ops):
        if kind == "silence":
            led.append_silence(n)
            timeline += [None] * n
            continue
        if kind == "ulaw":
            wire = bytes((i * 37 + k * 11) & 0xFF for k in range(n))
            audio = ulaw_to_pcm16(wire)
            led.append_audio(audio, wire)
        else:  # values mu-law cannot hold exactly: kept as PCM16
            audio = b"".join(
                (1 + (k % 7) * 3 + i).to_bytes(2, "little", signed=True) for k in range(n)
            )
            led.append_audio(audio)
        timeline += [
            int.from_bytes(audio[k : k + 2], "little", signed=True) for k in range(0, 2 * n, 2)
        ]
    for start, limit in reads:
        piece = led.read(start, limit, limit)
        if start >= len(timeline):
            assert piece is None
            continue
        assert piece is not None and piece.start == start
        if timeline[start] is None:
            run = 0
            while start + run < len(timeline) and timeline[start + run] is None and run < limit:
                run += 1
            assert piece.pcm is None and piece.length == run
            continue
        want: list[int] = []
        pos = start
        while pos < len(timeline) and len(want) < limit:
            value = timeline[pos]
            if value is None:
                break
            want.append(value)
            pos += 1
        assert piece.length == len(want)
        assert piece.pcm == b"".join(v.to_bytes(2, "little", signed=True) for v in want)
