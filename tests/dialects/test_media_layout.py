"""The Twilio family's media fast path (``media_layout`` / ``_fast_media``) against the general
strict-JSON path: the same messages into two dialects, one with the fast path switched off,
must give the same events, the same DialectError (code and reason) and the same counters.

Messages are built as JSON text token by token, so besides the platform's canonical layout
they can carry what ``json.dumps`` never writes: duplicated keys, escapes, leading zeros,
floats, over-long numbers, stray whitespace."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr_bridge.dialects.twilio_family import TwilioStyleDialect
from ivr_bridge.errors import DialectError
from ivr_bridge.model import DialectEvent
from ivr_bridge.simulators.twilio import TwilioStreamEncoder
from tests.dialects.family_media import (
    NAMES,
    PLATFORMS,
    STREAM_ID,
    Platform,
    compact,
    encoder,
    media_message,
    started,
)

BY_NAME = {p.name: p for p in PLATFORMS}
# Where start announces the tracks, also the caller's track alone (the agent's is then foreign).
CASES = {p.name: p for p in PLATFORMS} | {
    f"{p.name}-inbound": replace(p, tracks="inbound") for p in PLATFORMS if p.tracks == "both"
}
Outcome = tuple[str, Any, Any]
Pairs = list[tuple[str, str]]  # an object as (raw key, raw value) JSON fragments, in order


def outcome(dialect: TwilioStyleDialect, text: str) -> Outcome:
    try:
        events: list[DialectEvent] = dialect.receive_text(text)
    except DialectError as err:
        return ("error", err.close_code, err.reason)
    return ("events", events, None)


def twin_encoder(platform: Platform, enc: TwilioStreamEncoder) -> TwilioStreamEncoder:
    """A second encoder whose opening frames carry the same ids as ``enc``'s."""
    twin = encoder(platform)
    twin.call_sid, twin.account_sid = enc.call_sid, enc.account_sid
    return twin


class Twins:
    """The same platform twice: ``fast`` as shipped, ``general`` with the layout switched off."""

    def __init__(self, platform: Platform) -> None:
        self.enc = encoder(platform)
        self.fast = started(platform, self.enc)
        self.general = started(platform, twin_encoder(platform, self.enc))
        assert self.fast._media_layout is not None, "a plain stream id gets a layout"
        self.general._media_layout = None
        self.fast_hits = 0
        original = self.fast._fast_media

        def counting(match: Any) -> list[DialectEvent] | None:
            result = original(match)
            if result is not None:
                self.fast_hits += 1
            return result

        self.fast._fast_media = counting  # type: ignore[method-assign]

    def feed(self, text: str) -> Outcome:
        got = outcome(self.fast, text)
        want = outcome(self.general, text)
        assert got == want, text
        assert self.fast.counters.as_dict() == self.general.counters.as_dict(), text
        assert self.fast.stopped == self.general.stopped
        return got


# ---- the platform's canonical layout, as raw pairs ----------------------------------------


def template(platform: Platform) -> tuple[Pairs, Pairs]:
    """The platform's media message as (top-level pairs, media pairs), media as a marker."""
    message = media_message(encoder(platform), 7, chunk=3, timestamp=40, payload=b"\x01\x02")
    top = [(json.dumps(k), "MEDIA" if k == "media" else json.dumps(v)) for k, v in message.items()]
    media = [(json.dumps(k), json.dumps(v)) for k, v in message["media"].items()]
    return top, media


def render(pairs: Pairs, comma: str, colon: str, media: str = "") -> str:
    body = comma.join(k + colon + (media if v == "MEDIA" else v) for k, v in pairs)
    return "{" + body + "}"


# ---- value tokens: canonical ones and their perturbations --------------------------------

BIG = ["999999999999999999", "9999999999999999999", "99999999999999999999", "1" + "0" * 30]


def number_tokens(canonical: str) -> list[str]:
    """Fixed perturbations of a counter (``canonical``: its token in the layout, e.g. "7")."""
    bare = canonical.strip('"')
    swapped = bare if canonical.startswith('"') else f'"{bare}"'
    return [
        canonical,
        swapped,  # quoted <-> bare
        f"{bare}.0",
        f'"{bare}.0"',
        f'"0{bare}"',  # leading zero, quoted: a decimal string still
        f"0{bare}",  # leading zero, bare: not JSON
        '"0"',
        "0",
        *BIG,
        *(f'"{b}"' for b in BIG),
        *["-1", '"-1"', "1e3", '"1e3"', "null", "true", '""', '" 1"', '"1a"', "[1]", "{}"],
        '"\\u003' + bare[0] + bare[1:] + '"',  # an escaped digit
    ]


def numbers(canonical: str) -> st.SearchStrategy[str]:
    quoted = canonical.startswith('"')
    n = st.integers(0, 10**6)
    return st.one_of(
        st.sampled_from(number_tokens(canonical)),
        n.map(lambda i: f'"{i}"' if quoted else str(i)),
        n.map(lambda i: str(i) if quoted else f'"{i}"'),
        n.map(lambda i: f'"0{i}"'),
    )


TRACKS = [
    '"inbound"', '"outbound"', '"inbound_track"', '"outbound_track"', '"both"', '"xyz"',
    '""', '"INBOUND"', '"\\u0069nbound"', "1", "null", '"inbound "',
]  # fmt: skip
PAYLOADS = [
    '""',  # empty
    '"AB=="',  # non-canonical padding bits
    '"AAA"',  # missing padding
    '"A"',
    '"AAA="',  # odd byte count: not whole 16-bit samples for L16
    '"!!!!"',
    '"-_-_"',  # URL-safe alphabet
    '"AAAA===="',
    '"AAAA\\n"',
    '"\\/\\/\\/\\/"',  # escaped slashes: "////", valid base64 behind escapes
    '"AA=="',
    '"=="',
    '"AAAA"',
    "null",
    "0",
]
STREAMS = [
    json.dumps(STREAM_ID), '"other-stream"', '"\\u004d' + STREAM_ID[1:] + '"', '""', "null",
    "1", json.dumps(STREAM_ID + " "), json.dumps(STREAM_ID.lower()),
]  # fmt: skip
EVENTS = ['"media"', '"medi\\u0061"', '"Media"', '"dtmf"', "1"]


def b64(data: bytes) -> str:
    return '"' + base64.b64encode(data).decode("ascii") + '"'


def field_tokens(key: str, canonical: str) -> list[str]:
    """Every fixed perturbation of one field of the layout."""
    fixed = {'"track"': TRACKS, '"payload"': PAYLOADS, '"event"': EVENTS}
    if key in fixed:
        return fixed[key]
    if canonical.startswith('"') and not canonical.strip('"').isdigit():
        return STREAMS  # the stream id
    return number_tokens(canonical)


def field_values(key: str, canonical: str) -> st.SearchStrategy[str]:
    fixed = st.sampled_from(field_tokens(key, canonical))
    if key == '"payload"':
        return st.one_of(fixed, st.binary(min_size=1, max_size=48).map(b64))
    if key in ('"track"', '"event"') or not canonical.strip('"').isdigit():
        return fixed
    return numbers(canonical)


@st.composite
def media_texts(draw: st.DrawFn, platform: Platform) -> str:
    top, media = template(platform)
    # Mostly one field off the canonical layout (the cases the fast path must hand over
    # exactly), sometimes none, sometimes several.
    keys = [k for k, v in top + media if v != "MEDIA"]
    focus = draw(st.sampled_from([*keys, *keys, "none", "many"]))

    def value(key: str, canonical: str) -> str:
        if key != focus and (focus != "many" or draw(st.integers(0, 3)) > 0):
            return canonical
        return draw(field_values(key, canonical))

    def perturb(pairs: Pairs, *, nested: bool) -> Pairs:
        out = [(k, v if v == "MEDIA" else value(k, v)) for k, v in pairs]
        if draw(st.integers(0, 9)) == 0:  # a field missing
            del out[draw(st.integers(0, len(out) - 1))]
        if draw(st.integers(0, 9)) == 0:  # an extra key
            extra = (draw(st.sampled_from(['"extra"', '"chunk"', '"x"'])), "1")
            out.insert(draw(st.integers(0, len(out))), extra)
        if out and draw(st.integers(0, 9)) == 0:  # a key twice
            out.insert(draw(st.integers(0, len(out))), draw(st.sampled_from(out)))
        if draw(st.integers(0, 9)) == 0:  # keys reordered
            out = draw(st.permutations(out))
        if out and draw(st.integers(0, 14)) == 0:  # an escaped key
            i = draw(st.integers(0, len(out) - 1))
            key, raw = out[i]
            out[i] = ('"\\u00' + format(ord(key[1]), "02x") + key[2:], raw)
        if nested and draw(st.integers(0, 19)) == 0:
            out = [(k, "MEDIA" if v == "MEDIA" else "{}") for k, v in out]  # media not an object
        return out

    comma, colon = draw(
        st.sampled_from([(",", ":")] * 6 + [(", ", ": "), (",", " :"), (" ,", ":"), (",\n", ":")])
    )
    inner = render(perturb(media, nested=False), comma, colon)
    if draw(st.integers(0, 19)) == 0:
        inner = draw(st.sampled_from(['"x"', "[]", "null", "{}"]))
    text = render(perturb(top, nested=True), comma, colon, inner)
    if draw(st.integers(0, 19)) == 0:
        text = draw(st.sampled_from([" ", "\n", "\t"])) + text  # leading whitespace
    return text


def canonical_texts(platform: Platform) -> st.SearchStrategy[str]:
    """Messages in the exact layout, with numbers that move on, repeat or jump."""
    enc = encoder(platform)
    tracks = ["inbound", "outbound"] if platform.tracks == "both" else ["inbound"]
    return st.builds(
        lambda seq, ts, track, data: compact(
            media_message(enc, seq, track=track, chunk=seq, timestamp=ts, payload=data)
        ),
        st.integers(0, 40),
        st.integers(0, 2000),
        st.sampled_from(tracks),
        st.sampled_from([bytes(platform.frame_bytes), b"\x01" * platform.frame_bytes]),
    )


DIFFERENTIAL = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize("name", list(CASES))
@DIFFERENTIAL
@given(data=st.data())
def test_fast_path_and_general_path_agree(name: str, data: st.DataObject) -> None:
    platform = CASES[name]
    twins = Twins(platform)
    texts = data.draw(
        st.lists(
            st.one_of(media_texts(platform), canonical_texts(platform)), min_size=1, max_size=8
        )
    )
    for text in texts:
        twins.feed(text)


@pytest.mark.parametrize("name", NAMES)
def test_the_simulators_media_takes_the_fast_path(name: str) -> None:
    platform = BY_NAME[name]
    twins = Twins(platform)
    enc = twins.enc
    for track in enc.tracks:
        for i in range(20):
            frame, _ = enc.audio(bytes([i]) * (platform.frame_bytes // 2) * 2, track)
            assert isinstance(frame, str)
            kind, events, _ = twins.feed(frame)
            assert kind == "events" and len(events) == 1
    assert twins.fast_hits == 20 * len(enc.tracks)  # every one of them
    assert twins.fast.counters.media_frames == 20 * len(enc.tracks)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "case",
    [
        "empty payload",
        "other stream",
        "unknown track",
        "bad base64",
        "non-canonical base64",
        "escaped key",
    ],
)
def test_named_perturbations_agree(name: str, case: str) -> None:
    """A few perturbations by name, so a regression says which one broke."""
    platform = BY_NAME[name]
    twins = Twins(platform)
    message = media_message(twins.enc, 9, payload=bytes(platform.frame_bytes))
    body = message["media"]
    stream_key = type(twins.fast).stream_key
    if case == "empty payload":
        body["payload"] = ""
    elif case == "other stream" and stream_key in message:
        message[stream_key] = "other-stream"
    elif case == "unknown track" and "track" in body:
        body["track"] = "both"
    elif case == "bad base64":
        body["payload"] = "AAA"
    elif case == "non-canonical base64":
        body["payload"] = "AB=="
    text = compact(message)
    if case == "escaped key":
        text = text.replace('"payload"', '"p\\u0061yload"')
    kind, _, _ = twins.feed(text)
    if case in ("empty payload", "bad base64", "non-canonical base64"):
        assert kind == "error"


def single_field_variants(platform: Platform) -> Iterator[str]:
    """The canonical message with each fixed perturbation of each field, and each field
    missing, the rest canonical: the messages nearest the layout."""
    top, media = template(platform)
    for where, pairs in (("top", top), ("media", media)):
        for i, (key, canonical) in enumerate(pairs):
            if canonical == "MEDIA":
                continue
            variants = [
                [*pairs[:i], (key, t), *pairs[i + 1 :]] for t in field_tokens(key, canonical)
            ]
            variants.append([*pairs[:i], *pairs[i + 1 :]])  # the field missing
            for changed in variants:
                inner = render(changed if where == "media" else media, ",", ":")
                yield render(changed if where == "top" else top, ",", ":", inner)


@pytest.mark.parametrize("name", list(CASES))
def test_every_single_field_perturbation_agrees(name: str) -> None:
    """Each fixed perturbation of each field, the rest of the message canonical: the cases
    nearest the layout, where a fast path that accepts too much would show."""
    platform = CASES[name]
    twins = Twins(platform)
    fed = 0
    for text in single_field_variants(platform):
        twins.feed(text)
        fed += 1
    assert fed > 100
    assert twins.fast_hits > 0  # the canonical tokens among them took the fast path
