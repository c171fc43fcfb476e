"""A call tag carried in the audio itself, exact through G.711 decoding.

Every 20 ms frame starts with ``TAG_SAMPLES`` mu-law bytes that spell the call's number in
base 64 (bytes 0x20..0x5F). mu-law -> PCM16 -> mu-law is the identity for those bytes, so a
recognizer that receives the bridge's PCM16 recovers the tag exactly. The rest of the frame is
low-level noise (well above digital silence, far below speech).
"""

from __future__ import annotations

import audioop
import random
from typing import Final

TAG_SAMPLES: Final = 4
_BASE: Final = 64
_FIRST: Final = 0x20
MAX_CALLS: Final = _BASE**TAG_SAMPLES


def tag_bytes(call_no: int) -> bytes:
    """The mu-law bytes that mark call ``call_no`` (0 <= call_no < MAX_CALLS)."""
    if not 0 <= call_no < MAX_CALLS:
        raise ValueError("call number out of range")
    digits = []
    for _ in range(TAG_SAMPLES):
        call_no, digit = divmod(call_no, _BASE)
        digits.append(_FIRST + digit)
    return bytes(digits)


def read_tag(pcm16: bytes) -> int | None:
    """The call number in the first samples of a PCM16 chunk, or None if it carries no tag."""
    if len(pcm16) < 2 * TAG_SAMPLES:
        return None
    codes = audioop.lin2ulaw(pcm16[: 2 * TAG_SAMPLES], 2)
    value = 0
    for code in reversed(codes):
        if not _FIRST <= code < _FIRST + _BASE:
            return None
        value = value * _BASE + (code - _FIRST)
    return value


def tagged_frame(call_no: int, samples: int = 160, seed: int = 0) -> bytes:
    """One mu-law frame: the tag, then quiet noise."""
    rng = random.Random(seed * 7919 + call_no)
    # mu-law bytes 0xF0-0xFE / 0x70-0x7E are the quietest non-zero levels.
    noise = bytes(rng.choice((0xF8, 0xFA, 0x78, 0x7A)) for _ in range(samples - TAG_SAMPLES))
    return tag_bytes(call_no) + noise
