"""Plivo Audio Streams: camelCase JSON with real numbers, L16 or mu-law, checkpoints.

From Plivo (no ``connected``, and usually no ``stop``: the socket closing ends the stream):
``start`` (``start.{callId, streamId, accountId, tracks, mediaFormat.{encoding, sampleRate}}``,
top-level ``extra_headers``, a ``k=v,k2=v2`` string); ``media`` (``streamId``,
``media.{track, timestamp, chunk, payload}``; ``timestamp`` is Unix milliseconds, so it is kept
for gap accounting only); ``dtmf`` (``dtmf.digit``); ``playedStream`` (``name``: a checkpoint
we queued has played); ``clearedAudio`` (our ``clearAudio`` took effect). Back-channel:
``playAudio`` (``media.{contentType, sampleRate, payload}``), ``checkpoint`` and
``clearAudio``, each with ``streamId``.

Codecs: ``audio/x-mulaw`` 8 kHz, ``audio/x-l16`` 8 or 16 kHz (little-endian by default;
option ``l16_byte_order``).

Authentication: ``auth = "token"`` checks ``Authorization: Bearer`` or a ``token`` query
parameter (the stream URL is all Plivo lets us choose).
"""

from __future__ import annotations

import base64
from typing import Any

from ivr_bridge.dialects import strictjson as sj
from ivr_bridge.dialects.base import DialectSettings, DialectSpec
from ivr_bridge.dialects.twilio_family import (
    StreamFactory,
    StreamStart,
    TwilioStyleDialect,
    byte_order_option,
    fill_gaps_option,
    media_format,
    parse_tracks,
)

FORMATS = {"pcmu": (8000,), "l16": (8000, 16000)}
_CONTENT_TYPES = {"pcmu": "audio/x-mulaw", "l16": "audio/x-l16"}


def parse_extra_headers(value: Any) -> dict[str, str]:
    """Plivo's ``extra_headers``: ``k=v`` pairs split by commas or semicolons (or an object)."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return sj.string_map(value, "extra_headers")
    raw = sj.text(value, "extra_headers")
    out: dict[str, str] = {}
    for part in raw.replace(";", ",").split(","):
        key, sep, item = part.partition("=")
        if sep and key.strip():
            out[key.strip()] = item.strip()
    return out


class PlivoDialect(TwilioStyleDialect):
    """One Plivo stream. See the module docstring."""

    name = "plivo"
    stream_key = "streamId"
    stream_required = False
    media_layout_keys = ("track", "timestamp", "chunk")
    stream_before_media = True
    mark_event = "playedStream"
    acknowledged_events = frozenset({"clearedAudio"})
    timestamp_is_epoch = True

    def __init__(self, *, l16_big_endian: bool = False, fill_timestamp_gaps: bool = False) -> None:
        super().__init__(fill_timestamp_gaps=fill_timestamp_gaps)
        self._big_endian = l16_big_endian

    def parse_start(self, message: dict[str, Any]) -> StreamStart:
        body = sj.obj(sj.required(message, "start", "start"), "start")
        stream_id = sj.text(sj.required(body, "streamId", "start.streamId"), "start.streamId")
        outer = message.get("streamId")
        if outer is not None and sj.text(outer, "streamId") != stream_id:
            raise sj.protocol("streamId mismatch")
        call_id = sj.text(sj.required(body, "callId", "start.callId"), "start.callId")
        raw_tracks = body.get("tracks", ["inbound"])
        if raw_tracks in (["both"], "both"):
            raw_tracks = ["inbound", "outbound"]
        tracks = parse_tracks(raw_tracks)
        fmt = sj.obj(sj.required(body, "mediaFormat", "start.mediaFormat"), "start.mediaFormat")
        codec, rate = media_format(
            fmt, where="mediaFormat", rate_key="sampleRate", allowed=FORMATS, quoted_rate=True
        )
        metadata = {"call_id": call_id, "stream_id": stream_id, "tracks": ",".join(tracks)}
        account = body.get("accountId")
        if account is not None:
            metadata["account_id"] = sj.text(account, "start.accountId")
        return StreamStart(
            stream_id=stream_id,
            call_id=call_id,
            tracks=tracks,
            codec=codec,
            wire_rate=rate,
            l16_big_endian=self._big_endian,
            metadata=metadata,
            custom_parameters=parse_extra_headers(message.get("extra_headers")),
        )

    def mark_name(self, message: dict[str, Any]) -> str:
        return sj.text(sj.required(message, "name", "name"), "name")

    def outbound_media(self, pcm: bytes, sample_rate: int) -> dict[str, Any]:
        payload = base64.b64encode(self.encode_outbound(pcm, sample_rate)).decode("ascii")
        codec = self._start.codec if self._start else "pcmu"
        rate = self._start.wire_rate if self._start else 8000
        return {
            "event": "playAudio",
            "media": {"contentType": _CONTENT_TYPES[codec], "sampleRate": rate, "payload": payload},
        }

    def outbound_mark(self, name: str) -> dict[str, Any]:
        return {"event": "checkpoint", "name": name}

    def outbound_clear(self) -> dict[str, Any]:
        return {"event": "clearAudio"}


def make_factory(settings: DialectSettings) -> StreamFactory:
    """Plivo: auth "none" or "token" (secrets.token, as a bearer token or ``?token=``)."""

    def build(s: DialectSettings) -> PlivoDialect:
        return PlivoDialect(
            l16_big_endian=byte_order_option(s.options, "little"),
            fill_timestamp_gaps=fill_gaps_option(s.options),
        )

    return StreamFactory("plivo", build, settings, schemes=("none", "token"), token_query=True)


SPEC = DialectSpec(
    name="plivo",
    default_path="/plivo",
    make_factory=make_factory,
    description="Plivo Audio Streams (JSON, mu-law 8 kHz or L16 8/16 kHz, checkpoints)",
)
