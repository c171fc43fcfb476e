"""The compiled media-frame path (``_wsfast.c``), when it was built, and its layouts.

``scan(data, pos, limit, allow_data, layout)`` looks at the websocket frame at ``pos`` and
returns one of:

- ``(MORE, pos)``: the frame is not all there yet;
- ``(HUGE, pos)``: a 64-bit length, which is never media (websockets takes the stream);
- ``(OTHER, end)``: a frame for websockets' own protocol (control, fragment, unmasked, too
  big for ``limit``, or a data frame while ``allow_data`` is false);
- ``(TEXT, end, payload)`` / ``(BINARY, end, payload)``: a whole data frame, unmasked;
- ``(RUN, end, count, track, seq, stamps, raw)``: ``count`` media messages in ``layout``
  (one at least), each carrying straight on from the one before (same track, the next
  sequence number, a timestamp without gap or reorder, the same size); ``track`` indexes
  ``twilio_family.TRACKS``, ``seq`` is the first one's sequence number (or None), ``stamps``
  each one's timestamp (or None), ``raw`` their payloads decoded and joined.

A message the compiled matcher declines comes back as TEXT and takes the Python path, which
is always right; the compiled matcher accepts only what the Python regex would
(``twilio_family.media_layout``), which the tests check against each other.

Set ``IVR_BRIDGE_PURE_PYTHON=1`` to run without it (benchmarks compare the two).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ivr_bridge.dialects.twilio_family import StreamStart, TwilioStyleDialect

MORE: Final = 0
RUN: Final = 1
TEXT: Final = 2
BINARY: Final = 3
OTHER: Final = 4
HUGE: Final = 5

# What a layout piece's value is (the numbering _wsfast.c uses; twilio_family.layout_pieces).
NO_VALUE: Final = 0
SEQ_VALUE: Final = 1
CHUNK_VALUE: Final = 2
STAMP_VALUE: Final = 3
TRACK_VALUE: Final = 4
SID_VALUE: Final = 5
PAYLOAD_VALUE: Final = 6

MAX_RUN_BYTES: Final = 16384  # a run's decoded audio at most: 2 s of mu-law
_TRACK_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz_")


def _load() -> ModuleType | None:
    if os.environ.get("IVR_BRIDGE_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        return importlib.import_module("ivr_bridge._wsfast")
    except ImportError:  # not built: no C compiler when the package was installed
        return None


_wsfast: Any = _load()

AVAILABLE: Final = _wsfast is not None


def _not_built(*args: Any) -> Any:
    raise RuntimeError("ivr_bridge._wsfast is not built (see AVAILABLE)")


# The C function itself when built (no Python frame per call); see the module docstring.
scan: Callable[[bytes | bytearray, int, int, bool, Any], Any] = (
    _wsfast.scan if _wsfast is not None else _not_built
)


def compile_layout(dialect: TwilioStyleDialect, start: StreamStart) -> Any:
    """The stream's media layout (twilio_family.layout_pieces, the grammar its regex is built
    from) for the compiled matcher, with the raw track names this stream accepts; None
    without the compiled module."""
    from ivr_bridge.dialects.twilio_family import TRACK_ALIASES, TRACKS, layout_pieces

    if _wsfast is None:
        return None
    cls = type(dialect)
    # The raw track names that _track() accepts without an error; others go to Python.
    strict = cls.tracks_announced
    tracks = [
        (raw.encode(), TRACKS.index(track))
        for raw, track in TRACK_ALIASES.items()
        if set(raw) <= _TRACK_NAME_CHARS and (not strict or track in start.tracks)
    ]
    default = TRACKS.index("inbound") if cls.media_track_key is None or not strict else -1
    return _wsfast.MediaLayout(
        [(opt, pre.encode(), kind, post.encode()) for opt, pre, kind, post in layout_pieces(cls)],
        tracks,
        default,
        start.stream_id.encode(),
        2 if start.codec not in ("pcmu", "pcma") else 1,
        start.wire_rate,
        MAX_RUN_BYTES,
    )
