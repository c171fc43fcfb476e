"""Protobuf framing by hand for the one message a call sends five times a second: audio.

An audio request is a length-delimited field (v2's ``audio_content``) or one inside another
(v3's ``chunk.data``). Building it through protobuf's message objects copies the audio twice
and costs more than the write itself; the framing is a few bytes that depend only on the
audio's length, so they are computed once per length and the audio is appended. The result
is byte for byte what ``SerializeToString`` gives (tests/recognition/test_pbwire.py).
"""

from __future__ import annotations

import functools

_LENGTH_DELIMITED = 2  # protobuf wire type of bytes and embedded messages


def varint(value: int) -> bytes:
    """``value`` (>= 0) as a protobuf base-128 varint."""
    if value < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field_header(field: int, length: int) -> bytes:
    """Tag and length of length-delimited field ``field`` holding ``length`` bytes."""
    return varint(field << 3 | _LENGTH_DELIMITED) + varint(length)


@functools.lru_cache(maxsize=32)
def nested_header(outer: int, inner: int, length: int) -> bytes:
    """The framing before ``length`` bytes of field ``inner`` of a message in field
    ``outer``: outer tag, outer length, inner tag, inner length. (Empty, the inner field
    is proto3's default and protobuf leaves it out.)"""
    inner_header = field_header(inner, length) if length else b""
    return field_header(outer, len(inner_header) + length) + inner_header


@functools.lru_cache(maxsize=32)
def bytes_header(field: int, length: int) -> bytes:
    """``field_header``, cached: audio comes in a handful of lengths."""
    return field_header(field, length)
