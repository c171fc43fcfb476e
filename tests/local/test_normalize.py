"""Number words to digits (the final_refinement text)."""

from __future__ import annotations

import pytest

from ivr_bridge.local.engine import EngineWord
from ivr_bridge.local.normalize import normalize_text, normalize_words


@pytest.mark.parametrize(
    ("spoken", "written"),
    [
        ("i need help with my order", "i need help with my order"),
        ("one", "1"),
        ("twenty one", "21"),
        ("two hundred and five", "205"),
        ("twelve hundred", "1200"),
        ("three thousand forty", "3040"),
        ("one hundred twenty three thousand four hundred fifty six", "123456"),
        ("one million two hundred thousand", "1200000"),
        ("my number is five five five one two three four", "my number is 5551234"),
        ("one oh one", "101"),
        ("twenty one twenty two", "21 22"),
        ("nineteen eighty four", "19 84"),
        ("i have two cats and three dogs", "i have 2 cats and 3 dogs"),
        ("oh my god", "oh my god"),
        ("call me at eight oh", "call me at 8 oh"),
        ("thousand hundred", "thousand hundred"),
        ("two thousand three million", "2003 million"),
        ("Twenty One", "21"),
    ],
)
def test_normalize_text(spoken: str, written: str) -> None:
    assert normalize_text(spoken) == written


def test_numbers_span_the_words_they_replace() -> None:
    words = [
        EngineWord("order", 0, 400),
        EngineWord("twenty", 450, 700),
        EngineWord("one", 700, 900),
        EngineWord("please", 1000, 1300),
    ]
    assert normalize_words(words) == (
        EngineWord("order", 0, 400),
        EngineWord("21", 450, 900),
        EngineWord("please", 1000, 1300),
    )
