"""Telnyx media streaming: Twilio's shape in snake_case, RTP payloads in the call's codec.

From Telnyx: ``connected``; ``start`` (``stream_id`` at the top level; ``start.call_control_id``,
``call_session_id``, ``user_id``, ``from``, ``to``, ``client_state``, ``tags``,
``custom_parameters``, ``media_format.{encoding, sample_rate, channels}``); ``media``
(``media.{track, chunk, timestamp, payload}``, base64 RTP payload without its header);
``dtmf`` (``dtmf.digit``); ``mark`` echoes; ``error``; ``stop``. The start message does not
list tracks, so the ``tracks`` option says which to recognize (default the caller's); media on
another track is counted and dropped. Telnyx warns that frame order is not guaranteed:
reorders are counted. Back-channel (bidirectional, RTP mode): ``media.payload`` in the
stream's codec, ``mark``, ``clear``.

Codecs: PCMU, PCMA at 8 kHz, L16 at 8/16 kHz. RTP carries L16 big-endian (RFC 3551), which is
the default; option ``l16_byte_order = "little"`` if captures show otherwise.

Authentication: ``auth = "token"`` checks ``x-telnyx-streaming-auth-token`` (Telnyx's
``stream_auth_token``) or ``Authorization: Bearer``.
"""

from __future__ import annotations

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
    metadata_of,
    option_tracks,
)

FORMATS = {"pcmu": (8000,), "pcma": (8000,), "l16": (8000, 16000)}
AUTH_HEADER = "x-telnyx-streaming-auth-token"
_METADATA = {
    "call_control_id": "call_control_id",
    "call_session_id": "call_session_id",
    "user_id": "user_id",
    "from": "from",
    "to": "to",
    "client_state": "client_state",
}


class TelnyxDialect(TwilioStyleDialect):
    """One Telnyx stream. See the module docstring."""

    name = "telnyx"
    seq_key = "sequence_number"
    stream_key = "stream_id"
    stream_required = False
    tracks_announced = False
    acknowledged_events = frozenset({"error"})

    def __init__(
        self,
        *,
        tracks: tuple[str, ...] = ("inbound",),
        l16_big_endian: bool = True,
        fill_timestamp_gaps: bool = False,
    ) -> None:
        super().__init__(fill_timestamp_gaps=fill_timestamp_gaps)
        self._wanted_tracks = tracks
        self._big_endian = l16_big_endian

    def parse_start(self, message: dict[str, Any]) -> StreamStart:
        body = sj.obj(sj.required(message, "start", "start"), "start")
        raw_id = message.get("stream_id", body.get("stream_id"))
        stream_id = sj.text(raw_id, "stream_id") if raw_id is not None else None
        if stream_id is None:
            raise sj.invalid("missing stream_id")
        call_id = sj.text(
            sj.required(body, "call_control_id", "start.call_control_id"),
            "start.call_control_id",
        )
        fmt = sj.obj(sj.required(body, "media_format", "start.media_format"), "start.media_format")
        codec, rate = media_format(
            fmt, where="media_format", rate_key="sample_rate", allowed=FORMATS, quoted_rate=True
        )
        channels = sj.decimal(fmt.get("channels", 1), "media_format.channels")
        if channels != 1:
            raise sj.unsupported("unsupported media format")
        metadata = metadata_of(body, _METADATA, "start")
        tags = body.get("tags")
        if tags is not None:
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise sj.invalid("start.tags must be an array of strings")
            metadata["tags"] = ",".join(sj.text(t, "start.tags") for t in tags)
        metadata["stream_id"] = stream_id
        metadata["tracks"] = ",".join(self._wanted_tracks)
        return StreamStart(
            stream_id=stream_id,
            call_id=call_id,
            tracks=self._wanted_tracks,
            codec=codec,
            wire_rate=rate,
            l16_big_endian=self._big_endian,
            metadata=metadata,
            custom_parameters=sj.string_map(
                body.get("custom_parameters"), "start.custom_parameters"
            ),
        )

    def outbound_stream_key(self) -> str | None:
        return None  # Telnyx's inbound commands name no stream: one stream per socket


def make_factory(settings: DialectSettings) -> StreamFactory:
    """Telnyx: auth "none" or "token" (secrets.token = the stream_auth_token)."""

    def build(s: DialectSettings) -> TelnyxDialect:
        return TelnyxDialect(
            tracks=option_tracks(s.options),
            l16_big_endian=byte_order_option(s.options, "big"),
            fill_timestamp_gaps=fill_gaps_option(s.options),
        )

    return StreamFactory(
        "telnyx", build, settings, schemes=("none", "token"), token_header=AUTH_HEADER
    )


SPEC = DialectSpec(
    name="telnyx",
    default_path="/telnyx",
    make_factory=make_factory,
    description="Telnyx media streaming (snake_case JSON, PCMU/PCMA/L16, stream auth token)",
)
