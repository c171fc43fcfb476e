"""The typed field readers every JSON dialect shares (one definition, so one fix)."""

from __future__ import annotations

from typing import Any

import pytest

from ivr_bridge.dialects import strictjson as sj
from ivr_bridge.errors import DialectError


@pytest.mark.parametrize("value", ["¹", "٣", "12³", "", "-1", "1.5", True, -3, None, "9" * 19])
def test_count_takes_only_ascii_decimal_counts(value: Any) -> None:
    # str.isdigit() says yes to superscripts and other scripts' digits; int() refuses them.
    with pytest.raises(DialectError) as caught:
        sj.count(value, "duration")
    assert caught.value.reason == "duration must be a non-negative integer"


def test_count_and_decimal_agree_on_what_they_take() -> None:
    for value in ("0", "42", "007", 0, 17):
        assert sj.count(value, "n") == sj.decimal(value, "n") == int(value)
    with pytest.raises(DialectError):
        sj.decimal("²", "n")


def test_whole_floats_only_when_asked() -> None:
    assert sj.count(3.0, "rate", whole_floats=True) == 3
    for value in (3.0, 3.5):
        with pytest.raises(DialectError):
            sj.count(value, "rate")
    with pytest.raises(DialectError):
        sj.count(3.5, "rate", whole_floats=True)


def test_json_text_and_string_map() -> None:
    assert sj.json_text("plain", "m") == "plain"
    assert sj.json_text({"a": [1, "é"]}, "m") == '{"a":[1,"é"]}'
    assert sj.string_map({"k": 1, "s": "x"}, "m", "input.") == {"input.k": "1", "input.s": "x"}
    with pytest.raises(DialectError):
        sj.json_text("\ud800", "m")
    with pytest.raises(DialectError):
        sj.string_map([1], "m")
