"""Word error rate: normalization and the word-level Levenshtein alignment.

Every expected count below was worked out by hand (the alignment is written in the comment).
"""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_bridge.wer import WerResult, normalize, word_error_rate

# ---- normalize -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Hello, World!", ["hello", "world"]),
        ("  many \t spaces\n\nand\r\nlines  ", ["many", "spaces", "and", "lines"]),
        ("Don't stop", ["don't", "stop"]),
        ("don\u2019t", ["don't"]),  # typographic apostrophe becomes '
        ("'quoted' words", ["quoted", "words"]),  # quoting apostrophes are dropped
        ("the callers' line", ["the", "callers", "line"]),  # trailing apostrophe dropped
        ("e-mail me at 9:30", ["e", "mail", "me", "at", "9", "30"]),
        ('"Yes?" (he said) -- no; maybe...', ["yes", "he", "said", "no", "maybe"]),
        ("cost $5 or 10%", ["cost", "5", "or", "10"]),
        ("STRASSE Straße", ["strasse", "strasse"]),  # case folding, not just lower()
        ("\uff26\uff35\uff2c\uff2c width", ["full", "width"]),  # NFKC: fullwidth FULL
        ("caf\u0065\u0301 café", ["café", "café"]),  # NFKC composes e + combining acute
        ("", []),
        (" \n\t ", []),
        ("?!., --", []),
    ],
)
def test_normalize(text: str, words: list[str]) -> None:
    assert normalize(text) == words


# ---- hand-checked alignments -----------------------------------------------------------------


def counts(result: WerResult) -> tuple[int, int, int, int]:
    return (result.substitutions, result.deletions, result.insertions, result.reference_words)


def test_identical_is_zero() -> None:
    r = word_error_rate("thank you very much", "thank you very much")
    assert counts(r) == (0, 0, 0, 4)
    assert r.wer == 0.0 and r.hits == 4 and r.errors == 0


def test_identical_after_normalization_is_zero() -> None:
    r = word_error_rate("Hello, I'm calling about my bill.", "hello i'm   calling about my bill")
    assert counts(r) == (0, 0, 0, 6)
    assert r.wer == 0.0


def test_one_substitution_and_one_deletion() -> None:
    # the=the cat=cat sat->sit on=on the->(del) mat=mat
    r = word_error_rate("the cat sat on the mat", "the cat sit on mat")
    assert counts(r) == (1, 1, 0, 6)
    assert r.wer == pytest.approx(2 / 6)
    assert r.hits == 4 and r.hypothesis_words == 5


def test_one_insertion() -> None:
    # hello=hello (ins big) world=world
    r = word_error_rate("hello world", "hello big world")
    assert counts(r) == (0, 0, 1, 2)
    assert r.wer == 0.5


def test_all_substituted() -> None:
    r = word_error_rate("a b c", "x y z")
    assert counts(r) == (3, 0, 0, 3)
    assert r.wer == 1.0


def test_wer_can_exceed_one() -> None:
    # yes->no (ins no) (ins no)
    r = word_error_rate("yes", "no no no")
    assert counts(r) == (1, 0, 2, 1)
    assert r.wer == 3.0


def test_ties_prefer_hits_over_substitutions() -> None:
    # Two errors either way: a->b b->c (2 sub), or a->(del) b=b (ins c). The second is taken.
    r = word_error_rate("a b", "b c")
    assert counts(r) == (0, 1, 1, 2)
    assert r.hits == 1 and r.wer == 1.0


def test_recognizer_like_hypothesis() -> None:
    # i=i was->like charged->yard twice->play for=for the->entertainment same->(del)
    # month->(del): 2 hits are the most possible, so 4 sub + 2 del = 6 errors of 8.
    r = word_error_rate(
        "i was charged twice for the same month", "i like yard play for entertainment"
    )
    assert counts(r) == (4, 2, 0, 8)
    assert r.wer == 0.75


def test_homophone_counts_as_substitution() -> None:
    # "two" heard as "to": one substitution of nine words.
    r = word_error_rate(
        "my account number is four five two seven nine",
        "my account number is four five to seven nine",
    )
    assert counts(r) == (1, 0, 0, 9)
    assert r.wer == pytest.approx(1 / 9)


def test_multiline_reference_is_one_word_sequence() -> None:
    # A transcript file with one utterance per line against one long hypothesis.
    r = word_error_rate("hello there\nthank you\n", "hello there thank you")
    assert counts(r) == (0, 0, 0, 4) and r.wer == 0.0


def test_result_is_frozen() -> None:
    r = word_error_rate("a", "b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.wer = 0.0  # type: ignore[misc]


def test_reordered_words() -> None:
    # a=a (ins c) b=b c->(del)  -- 2 errors; no alignment does better with 2 of 3 hits.
    r = word_error_rate("a b c", "a c b")
    assert r.errors == 2 and r.hits == 2
    assert r.wer == pytest.approx(2 / 3)


# ---- empty reference / hypothesis ------------------------------------------------------------


def test_both_empty_is_perfect() -> None:
    r = word_error_rate("", "")
    assert counts(r) == (0, 0, 0, 0)
    assert r.wer == 0.0 and r.hits == 0 and r.hypothesis_words == 0


def test_punctuation_only_texts_are_empty() -> None:
    r = word_error_rate("...", " ?! ")
    assert counts(r) == (0, 0, 0, 0) and r.wer == 0.0


def test_empty_hypothesis_deletes_everything() -> None:
    r = word_error_rate("one two three", "")
    assert counts(r) == (0, 3, 0, 3)
    assert r.wer == 1.0 and r.hits == 0


def test_empty_reference_counts_insertions() -> None:
    # Nothing to divide by: the errors are counted against a one-word reference.
    r = word_error_rate("", "two words")
    assert counts(r) == (0, 0, 2, 0)
    assert r.wer == 2.0
    one = word_error_rate("  ", "uh")
    assert counts(one) == (0, 0, 1, 0) and one.wer == 1.0


# ---- properties ------------------------------------------------------------------------------

words = st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=8).map(" ".join)


@given(words, words)
def test_counts_are_consistent(reference: str, hypothesis: str) -> None:
    r = word_error_rate(reference, hypothesis)
    n, m = len(reference.split()), len(hypothesis.split())
    assert r.reference_words == n and r.hypothesis_words == m
    assert r.hits + r.substitutions + r.deletions == n
    assert r.hits + r.substitutions + r.insertions == m
    assert abs(n - m) <= r.errors <= max(n, m)
    assert r.wer == r.errors / max(n, 1)


@given(words, words)
def test_swapping_texts_swaps_deletions_and_insertions(reference: str, hypothesis: str) -> None:
    forward = word_error_rate(reference, hypothesis)
    backward = word_error_rate(hypothesis, reference)
    assert forward.errors == backward.errors
    assert forward.hits == backward.hits
    assert (forward.deletions, forward.insertions) == (backward.insertions, backward.deletions)


@given(words)
def test_text_against_itself_is_zero(text: str) -> None:
    r = word_error_rate(text, text)
    assert r.errors == 0 and r.wer == 0.0


# ---- the bundled sample call's reference -----------------------------------------------------

DATA = Path(__file__).resolve().parent.parent / "ivr_bridge" / "data"


def test_sample_transcript_is_normalized_and_matches_the_timings() -> None:
    lines = (DATA / "sample_call.txt").read_text(encoding="utf-8").splitlines()
    meta = json.loads((DATA / "sample_call.json").read_text(encoding="utf-8"))
    assert len(lines) >= 3
    # Already in normal form: lowercase words, no punctuation, single spaces.
    assert all(" ".join(normalize(line)) == line for line in lines)
    assert [u["text"] for u in meta["utterances"]] == lines
    starts = [u["start_s"] for u in meta["utterances"]]
    ends = [u["end_s"] for u in meta["utterances"]]
    assert all(s < e for s, e in zip(starts, ends, strict=True))
    assert all(e < s for e, s in zip(ends, starts[1:], strict=False))
    assert ends[-1] < meta["duration_s"]


def test_sample_wav_is_8khz_mulaw_of_the_stated_length() -> None:
    blob = (DATA / "sample_call.wav").read_bytes()
    assert blob[:4] == b"RIFF" and blob[8:12] == b"WAVE"
    assert struct.unpack_from("<I", blob, 4)[0] == len(blob) - 8
    chunks: dict[bytes, bytes] = {}
    pos = 12
    while pos + 8 <= len(blob):
        cid, size = blob[pos : pos + 4], struct.unpack_from("<I", blob, pos + 4)[0]
        chunks[cid] = blob[pos + 8 : pos + 8 + size]
        pos += 8 + size + size % 2
    # format tag 7 (mu-law), mono, 8000 Hz, 8000 bytes/s, block 1, 8 bits, cbSize 0
    assert struct.unpack("<HHIIHHH", chunks[b"fmt "]) == (7, 1, 8000, 8000, 1, 8, 0)
    samples = len(chunks[b"data"])
    assert struct.unpack("<I", chunks[b"fact"]) == (samples,)
    meta = json.loads((DATA / "sample_call.json").read_text(encoding="utf-8"))
    assert samples / 8000 == pytest.approx(meta["duration_s"], abs=0.01)
    assert samples >= 20 * 8000
