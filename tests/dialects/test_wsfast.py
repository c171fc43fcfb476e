"""The compiled frame scanner (ivr_bridge/_wsfast.c, wrapped by wsfast.py) against the pure
Python paths it replaces.

- Frames: what ``scan`` says about a frame (more bytes needed, websockets' own, a data frame
  unmasked) matches a plain reading of RFC 6455, however the bytes are cut.
- Media: the same messages into two dialects, one reading each text with ``receive_text``
  (the general JSON path: its layout switched off), the other through ``scan`` and
  ``receive_media_run``, must give the same audio, gaps and other events, the same
  DialectError, the same counters and the same sequence and timestamp bookkeeping. Runs join
  frames, so audio is compared as each channel's stream of samples (with the timestamp of
  each unbroken stretch), not frame by frame.
"""

from __future__ import annotations

import os
import struct
from dataclasses import asdict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.utils import apply_mask

from ivr_bridge import wsfast
from ivr_bridge.dialects.twilio_family import TwilioStyleDialect
from ivr_bridge.errors import DialectError
from ivr_bridge.model import Audio, DialectEvent
from tests.dialects.family_media import (
    PLATFORMS,
    Platform,
    compact,
    encoder,
    media_message,
    started,
)
from tests.dialects.test_media_layout import (
    CASES,
    media_texts,
    render,
    single_field_variants,
    template,
    twin_encoder,
)

pytestmark = pytest.mark.skipif(not wsfast.AVAILABLE, reason="the C extension is not built")

MASK = b"\x9a\x0b\xc3\x71"


def frame(payload: bytes, opcode: int = 1, *, fin: bool = True, masked: bool = True) -> bytes:
    """A client frame as RFC 6455 lays it out."""
    head = bytes([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    return head + MASK + apply_mask(payload, MASK)


# ---- frames ---------------------------------------------------------------------------------


@given(st.binary(max_size=300), st.sampled_from([1, 2]))
def test_a_data_frame_comes_back_unmasked(payload: bytes, opcode: int) -> None:
    wire = frame(payload, opcode)
    found = wsfast.scan(wire, 0, -1, True, None)
    kind = wsfast.TEXT if opcode == 1 else wsfast.BINARY
    assert found == (kind, len(wire), payload)
    for cut in range(len(wire)):  # any part of it: more bytes needed
        assert wsfast.scan(wire[:cut], 0, -1, True, None) == (wsfast.MORE, 0)


@pytest.mark.parametrize(
    "wire",
    [
        frame(b"x", 9),  # ping
        frame(b"", 8),  # close
        frame(b"x", 1, fin=False),  # the start of a fragmented message
        frame(b"x", 0),  # a continuation
        frame(b"x", 1, masked=False),  # a client must mask
        bytes([0xC1]) + frame(b"x")[1:],  # RSV1: no extension was agreed
        frame(b"x", 3),  # a reserved opcode
    ],
    ids=["ping", "close", "fragment", "continuation", "unmasked", "rsv1", "opcode-3"],
)
def test_frames_for_websockets_are_handed_over_whole(wire: bytes) -> None:
    assert wsfast.scan(wire + b"next", 0, -1, True, None) == (wsfast.OTHER, len(wire))


def test_data_frames_while_a_fragmented_message_is_open_go_to_websockets() -> None:
    wire = frame(b"x")
    assert wsfast.scan(wire, 0, -1, False, None) == (wsfast.OTHER, len(wire))


def test_a_frame_over_the_size_limit_goes_to_websockets() -> None:
    wire = frame(b"x" * 200)
    assert wsfast.scan(wire, 0, 199, True, None) == (wsfast.OTHER, len(wire))
    assert wsfast.scan(wire, 0, 200, True, None)[0] == wsfast.TEXT


def test_a_64_bit_length_is_never_media() -> None:
    wire = frame(b"x" * 70000)
    assert wsfast.scan(wire, 0, -1, True, None) == (wsfast.HUGE, 0)


def test_scan_starts_where_it_is_told() -> None:
    wire = frame(b"one") + frame(b"two")
    first = wsfast.scan(wire, 0, -1, True, None)
    assert first == (wsfast.TEXT, len(frame(b"one")), b"one")
    assert wsfast.scan(wire, first[1], -1, True, None) == (wsfast.TEXT, len(wire), b"two")
    with pytest.raises(ValueError):
        wsfast.scan(wire, len(wire) + 1, -1, True, None)
    with pytest.raises(TypeError):
        wsfast.scan(wire, 0, -1, True, object())


# ---- media: the compiled path against the general one ----------------------------------


def merged(events: list[DialectEvent]) -> list[Any]:
    """Events with each channel's consecutive audio joined (runs join frames); audio with its
    mu-law, which Audio's equality leaves out."""
    out: list[Any] = []
    for event in events:
        last = out[-1] if out else None
        if type(event) is Audio and type(last) is Audio and last.channel == event.channel:
            ulaw = None if last.ulaw is None or event.ulaw is None else last.ulaw + event.ulaw
            out[-1] = Audio(last.channel, last.pcm + event.pcm, last.timestamp_ms, ulaw)
            continue
        out.append(event)
    return [(e, e.ulaw) if type(e) is Audio else e for e in out]


def state(dialect: TwilioStyleDialect) -> dict[str, Any]:
    return {
        "counters": asdict(dialect.counters),
        "last_seq": dialect._last_seq,
        "seen": dialect._seen_bits,
        "track_time": dict(dialect._track_time),
        "stopped": dialect.stopped,
    }


def through_text(dialect: TwilioStyleDialect, texts: list[str]) -> tuple[list[Any], Any]:
    events: list[DialectEvent] = []
    for text in texts:
        try:
            events += dialect.receive_text(text)
        except DialectError as exc:
            return events, (exc.close_code, exc.reason)
    return events, None


def through_scan(
    dialect: TwilioStyleDialect, wire: bytes, cuts: list[int]
) -> tuple[list[Any], Any, int]:
    """The wire bytes as reads (cut at ``cuts``), scanned as media_connection does."""
    events: list[DialectEvent] = []
    runs = 0
    buffer = bytearray()
    points = sorted({min(c, len(wire)) for c in cuts} | {len(wire)})
    start = 0
    for end in points:
        buffer += wire[start:end]
        start = end
        pos = 0
        while True:
            found = wsfast.scan(buffer, pos, -1, True, dialect.compiled_layout)
            try:
                if found[0] == wsfast.MORE:
                    break
                if found[0] == wsfast.RUN:
                    _, pos, count, track, seq, stamps, raw = found
                    runs += count > 1
                    events += dialect.receive_media_run(count, track, seq, stamps, raw)
                else:
                    assert found[0] == wsfast.TEXT
                    pos = found[1]
                    events += dialect.receive_text(found[2].decode())
            except DialectError as exc:
                return events, (exc.close_code, exc.reason), runs
        del buffer[:pos]
    return events, None, runs


class Pair:
    """The same platform twice: ``general`` reads texts, ``compiled`` reads frames."""

    def __init__(self, platform: Platform) -> None:
        self.enc = encoder(platform)
        self.general = started(platform, self.enc)
        self.general._media_layout = None  # the general JSON path, every message
        self.compiled = started(platform, twin_encoder(platform, self.enc))
        assert self.compiled.compiled_layout is not None

    def check(self, texts: list[str], cuts: list[int]) -> int:
        want, want_error = through_text(self.general, texts)
        wire = b"".join(frame(t.encode()) for t in texts)
        got, got_error, runs = through_scan(self.compiled, wire, cuts)
        assert got_error == want_error
        assert merged(got) == merged(want)
        assert state(self.compiled) == state(self.general)
        return runs


@st.composite
def media_streams(draw: st.DrawFn, platform: Platform) -> list[str]:
    """Mostly frames that carry straight on from one another, broken now and then the ways
    a PBX breaks them: jitter, gaps, repeats, reordering, a track or size change, a
    message off the layout."""
    enc = encoder(platform)
    tracks = ["inbound", "outbound"] if platform.tracks == "both" else ["inbound"]
    seq = draw(st.integers(0, 3))
    stamp = draw(st.sampled_from([0, 20, 1000, 2**53 - 100, 10**17]))
    track = tracks[0]
    size = platform.frame_bytes
    texts = []
    moves = ["next"] * 12 + ["jitter", "gap", "repeat", "back", "track", "size", "odd", "other"]
    for _ in range(draw(st.integers(1, 40))):
        move = draw(st.sampled_from(moves))
        step = 20
        if move == "jitter":
            step = draw(st.sampled_from([-1, 0, 1, 19, 21, 39, 40, 41]))
        elif move == "gap":
            seq += draw(st.integers(1, 3))
            step = draw(st.sampled_from([40, 60, 1000]))
        elif move == "repeat":
            seq -= 1
        elif move == "back":
            seq -= draw(st.integers(2, 5))
            step = -draw(st.integers(20, 100))
        elif move == "track":
            track = draw(st.sampled_from(["inbound", "outbound"]))  # not always announced
        elif move == "size":
            size = draw(st.sampled_from([platform.frame_bytes, platform.frame_bytes * 2, 2, 4]))
        elif move == "other":
            texts.append(draw(media_texts(platform)))
            continue
        payload = draw(st.sampled_from([b"\x00", b"\x55", b"\xff"])) * size
        if move == "odd":
            payload = payload[:-1] or b"\x01"
        seq += 1
        stamp = max(0, stamp + step)
        message = media_message(enc, seq, track=track, chunk=seq, timestamp=stamp, payload=payload)
        texts.append(compact(message))
    return texts


DIFFERENTIAL = settings(
    max_examples=int(os.environ.get("WSFAST_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("name", list(CASES))
@DIFFERENTIAL
@given(data=st.data())
def test_compiled_path_and_general_path_agree(name: str, data: st.DataObject) -> None:
    platform = CASES[name]
    texts = data.draw(media_streams(platform))
    cuts = data.draw(st.lists(st.integers(0, 40 * 400), max_size=6))
    Pair(platform).check(texts, cuts)


@pytest.mark.parametrize("name", [p.name for p in PLATFORMS])
def test_a_plain_stream_goes_as_runs(name: str) -> None:
    """The simulator's own media, all in one read: joined into runs (so the property
    above does test runs), with the same outcome as message by message."""
    platform = next(p for p in PLATFORMS if p.name == name)
    pair = Pair(platform)
    texts = []
    for track in pair.enc.tracks:
        for i in range(30):
            text, _ = pair.enc.audio(bytes([i]) * platform.frame_bytes, track)
            assert isinstance(text, str)
            texts.append(text)
    assert pair.check(texts, []) > 0


def test_messages_after_stop_are_refused_and_counted_as_one() -> None:
    platform = CASES["twilio"]
    pair = Pair(platform)
    enc = pair.enc
    media = [enc.audio(bytes(160), "inbound")[0] for _ in range(3)]
    texts = [str(m) for m in [media[0], enc.stop(), media[1], media[2]]]
    pair.check(texts, [])


@pytest.mark.parametrize("name", list(CASES))
def test_every_single_field_perturbation_agrees(name: str) -> None:
    """Each fixed perturbation of each field (the rest canonical), alone and between two
    canonical frames: where a matcher that accepts too much (a bare leading zero, base64
    with stray bits) would show."""
    platform = CASES[name]
    top, media = template(platform)
    canonical = render(top, ",", ":", render(media, ",", ":"))
    checked = 0
    for text in single_field_variants(platform):
        Pair(platform).check([text], [])
        Pair(platform).check([canonical, text, canonical], [])
        checked += 1
    assert checked > 100


@pytest.mark.parametrize(
    "payload",
    ["AAB=", "AAAAAB==", "AAAAAAB=", "AA==", "AAA=", "AAAA", "////", "+/+/", "A===", "AAAAA"],
)
def test_base64_edges_agree(payload: str) -> None:
    """Padding with stray bits (not canonical: refused) and its neighbours."""
    platform = CASES["twilio"]
    pair = Pair(platform)
    message = media_message(pair.enc, 5, payload=bytes(160))
    message["media"]["payload"] = payload
    pair.check([compact(message)], [])
