"""Exotel Stream / Voicebot applets: snake_case JSON, 16-bit PCM ("slin"), quoted numbers.

From Exotel: ``connected``; ``start`` (``stream_sid``; ``start.{stream_sid, call_sid,
account_sid, from, to, custom_parameters, media_format.{encoding "audio/x-raw", sample_rate
"8000", bit_rate "16"}}``); ``media`` (``media.{chunk, timestamp, payload}``, no track: the
caller's audio, about 100 ms a frame); ``dtmf`` (``dtmf.{digit, duration}``, Voicebot);
``mark`` echoes (Voicebot); ``stop`` (``stop.{call_sid, account_sid, reason}``).
Back-channel (Voicebot): ``media`` (``media.payload``), ``mark``, ``clear``, each with
``stream_sid``; outbound audio is padded to a multiple of 320 bytes and at least 100 ms, as
Exotel asks, so playback has no gaps.

Codecs: ``audio/x-raw`` = L16 little-endian at 8, 16 or 24 kHz; mu-law 8 kHz (the beta
``MediaFormat`` option) is accepted too.

Authentication: ``auth = "basic"`` checks the ``Authorization: Basic`` credentials Exotel sends
for ``wss://KEY:TOKEN@host/...`` URLs (secrets.username, secrets.password); ``auth = "token"``
a ``token`` query parameter (up to three custom query parameters are allowed).
"""

from __future__ import annotations

import base64
from typing import Any, Final

from ivr_bridge.dialects import strictjson as sj
from ivr_bridge.dialects.base import DialectSettings, DialectSpec
from ivr_bridge.dialects.twilio_family import (
    StreamFactory,
    StreamStart,
    TwilioStyleDialect,
    fill_gaps_option,
    media_format,
    metadata_of,
)

FORMATS = {"l16": (8000, 16000, 24000), "pcmu": (8000,)}
OUTBOUND_GRANULE: Final = 320  # bytes: outbound chunks must be a multiple of this
OUTBOUND_MIN_MS: Final = 100
_METADATA = {"call_sid": "call_sid", "account_sid": "account_sid", "from": "from", "to": "to"}


class ExotelDialect(TwilioStyleDialect):
    """One Exotel stream. See the module docstring."""

    name = "exotel"
    seq_key = "sequence_number"
    stream_key = "stream_sid"
    stream_required = False
    media_layout_keys = ("chunk", "timestamp")
    stream_before_media = True
    media_track_key = None
    dtmf_duration_key = "duration"

    def parse_start(self, message: dict[str, Any]) -> StreamStart:
        body = sj.obj(sj.required(message, "start", "start"), "start")
        raw_id = body.get("stream_sid", message.get("stream_sid"))
        if raw_id is None:
            raise sj.invalid("missing stream_sid")
        stream_id = sj.text(raw_id, "stream_sid")
        outer = message.get("stream_sid")
        if outer is not None and sj.text(outer, "stream_sid") != stream_id:
            raise sj.protocol("stream_sid mismatch")
        call_id = sj.text(sj.required(body, "call_sid", "start.call_sid"), "start.call_sid")
        fmt = sj.obj(sj.required(body, "media_format", "start.media_format"), "start.media_format")
        codec, rate = media_format(
            fmt, where="media_format", rate_key="sample_rate", allowed=FORMATS, quoted_rate=True
        )
        if codec == "l16" and sj.decimal(fmt.get("bit_rate", "16"), "media_format.bit_rate") != 16:
            raise sj.unsupported("unsupported media format")
        metadata = metadata_of(body, _METADATA, "start")
        metadata["stream_sid"] = stream_id
        return StreamStart(
            stream_id=stream_id,
            call_id=call_id,
            tracks=("inbound",),
            codec=codec,
            wire_rate=rate,
            metadata=metadata,
            custom_parameters=sj.string_map(
                body.get("custom_parameters"), "start.custom_parameters"
            ),
        )

    def check_stop(self, body: dict[str, Any], start: StreamStart) -> None:
        if "call_sid" in body and sj.text(body["call_sid"], "stop.call_sid") != start.call_id:
            raise sj.protocol("stop.call_sid mismatch")

    def outbound_media(self, pcm: bytes, sample_rate: int) -> dict[str, Any]:
        audio = self.encode_outbound(pcm, sample_rate)
        rate = self._start.wire_rate if self._start else 8000
        bytes_per_ms = (
            rate * 2 // 1000 if self._start and self._start.codec == "l16" else rate // 1000
        )
        minimum = OUTBOUND_MIN_MS * bytes_per_ms
        padded = max(minimum, -(-len(audio) // OUTBOUND_GRANULE) * OUTBOUND_GRANULE)
        fill = b"\xff" if self._start and self._start.codec == "pcmu" else b"\x00"
        audio += fill * (padded - len(audio))
        return {"event": "media", "media": {"payload": base64.b64encode(audio).decode("ascii")}}


def make_factory(settings: DialectSettings) -> StreamFactory:
    """Exotel: auth "none", "basic" (secrets.username/password) or "token" (``?token=``)."""

    def build(s: DialectSettings) -> ExotelDialect:
        return ExotelDialect(fill_timestamp_gaps=fill_gaps_option(s.options))

    return StreamFactory(
        "exotel", build, settings, schemes=("none", "basic", "token"), token_query=True
    )


SPEC = DialectSpec(
    name="exotel",
    default_path="/exotel",
    make_factory=make_factory,
    description="Exotel Stream/Voicebot applets (JSON, L16 8/16/24 kHz, basic auth)",
)
