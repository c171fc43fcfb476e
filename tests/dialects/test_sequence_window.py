"""The Twilio family's sequence accounting (a 1,024-number window kept as a bit mask) against
a plain reference: duplicates, reorders, gaps and missing counts, at and past the window's
edge, jumps wider than the window, and a long stream with a few anomalies."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_bridge.dialects.twilio_family import TwilioStyleDialect
from tests.dialects.family_media import (
    NAMES,
    PLATFORMS,
    Platform,
    compact,
    encoder,
    media_message,
    started,
)

WINDOW = 1024
BY_NAME = {p.name: p for p in PLATFORMS}


@dataclass
class ReferenceWindow:
    """The rule in its plainest form: a number counts as a duplicate if it was seen and lies
    within WINDOW of the highest number so far; any other number not above it is a reorder."""

    last: int | None = None
    seen: set[int] = field(default_factory=set)
    gaps: int = 0
    missing: int = 0
    duplicates: int = 0
    reorders: int = 0

    def note(self, seq: int) -> None:
        if self.last is None or seq > self.last:
            if self.last is not None and seq != self.last + 1:
                self.gaps += 1
                self.missing += seq - self.last - 1
            self.last = seq
            self.seen.add(seq)
            return
        in_window = self.last - seq < WINDOW
        if in_window and seq in self.seen:
            self.duplicates += 1
            return
        self.reorders += 1
        if in_window:
            self.seen.add(seq)

    def counts(self) -> dict[str, int]:
        return {
            "sequence_gaps": self.gaps,
            "sequence_missing": self.missing,
            "sequence_duplicates": self.duplicates,
            "sequence_reorders": self.reorders,
        }


class Stream:
    """One started dialect fed media messages with chosen sequence numbers."""

    def __init__(self, platform: Platform) -> None:
        self.enc = encoder(platform)
        self.dialect: TwilioStyleDialect = started(platform, self.enc)
        self.payload = bytes(platform.frame_bytes)
        self.first = self.enc.sequence_number + 1  # start took the numbers before this

    def feed(self, seq: int) -> None:
        text = compact(media_message(self.enc, seq, timestamp=20 * seq, payload=self.payload))
        events = self.dialect.receive_text(text)
        assert events, "every media frame is handed on, anomalous numbers included"

    def counts(self) -> dict[str, int]:
        counters = self.dialect.counters.as_dict()
        return {k: v for k, v in counters.items() if k.startswith("sequence_")}


def run(platform: Platform, seqs: list[int]) -> tuple[dict[str, int], dict[str, int]]:
    """Feed ``seqs`` (after the opening frames); the dialect's counts and the reference's."""
    stream = Stream(platform)
    ref = ReferenceWindow()
    for seq in range(1, stream.first):
        ref.note(seq)  # the numbers the opening frames used
    for seq in seqs:
        stream.feed(seq)
        ref.note(seq)
    return stream.counts(), ref.counts()


def expect(
    gaps: int = 0, missing: int = 0, duplicates: int = 0, reorders: int = 0
) -> dict[str, int]:
    return {
        "sequence_gaps": gaps,
        "sequence_missing": missing,
        "sequence_duplicates": duplicates,
        "sequence_reorders": reorders,
    }


def from_start(platform: Platform, offsets: list[int]) -> list[int]:
    """Sequence numbers given as offsets from the first media number (0 = the first)."""
    return [Stream(platform).first + o for o in offsets]


@pytest.mark.parametrize("name", NAMES)
def test_in_order_stream_has_no_anomalies(name: str) -> None:
    counts, ref = run(BY_NAME[name], from_start(BY_NAME[name], list(range(50))))
    assert counts == ref == expect()


@pytest.mark.parametrize("name", NAMES)
def test_gap_then_late_arrivals_then_repeats(name: str) -> None:
    # 0, 1, 4 (skips 2 and 3), 2 late, 2 again, 3 late, 4 again.
    seqs = from_start(BY_NAME[name], [0, 1, 4, 2, 2, 3, 4])
    counts, ref = run(BY_NAME[name], seqs)
    assert counts == ref == expect(gaps=1, missing=2, duplicates=2, reorders=2)


@pytest.mark.parametrize("name", NAMES)
def test_a_repeat_exactly_at_the_window_edge(name: str) -> None:
    # Highest is 1023 above the first: the first is the window's oldest number, still a
    # duplicate. One more step forward and it falls out: a late arrival again, twice.
    seqs = from_start(BY_NAME[name], [0, 1023, 0, 1024, 0, 0])
    counts, ref = run(BY_NAME[name], seqs)
    assert counts == ref == expect(gaps=1, missing=1022, duplicates=1, reorders=2)


@pytest.mark.parametrize("name", NAMES)
def test_late_numbers_just_inside_and_just_outside_the_window(name: str) -> None:
    platform = BY_NAME[name]
    first = Stream(platform).first
    top = first + 3000
    # top - 1023 arrives late (inside: remembered, its repeat is a duplicate);
    # top - 1024 arrives late (outside: not remembered, its repeat is a late arrival again).
    seqs = [first, top, top - 1023, top - 1023, top - 1024, top - 1024]
    counts, ref = run(platform, seqs)
    assert counts == ref == expect(gaps=1, missing=2999, duplicates=1, reorders=3)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("jump", [WINDOW - 1, WINDOW, WINDOW + 1, 5000, 10**12])
def test_jumps_up_to_and_wider_than_the_window(name: str, jump: int) -> None:
    platform = BY_NAME[name]
    first = Stream(platform).first
    top = first + 1 + jump
    # first, first+1, then a jump: first+1 is `jump` behind the top.
    seqs = [first, first + 1, top, first + 1, top, top - 1, top - 1, top + 1]
    counts, ref = run(platform, seqs)
    assert counts == ref
    inside = jump < WINDOW
    assert counts == expect(
        gaps=1,
        missing=jump - 1,
        duplicates=2 + (1 if inside else 0),  # top again, top-1 again (+ first+1 again)
        reorders=1 + (0 if inside else 1),  # top-1 late (+ first+1, forgotten)
    )


@pytest.mark.parametrize("name", NAMES)
def test_long_stream_with_a_few_anomalies_matches_the_reference(name: str) -> None:
    platform = BY_NAME[name]
    rng = random.Random(f"window-{name}")
    first = Stream(platform).first
    seqs = list(range(first, first + 10_000))
    for _ in range(12):  # a frame repeated somewhat later, maybe after the window has moved
        at = rng.randrange(len(seqs))
        seqs.insert(min(len(seqs), at + rng.choice([1, 3, 500, 1023, 1024, 1025, 3000])), seqs[at])
    for _ in range(12):  # a frame swapped with one up to 40 later
        at = rng.randrange(len(seqs) - 40)
        other = at + rng.randrange(1, 40)
        seqs[at], seqs[other] = seqs[other], seqs[at]
    for _ in range(5):  # a few frames lost
        del seqs[rng.randrange(len(seqs))]
    counts, ref = run(platform, seqs)
    assert counts == ref
    assert counts["sequence_duplicates"] > 0 and counts["sequence_reorders"] > 0
    assert counts["sequence_gaps"] > 0


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.integers(-3, 3),
            st.sampled_from([-WINDOW - 1, -WINDOW, -WINDOW + 1, WINDOW - 1, WINDOW, WINDOW + 1]),
            st.integers(-3000, 3000),
        ),
        max_size=60,
    )
)
def test_random_walks_match_the_reference(steps: list[int]) -> None:
    platform = BY_NAME["twilio"]
    first = Stream(platform).first
    seqs, at = [], first
    for step in steps:
        at = max(0, at + step)
        seqs.append(at)
    counts, ref = run(platform, seqs)
    assert counts == ref
