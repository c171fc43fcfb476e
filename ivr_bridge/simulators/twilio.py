"""Twilio's side of Media Streams: the frames a real Twilio sends, for the simulator and tests.

:class:`TwilioStreamEncoder` numbers frames as Twilio does: ``sequenceNumber`` counts every
message from ``start`` ("1"); ``chunk`` counts media per track from "1"; ``timestamp`` is
per-track milliseconds since the stream began and keeps advancing across a :meth:`skip`.
It is also the base of the other Twilio-family encoders (:mod:`.twilio_family`), which
override the message builders (``_start_message`` and friends) and the codec.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ivr_bridge.audio.codecs import (
    ULAW_SILENCE,
    pcm16_to_alaw,
    pcm16_to_ulaw,
)
from ivr_bridge.dialects.twilio_family import TRACKS
from ivr_bridge.dialects.upgrade_auth import twilio_signature
from ivr_bridge.simulators.base import ClientAuth, Frame, with_query

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000
MULAW_ENCODING = "audio/x-mulaw"


def new_sid(prefix: str) -> str:
    """A Twilio-style identifier: two-letter prefix + 32 hex digits (CA..., MZ..., AC...)."""
    return prefix + uuid.uuid4().hex


class TwilioStreamEncoder:
    """Produces the text frames Twilio sends for one stream (and is a ClientEncoder)."""

    dialect = "twilio"
    codec = "pcmu"  # what ``audio`` encodes to: "pcmu" | "pcma" | "l16" | "l16be"
    frame_ms = FRAME_MS
    token_header: str | None = None  # a platform's own token header (None: a bearer token)
    token_in_query = False  # send a shared token as ?token= instead of a header

    def __init__(
        self,
        *,
        account_sid: str | None = None,
        call_sid: str | None = None,
        stream_sid: str | None = None,
        tracks: Sequence[str] = ("inbound",),
        custom_parameters: Mapping[str, str] | None = None,
        auth: ClientAuth | None = None,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        if not tracks or any(t not in TRACKS for t in tracks):
            raise ValueError("tracks must be 'inbound' and/or 'outbound'")
        self.account_sid = account_sid or new_sid("AC")
        self.call_sid = call_sid or new_sid("CA")
        self.stream_sid = stream_sid or new_sid("MZ")
        self.tracks = tuple(tracks)
        self.custom_parameters = dict(custom_parameters or {})
        self.auth = auth or ClientAuth()
        self.sample_rate = sample_rate
        self._seq = 0
        self._chunk = dict.fromkeys(self.tracks, 0)
        self._next_ms = dict.fromkeys(self.tracks, 0.0)

    # ---- ClientEncoder ---------------------------------------------------------------------

    @property
    def call_id(self) -> str:
        return self.call_sid

    @property
    def stream_id(self) -> str:
        return self.stream_sid

    def upgrade(self, url: str) -> tuple[str, dict[str, str]]:
        """Twilio signs the URL it calls with the account's auth token."""
        auth = self.auth
        if auth.scheme == "signature":
            return url, {"X-Twilio-Signature": twilio_signature(auth.secrets["auth_token"], url)}
        if auth.scheme == "basic":
            return url, {"Authorization": auth.basic_header()}
        if auth.scheme == "token":
            token = auth.secrets["token"]
            if self.token_in_query:
                return with_query(url, {"token": token}), {}
            if self.token_header is not None:
                return url, {self.token_header: token}
            return url, {"Authorization": f"Bearer {token}"}
        return url, {}

    def opening(self) -> list[Frame]:
        return [self.connected(), self.start()]

    def audio(self, pcm: bytes, track: str) -> tuple[Frame, int]:
        payload = self.encode(pcm)
        return self.media(payload, track=track), len(payload)

    def digit(self, digit: str) -> list[Frame]:
        return [self.dtmf(digit)]

    def closing(self) -> list[Frame]:
        return [self.stop()]

    def on_server_frame(self, frame: Frame) -> list[Frame]:
        return []  # marks are echoed by a real platform after playback; the simulator plays none

    def encode(self, pcm: bytes) -> bytes:
        if self.codec == "pcmu":
            return pcm16_to_ulaw(pcm)
        if self.codec == "pcma":
            return pcm16_to_alaw(pcm)
        if self.codec == "l16be":
            swapped = bytearray(len(pcm))
            swapped[0::2], swapped[1::2] = pcm[1::2], pcm[0::2]
            return bytes(swapped)
        return pcm

    # ---- Twilio's frames -------------------------------------------------------------------

    @property
    def sequence_number(self) -> int:
        """The last sequenceNumber used (0 before start)."""
        return self._seq

    def timestamp_ms(self, track: str = "inbound") -> int:
        """The timestamp the next media frame of ``track`` will carry."""
        return int(self._next_ms[track])

    def _dump(self, message: dict[str, Any]) -> str:
        return json.dumps(message, separators=(",", ":"))

    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    def connected(self) -> str:
        return self._dump({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self) -> str:
        return self._dump(self._start_message(self._next_seq()))

    def _start_message(self, seq: str) -> dict[str, Any]:
        return {
            "event": "start",
            "sequenceNumber": seq,
            "start": {
                "accountSid": self.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": list(self.tracks),
                "mediaFormat": {
                    "encoding": MULAW_ENCODING,
                    "sampleRate": SAMPLE_RATE,
                    "channels": 1,
                },
                "customParameters": self.custom_parameters,
            },
            "streamSid": self.stream_sid,
        }

    def media(
        self, payload: bytes, *, track: str = "inbound", timestamp_ms: int | None = None
    ) -> str:
        """One media message carrying ``payload`` (already encoded) as is."""
        if track not in self._chunk:
            raise ValueError("track was not announced in start")
        seq = self._next_seq()
        self._chunk[track] += 1
        now = self._next_ms[track] if timestamp_ms is None else float(timestamp_ms)
        bytes_per_ms = self.sample_rate // 1000 * (2 if self.codec.startswith("l16") else 1)
        self._next_ms[track] = now + len(payload) / bytes_per_ms
        encoded = base64.b64encode(payload).decode("ascii")
        return self._dump(
            self._media_message(seq, track, str(self._chunk[track]), str(int(now)), encoded)
        )

    def _media_message(
        self, seq: str, track: str, chunk: str, timestamp: str, payload: str
    ) -> dict[str, Any]:
        return {
            "event": "media",
            "sequenceNumber": seq,
            "media": {"track": track, "chunk": chunk, "timestamp": timestamp, "payload": payload},
            "streamSid": self.stream_sid,
        }

    def media_frames(self, mulaw: bytes, *, track: str = "inbound") -> list[str]:
        """Cut ``mulaw`` into 20 ms media messages, padding the last with mu-law silence."""
        out = []
        for i in range(0, len(mulaw), FRAME_BYTES):
            frame = mulaw[i : i + FRAME_BYTES]
            frame += bytes([ULAW_SILENCE]) * (FRAME_BYTES - len(frame))
            out.append(self.media(frame, track=track))
        return out

    def skip(self, ms: float, *, track: str | None = None) -> None:
        """Let ``ms`` pass without media on ``track`` (all tracks when None): a gap or hold."""
        if ms < 0:
            raise ValueError("cannot skip backwards")
        for name in self.tracks if track is None else (track,):
            self._next_ms[name] += ms

    def dtmf(self, digit: str, *, track: str = "inbound_track") -> str:
        return self._dump(self._dtmf_message(self._next_seq(), digit, track))

    def _dtmf_message(self, seq: str, digit: str, track: str) -> dict[str, Any]:
        return {
            "event": "dtmf",
            "streamSid": self.stream_sid,
            "sequenceNumber": seq,
            "dtmf": {"track": track, "digit": digit},
        }

    def mark(self, name: str) -> str:
        """The echo Twilio sends when a mark we queued has been reached."""
        return self._dump(self._mark_message(self._next_seq(), name))

    def _mark_message(self, seq: str, name: str) -> dict[str, Any]:
        return {
            "event": "mark",
            "sequenceNumber": seq,
            "streamSid": self.stream_sid,
            "mark": {"name": name},
        }

    def stop(self) -> str:
        return self._dump(self._stop_message(self._next_seq()))

    def _stop_message(self, seq: str) -> dict[str, Any]:
        return {
            "event": "stop",
            "sequenceNumber": seq,
            "streamSid": self.stream_sid,
            "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
        }
