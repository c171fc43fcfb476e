"""Strict JSON for every JSON dialect: parse, then read typed fields, raising only DialectError.

Python's ``json`` accepts things a PBX message must not carry: ``NaN``/``Infinity``, numbers
like ``1e400`` or ten thousand digits, duplicate keys (which a later reader may resolve
differently from us), and nesting deep enough to exhaust the stack. :func:`loads` refuses all
of them. The field readers (:func:`obj`, :func:`text`, :func:`decimal`, :func:`b64decode`, ...)
turn a wrong type into a DialectError whose reason names the field (``what``) and never
quotes the value, because the payload may carry personal data and the reason goes on the
wire and into logs.

Close codes: :func:`invalid` 1007 (malformed), :func:`protocol` 1002 (order, state,
identity), :func:`unsupported` 1003 (formats we do not take).
"""

from __future__ import annotations

import binascii
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from ivr_bridge.errors import DialectError

MAX_DIGITS: Final = 18  # counters and timestamps: far beyond any real call
MAX_DEPTH: Final = 32  # no PBX message nests deeper than a handful of levels


def invalid(reason: str) -> DialectError:
    return DialectError(reason, DialectError.INVALID_PAYLOAD)


def protocol(reason: str) -> DialectError:
    return DialectError(reason, DialectError.PROTOCOL_ERROR)


def unsupported(reason: str) -> DialectError:
    return DialectError(reason, DialectError.UNSUPPORTED_DATA)


# ---- parsing -------------------------------------------------------------------------------


def _reject_constant(_name: str) -> Any:
    raise invalid("non-finite number in JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise invalid("number out of range in JSON")
    return value


def _parse_int(text: str) -> int:
    if len(text) > MAX_DIGITS + 1:
        raise invalid("number out of range in JSON")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise invalid("duplicate key in JSON object")
    return obj


_SLOW: Final = object()
_INT_MAX: Final = 10 ** (MAX_DIGITS + 1)  # _parse_int's limit: at most 19 characters
_INT_MIN: Final = -(10**MAX_DIGITS)
_KEY_SPACE: Final = re.compile(r'"\s+:')


def _fast_loads(text: str) -> Any:
    """The per-frame fast path (media messages arrive 50 times a second per call): orjson,
    then proof that the strict parser would return the same; ``_SLOW`` when not proven.

    orjson already refuses NaN/Infinity, out-of-range doubles and lone surrogates. What it
    lets through is checked here: a float anywhere (orjson turns over-long integers into
    floats) or an integer past ``_parse_int``'s limit falls back. Duplicate keys: with no
    space before a colon each key in the text ends in exactly one ``":``, and a string
    value can only add more (its quotes are escaped), so as many ``":`` as parsed keys
    proves no key was repeated. Any doubt, and any error, goes to the strict parser.
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _SLOW
    keys = _plain_keys(value)
    if keys < 0 or keys != text.count('":') or _KEY_SPACE.search(text):
        return _SLOW
    return value


def _plain_keys(value: Any) -> int:
    """Keys in ``value``, all levels; -1 if it holds a float or an out-of-range integer."""
    if isinstance(value, dict):
        total = len(value)
        for item in value.values():
            n = _plain_keys(item)
            if n < 0:
                return -1
            total += n
        return total
    if isinstance(value, list):
        total = 0
        for item in value:
            n = _plain_keys(item)
            if n < 0:
                return -1
            total += n
        return total
    if isinstance(value, float):
        return -1
    if isinstance(value, int) and not isinstance(value, bool):
        return 0 if _INT_MIN < value < _INT_MAX else -1
    return 0


def _depth_ok(text: str, limit: int) -> bool:
    """Bracket depth outside strings, counted before parsing so no deep input reaches json."""
    if text.count("[") + text.count("{") <= limit:
        return True  # the common case, without a character loop
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def loads(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one JSON message strictly; any problem is a DialectError (1007)."""
    if not _depth_ok(text, max_depth):
        raise invalid("JSON nested too deeply")
    fast = _fast_loads(text)
    if fast is not _SLOW:
        return fast
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise invalid("JSON nested too deeply") from None
    except DialectError:
        raise
    except ValueError:
        raise invalid("invalid JSON") from None


def dumps(message: Mapping[str, Any]) -> str:
    """Compact JSON for frames we send."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


# ---- typed field access --------------------------------------------------------------------


def obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{what} must be an object")
    return value


def required(message: Mapping[str, Any], key: str, what: str) -> Any:
    if key not in message:
        raise invalid(f"missing {what}")
    return message[key]


def utf8(value: str, what: str) -> str:
    """``value`` if it can be re-encoded (no lone surrogates reach logs or sinks)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(f"{what} is not valid unicode") from None
    return value


def text(value: Any, what: str) -> str:
    """A non-empty string that can be re-encoded (no lone surrogates reach logs or sinks)."""
    if not isinstance(value, str) or not value:
        raise invalid(f"{what} must be a non-empty string")
    utf8(value, what)
    return value


def _as_count(value: Any, whole_floats: bool) -> int | None:
    """A non-negative integer as JSON may carry one, or None. Only ASCII digits count: ``str.
    isdigit`` also takes superscripts and other scripts' digits, which ``int()`` refuses."""
    if isinstance(value, str):
        if 0 < len(value) <= MAX_DIGITS and value.isascii() and value.isdigit():
            return int(value)
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if whole_floats and isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def decimal(value: Any, what: str) -> int:
    """A counter: a decimal string ("42", as Twilio quotes them) or a non-negative integer."""
    found = _as_count(value, whole_floats=False)
    if found is None:
        raise invalid(f"{what} must be a decimal string")
    return found


def count(value: Any, what: str, *, whole_floats: bool = False) -> int:
    """A non-negative integer: a JSON integer, a decimal string, or (``whole_floats``, for
    platforms that send ``3.0``) a float with no fraction."""
    found = _as_count(value, whole_floats)
    if found is None:
        raise invalid(f"{what} must be a non-negative integer")
    return found


def optional_decimal(message: Mapping[str, Any], key: str, what: str) -> int | None:
    return decimal(message[key], what) if key in message else None


def integer(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise invalid(f"{what} must be an integer")


def b64decode(payload: str, what: str = "media.payload") -> bytes:
    """RFC 4648 base64, canonical only: no whitespace, URL-safe letters or stray padding."""
    if not payload.isascii():
        raise invalid(f"{what} is not base64")
    encoded = payload.encode("ascii")
    try:
        raw = binascii.a2b_base64(encoded, strict_mode=True)
    except binascii.Error:
        raise invalid(f"{what} is not base64") from None
    if binascii.b2a_base64(raw, newline=False) != encoded:
        raise invalid(f"{what} is not canonical base64")
    return raw


def json_text(value: Any, what: str) -> str:
    """A field as call metadata: a string as it is, anything else as its compact JSON text."""
    if isinstance(value, str):
        return utf8(value, what)
    return utf8(json.dumps(value, ensure_ascii=False, separators=(",", ":")), what)


def string_map(value: Any, what: str, prefix: str = "") -> dict[str, str]:
    """Custom parameters as strings; a non-string value is passed on as its JSON text."""
    if value is None:
        return {}
    return {
        prefix + utf8(key, what): json_text(item, what) for key, item in obj(value, what).items()
    }
