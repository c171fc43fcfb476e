"""The orjson fast path returns what the strict parser returns, or steps aside."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_bridge.dialects import strictjson
from ivr_bridge.errors import DialectError

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)


def _both(text: str) -> tuple[Any, Any]:
    fast = strictjson._fast_loads(text)
    try:
        strict: Any = (
            "ok",
            json.loads(
                text,
                parse_constant=strictjson._reject_constant,
                parse_float=strictjson._parse_float,
                parse_int=strictjson._parse_int,
                object_pairs_hook=strictjson._unique_keys,
            ),
        )
    except (DialectError, ValueError, RecursionError):
        strict = ("error", None)
    return fast, strict


@given(_json_values, st.sampled_from([None, 1]), st.booleans())
def test_fast_path_agrees_with_the_strict_parser(value: Any, indent: int | None, dup: bool) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    if dup and text.startswith("{") and len(text) > 2:
        text = '{"k":1,"k":2,' + text[1:]  # a duplicate key the strict parser refuses
    fast, strict = _both(text)
    if fast is not strictjson._SLOW:
        assert strict == ("ok", fast)


@pytest.mark.parametrize(
    "text",
    [
        '{"a":1,"a":2}',
        '{"a" :1,"a":2}',
        '{"a":"x\\":","a":2}',
        '{"n":12345678901234567890}',
        '{"n":1.5}',
        '{"n":1e400}',
        '["\\ud800"]',
        "[NaN]",
    ],
)
def test_doubtful_messages_take_the_strict_path(text: str) -> None:
    assert strictjson._fast_loads(text) is strictjson._SLOW


def test_a_media_message_takes_the_fast_path() -> None:
    text = (
        '{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"2",'
        '"timestamp":"40","payload":"//8="},"streamSid":"MZ1"}'
    )
    assert strictjson._fast_loads(text) == json.loads(text)
    assert strictjson.loads(text) == json.loads(text)
