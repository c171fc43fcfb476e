"""Transcripts of whole files: built from either API's answer, written as text/json/srt/vtt.

Sans-I/O: v3 ``StreamingResponse`` messages (from GetRecognition) and v2 operation JSON in,
``Transcript`` out; formatting is pure string work.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ivr_bridge._proto import stt_v3_pb2 as pb3

FORMATS = ("text", "json", "srt", "vtt")


@dataclass(frozen=True, slots=True)
class TimedWord:
    text: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class Phrase:
    channel: int
    text: str
    start_ms: int
    end_ms: int
    words: tuple[TimedWord, ...] = ()


@dataclass(slots=True)
class Transcript:
    source: str
    channels: int
    phrases: list[Phrase] = field(default_factory=list)

    def channel_text(self, channel: int) -> str:
        return " ".join(p.text for p in self.phrases if p.channel == channel)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "channels": [
                {
                    "channel": ch,
                    "text": self.channel_text(ch),
                    "phrases": [asdict(p) for p in self.phrases if p.channel == ch],
                }
                for ch in range(self.channels)
            ],
        }


def from_v3(source: str, channels: int, responses: list[pb3.StreamingResponse]) -> Transcript:
    """Finals per channel; a final_refinement (normalized text) replaces its final's text."""
    finals: dict[tuple[int, int], Phrase] = {}
    order: list[tuple[int, int]] = []
    counters: dict[int, int] = {}
    for resp in responses:
        channel = int(resp.channel_tag or "0")
        kind = resp.WhichOneof("Event")
        if kind == "final" and resp.final.alternatives:
            index = counters.get(channel, 0)
            counters[channel] = index + 1
            alt = resp.final.alternatives[0]
            words = tuple(TimedWord(w.text, w.start_time_ms, w.end_time_ms) for w in alt.words)
            finals[(channel, index)] = Phrase(
                channel, alt.text, alt.start_time_ms, alt.end_time_ms, words
            )
            order.append((channel, index))
        elif kind == "final_refinement":
            key = (channel, resp.final_refinement.final_index)
            refined = resp.final_refinement.normalized_text.alternatives
            if key in finals and refined:
                old = finals[key]
                finals[key] = Phrase(
                    old.channel,
                    refined[0].text,
                    old.start_ms,
                    old.end_ms,
                    tuple(
                        TimedWord(w.text, w.start_time_ms, w.end_time_ms) for w in refined[0].words
                    )
                    or old.words,
                )
    phrases = sorted((finals[k] for k in order if finals[k].text.strip()), key=_order)
    return Transcript(source, channels, phrases)


def _ms(duration: str) -> int:
    """A JSON Duration ("0.879999999s") in ms."""
    return round(float(duration.rstrip("s") or 0) * 1000)


def from_v2(source: str, channels: int, operation: dict[str, Any]) -> Transcript:
    """``response.chunks`` of a finished v2 operation; channelTag counts from 1."""
    phrases = []
    for chunk in operation.get("response", {}).get("chunks", []):
        alts = chunk.get("alternatives") or []
        if not alts or not str(alts[0].get("text", "")).strip():
            continue
        alt = alts[0]
        words = tuple(
            TimedWord(w.get("word", ""), _ms(w.get("startTime", "0s")), _ms(w.get("endTime", "0s")))
            for w in alt.get("words", [])
        )
        channel = max(int(chunk.get("channelTag", "1")) - 1, 0)
        start = words[0].start_ms if words else 0
        end = words[-1].end_ms if words else 0
        phrases.append(Phrase(channel, str(alt["text"]), start, end, words))
    return Transcript(source, channels, sorted(phrases, key=_order))


def _order(p: Phrase) -> tuple[int, int]:
    return (p.start_ms, p.channel)


def _clock(ms: int, sep: str) -> str:
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _label(t: Transcript, p: Phrase) -> str:
    return f"[{p.channel}] " if t.channels > 1 else ""


def render(t: Transcript, fmt: str) -> str:
    """The transcript in ``fmt`` (one of FORMATS); stereo files label phrases by channel."""
    if fmt == "json":
        return json.dumps(t.as_dict(), ensure_ascii=False, indent=2) + "\n"
    if fmt == "text":
        if t.channels == 1:
            return t.channel_text(0) + "\n"
        return "".join(f"channel {ch}: {t.channel_text(ch)}\n" for ch in range(t.channels))
    if fmt == "srt":
        return "\n".join(
            f"{i}\n{_clock(p.start_ms, ',')} --> {_clock(p.end_ms, ',')}\n{_label(t, p)}{p.text}\n"
            for i, p in enumerate(t.phrases, 1)
        )
    if fmt == "vtt":
        cues = "\n".join(
            f"{_clock(p.start_ms, '.')} --> {_clock(p.end_ms, '.')}\n{_label(t, p)}{p.text}\n"
            for p in t.phrases
        )
        return "WEBVTT\n\n" + cues
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
