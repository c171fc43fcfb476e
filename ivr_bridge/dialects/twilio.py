"""Twilio Media Streams, the bridge's side: JSON text frames in, model events out.

Twilio is the websocket client. It sends ``connected``, ``start`` (callSid, accountSid,
tracks, mediaFormat: always mu-law 8 kHz mono, customParameters), ``media`` (base64 mu-law,
20 ms), ``dtmf`` (bidirectional streams), ``mark`` echoes and ``stop``; we may send ``media``,
``mark`` and ``clear`` back on a ``<Connect><Stream>``. The shared machinery is in
:mod:`~ivr_bridge.dialects.twilio_family`; Twilio's own side (the frames a real Twilio sends,
for the simulator and the tests) is :mod:`ivr_bridge.simulators.twilio`.

Authentication: ``auth = "signature"`` checks ``X-Twilio-Signature`` (HMAC-SHA1 with the
account's auth token over the URL Twilio called, which server.py rebuilds from
``server.public_url``). Twilio's stream URL may not carry a query string, so one is refused
with 400 before anything else.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from ivr_bridge.dialects import strictjson as sj
from ivr_bridge.dialects.base import DialectSettings, DialectSpec
from ivr_bridge.dialects.twilio_family import (
    CHANNEL_NAMES,
    DTMF_DIGITS,
    TRACKS,
    StreamCounters,
    StreamFactory,
    StreamStart,
    TwilioStyleDialect,
    fill_gaps_option,
    media_format,
    parse_tracks,
)
from ivr_bridge.errors import ConfigError, DialectError

SAMPLE_RATE: Final = 8000
FRAME_MS: Final = 20
FRAME_BYTES: Final = SAMPLE_RATE * FRAME_MS // 1000  # one mu-law byte per sample
MULAW_ENCODING: Final = "audio/x-mulaw"

TwilioCounters = StreamCounters  # the name the tests and the simulator knew first

__all__ = [
    "CHANNEL_NAMES",
    "DTMF_DIGITS",
    "FRAME_BYTES",
    "FRAME_MS",
    "MULAW_ENCODING",
    "SAMPLE_RATE",
    "SPEC",
    "TRACKS",
    "TwilioCounters",
    "TwilioDialect",
]


def stream_ids(message: dict[str, Any], body: dict[str, Any], key: str) -> str:
    """The stream id, from the top level or the start body; both present must agree."""
    outer, inner = message.get(key), body.get(key)
    if outer is None and inner is None:
        raise sj.invalid(f"missing {key}")
    outer_sid = None if outer is None else sj.text(outer, key)
    inner_sid = None if inner is None else sj.text(inner, f"start.{key}")
    if outer_sid is not None and inner_sid is not None and outer_sid != inner_sid:
        raise sj.protocol(f"{key} mismatch")
    return outer_sid or inner_sid or ""


class TwilioDialect(TwilioStyleDialect):
    """Parses what Twilio sends on a Media Streams socket; queues what we send back."""

    name = "twilio"
    formats: ClassVar[Mapping[str, tuple[int, ...]]] = {"pcmu": (SAMPLE_RATE,)}
    l16_big_endian = False
    # options.account_sids: when set, a start from any other account is refused (1008), so a
    # signature made with one of our tokens cannot carry another account's stream.
    account_sids: frozenset[str] = frozenset()

    def parse_start(self, message: dict[str, Any]) -> StreamStart:
        body = sj.obj(sj.required(message, "start", "start"), "start")
        stream_sid = stream_ids(message, body, "streamSid")
        call_sid = sj.text(sj.required(body, "callSid", "start.callSid"), "start.callSid")
        account_sid = sj.text(
            sj.required(body, "accountSid", "start.accountSid"), "start.accountSid"
        )
        if self.account_sids and account_sid not in self.account_sids:
            raise DialectError("accountSid not allowed", DialectError.POLICY_VIOLATION)
        tracks = parse_tracks(sj.required(body, "tracks", "start.tracks"))
        fmt = sj.obj(sj.required(body, "mediaFormat", "start.mediaFormat"), "start.mediaFormat")
        sj.text(sj.required(fmt, "encoding", "mediaFormat.encoding"), "mediaFormat.encoding")
        sj.integer(
            sj.required(fmt, "sampleRate", "mediaFormat.sampleRate"), "mediaFormat.sampleRate"
        )
        channels = sj.integer(
            sj.required(fmt, "channels", "mediaFormat.channels"), "mediaFormat.channels"
        )
        codec, rate = media_format(
            fmt,
            where="mediaFormat",
            rate_key="sampleRate",
            allowed=self.formats,
            quoted_rate=False,
        )
        if channels != 1:
            raise sj.unsupported("unsupported media format")
        custom = sj.string_map(body.get("customParameters"), "start.customParameters")
        return StreamStart(
            stream_id=stream_sid,
            call_id=call_sid,
            tracks=tracks,
            codec=codec,
            wire_rate=rate,
            l16_big_endian=self.l16_big_endian,
            metadata={
                "account_sid": account_sid,
                "call_sid": call_sid,
                "stream_sid": stream_sid,
                "tracks": ",".join(tracks),
            },
            custom_parameters=custom,
        )

    def check_stop(self, body: dict[str, Any], start: StreamStart) -> None:
        expected = {"callSid": start.call_id, "accountSid": start.metadata["account_sid"]}
        for key, value in expected.items():
            if key in body and sj.text(body[key], f"stop.{key}") != value:
                raise sj.protocol(f"stop.{key} mismatch")

    # ---- back-channel shorthands (bidirectional <Connect><Stream> only) ------------------

    def send_media(self, mulaw: bytes) -> bool:
        """Queue mu-law/8000 audio for Twilio to play. False when there is no live stream."""
        if not mulaw:
            raise ValueError("no audio to send")
        return self._queue({"event": "media", "media": {"payload": _b64(mulaw)}})

    def send_mark(self, name: str) -> bool:
        """Queue a mark; Twilio echoes it once the audio queued before it has played."""
        if not name:
            raise ValueError("a mark needs a name")
        return self._queue(self.outbound_mark(name))

    def send_clear(self) -> bool:
        """Drop Twilio's queued outbound audio (barge-in); pending marks come back at once."""
        return self._queue(self.outbound_clear())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def account_sids_option(options: Mapping[str, Any]) -> frozenset[str]:
    raw = options.get("account_sids", [])
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise ConfigError("options.account_sids", "expected a list of account SIDs")
    return frozenset(raw)


def make_factory(settings: DialectSettings) -> StreamFactory:
    """Twilio: auth "none" or "signature" (secrets.auth_token); no query strings."""

    def build(s: DialectSettings) -> TwilioDialect:
        dialect = TwilioDialect(fill_timestamp_gaps=fill_gaps_option(s.options))
        dialect.account_sids = account_sids_option(s.options)
        return dialect

    return StreamFactory(
        "twilio", build, settings, schemes=("none", "signature"), refuse_query=True
    )


SPEC = DialectSpec(
    name="twilio",
    default_path="/twilio",
    make_factory=make_factory,
    description="Twilio Media Streams (JSON, mu-law 8 kHz, X-Twilio-Signature)",
)
