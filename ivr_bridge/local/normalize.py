"""Text normalization for ``final_refinement``: English number words become digits.

What SpeechKit's TEXT_NORMALIZATION_ENABLED does for numbers, on a small, predictable scale:

* cardinals up to the billions: "two hundred and five" -> "205", "twenty one" -> "21",
  "three thousand forty" -> "3040";
* spoken digit strings (two or more single digits; "oh" counts as zero inside them):
  "five five five one two" -> "55512", "one oh one" -> "101";
* a number word that cannot continue the number before it starts a new one:
  "twenty one twenty two" -> "21 22".

Other words pass through unchanged. Each number covers the time span of the words it replaces.
"""

from __future__ import annotations

from collections.abc import Sequence

from ivr_bridge.local.engine import EngineWord

_DIGITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
}
_TEENS = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORDS = set(_DIGITS) | set(_TEENS) | set(_TENS) | set(_SCALES) | {"hundred"}


def _is_digit_word(word: str) -> bool:
    return word in _DIGITS or word == "oh"


class _Cardinal:
    """Accumulates one cardinal number; ``add`` refuses a word that cannot continue it."""

    def __init__(self) -> None:
        self.total = 0  # completed scale groups
        self.group = 0  # value below the next scale word
        self.last = ""  # kind of the last word: digit, teen, tens, hundred, scale
        self.scale_limit = 10**12  # scales must decrease: "two thousand three million" is two

    def add(self, word: str) -> bool:
        last = self.last
        if word in _DIGITS or word in _TEENS:
            kind = "digit" if word in _DIGITS else "teen"
            ok = last in ("", "hundred", "scale") or (last == "tens" and kind == "digit")
            if not ok:
                return False
            self.group += _DIGITS.get(word, 0) + _TEENS.get(word, 0)
            self.last = kind
        elif word in _TENS:
            if last not in ("", "hundred", "scale"):
                return False
            self.group += _TENS[word]
            self.last = "tens"
        elif word == "hundred":
            if last not in ("digit", "teen") or self.group >= 100:
                return False
            self.group *= 100
            self.last = "hundred"
        elif word in _SCALES:
            scale = _SCALES[word]
            if last not in ("digit", "teen", "tens", "hundred") or scale >= self.scale_limit:
                return False
            self.total += self.group * scale
            self.group = 0
            self.scale_limit = scale
            self.last = "scale"
        else:
            return False
        return True

    def value(self) -> int:
        return self.total + self.group


def _number_runs(words: Sequence[str]) -> list[tuple[int, int]]:
    """[start, end) index ranges of maximal runs of number words ("and" inside cardinals)."""
    runs: list[tuple[int, int]] = []
    i = 0
    n = len(words)
    while i < n:
        w = words[i]
        starts = w in _NUMBER_WORDS or (w == "oh" and i + 1 < n and _is_digit_word(words[i + 1]))
        if not starts or w in _SCALES or w == "hundred":
            i += 1
            continue
        j = i + 1
        while j < n:
            cur = words[j]
            if (cur in _NUMBER_WORDS or cur == "oh") or (
                cur == "and"
                and words[j - 1] in ("hundred", *_SCALES)
                and j + 1 < n
                and (words[j + 1] in _DIGITS or words[j + 1] in _TEENS or words[j + 1] in _TENS)
            ):
                j += 1
            else:
                break
        # A trailing "oh" is the interjection, not a zero.
        while j > i + 1 and words[j - 1] == "oh":
            j -= 1
        runs.append((i, j))
        i = j
    return runs


def _convert_run(words: Sequence[str]) -> list[tuple[str, int, int]]:
    """Number strings for one run, each with the [start, end) word indexes it covers."""
    core = [w for w in words if w != "and"]
    if len(core) >= 2 and all(_is_digit_word(w) for w in core):
        digits = "".join(str(_DIGITS.get(w, 0)) for w in core)
        return [(digits, 0, len(words))]
    out: list[tuple[str, int, int]] = []
    number: _Cardinal | None = None
    start = 0
    for idx, spoken in enumerate(words):
        if spoken == "and":
            continue
        word = "zero" if spoken == "oh" else spoken
        if number is not None and number.add(word):
            continue
        if number is not None:
            out.append((str(number.value()), start, idx))
        number = _Cardinal()
        start = idx
        if not number.add(word):  # a scale word with nothing before it stays a word
            out.append((word, idx, idx + 1))
            number = None
    if number is not None:
        out.append((str(number.value()), start, len(words)))
    return out


def normalize_words(words: Sequence[EngineWord]) -> tuple[EngineWord, ...]:
    """The words with number words replaced by digits (times merged over each number)."""
    texts = [w.text.lower() for w in words]
    out: list[EngineWord] = []
    pos = 0
    for start, end in _number_runs(texts):
        out.extend(words[pos:start])
        for text, a, b in _convert_run(texts[start:end]):
            out.append(EngineWord(text, words[start + a].start_ms, words[start + b - 1].end_ms))
        pos = end
    out.extend(words[pos:])
    return tuple(out)


def normalize_text(text: str) -> str:
    """``normalize_words`` for bare text."""
    words = [EngineWord(w, 0, 0) for w in text.split()]
    return " ".join(w.text for w in normalize_words(words))
