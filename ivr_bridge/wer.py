"""Word error rate (WER) between a reference transcript and a recognizer hypothesis.

Dependency-free. Both texts are normalized (see :func:`normalize`), split into words and
aligned with a word-level Levenshtein alignment; the alignment's substitutions (S),
deletions (D) and insertions (I) give::

    WER = (S + D + I) / N        where N is the number of reference words

WER can exceed 1.0 when the hypothesis inserts many words.

Empty reference (N = 0, e.g. a stretch of silence or noise): the denominator is taken as 1,
``WER = (S + D + I) / max(N, 1)``. An empty hypothesis then scores 0.0 (silence correctly
left untranscribed) and a k-word hypothesis scores k (k insertions: 2.0 for two words).
So the value is always finite, 0.0 exactly when the transcript is perfect, and grows with
every wrong word. An empty hypothesis against a non-empty reference is N deletions: 1.0.

Among the alignments with the fewest errors the one that matches the most words is taken,
so the counts are deterministic: reference ``"a b"`` against ``"b c"`` is one hit, one
deletion and one insertion, not two substitutions.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

__all__ = ["WerResult", "normalize", "word_error_rate"]

_APOSTROPHES = frozenset("'\u2019\u02bc")


@dataclass(frozen=True, slots=True)
class WerResult:
    """The alignment counts and the word error rate they give."""

    wer: float
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int
    hits: int

    @property
    def errors(self) -> int:
        """Substitutions + deletions + insertions."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def hypothesis_words(self) -> int:
        """Number of words in the normalized hypothesis."""
        return self.hits + self.substitutions + self.insertions


def normalize(text: str) -> list[str]:
    """Split ``text`` into normalized words.

    Normalization:

    * Unicode NFKC, then case folding (lowercase; e.g. ``"Straße"`` -> ``"strasse"``);
    * every punctuation or symbol character (Unicode categories P* and S*: ``.,?!;:"()-/``,
      ``$``, ``%`` and so on) becomes a word break, so ``"e-mail"`` is two words ``e mail``;
    * except an apostrophe (``'``, U+2019 or U+02BC, all written as ``'``) between two letters
      or digits, which stays part of the word: ``"Don't"`` -> ``"don't"``, while quoting
      apostrophes (``'hello'``) are dropped;
    * whitespace, other separators and control characters (categories Z* and C*) also break
      words, and runs of breaks collapse: no word is ever empty.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    chars: list[str] = []
    last = len(text) - 1
    for i, ch in enumerate(text):
        if ch in _APOSTROPHES:
            inner = 0 < i < last and text[i - 1].isalnum() and text[i + 1].isalnum()
            chars.append("'" if inner else " ")
        elif unicodedata.category(ch)[0] in "PSZC":
            chars.append(" ")
        else:
            chars.append(ch)
    return "".join(chars).split()


# (errors, substitutions, deletions, insertions) of one alignment prefix.
_Cell = tuple[int, int, int, int]


def _rank(cell: _Cell) -> tuple[int, int]:
    errors, substitutions, deletions, _ = cell
    return errors, substitutions + deletions


def word_error_rate(reference: str, hypothesis: str) -> WerResult:
    """Word error rate of ``hypothesis`` against ``reference`` (see the module docstring)."""
    ref = normalize(reference)
    hyp = normalize(hypothesis)
    # Dynamic programming over the alignment grid, one row per reference prefix. A cell
    # holds (errors, substitutions, deletions, insertions) of the best alignment of
    # ref[:i] with hyp[:j]; the counts ride along so no backtrace matrix is needed.
    # "Best" is fewest errors, then most hits (fewest substitutions + deletions, as i is
    # fixed within a cell); that key determines all four counts, so ties cannot differ.
    prev: list[_Cell] = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i, ref_word in enumerate(ref, start=1):
        row: list[_Cell] = [(i, 0, i, 0)]
        for j, hyp_word in enumerate(hyp, start=1):
            e, s, d, n = prev[j - 1]
            diagonal = (e, s, d, n) if ref_word == hyp_word else (e + 1, s + 1, d, n)
            e, s, d, n = prev[j]
            deletion = (e + 1, s, d + 1, n)
            e, s, d, n = row[j - 1]
            insertion = (e + 1, s, d, n + 1)
            row.append(min(diagonal, deletion, insertion, key=_rank))
        prev = row
    errors, substitutions, deletions, insertions = prev[-1]
    return WerResult(
        wer=errors / max(len(ref), 1),
        substitutions=substitutions,
        deletions=deletions,
        insertions=insertions,
        reference_words=len(ref),
        hits=len(ref) - substitutions - deletions,
    )
