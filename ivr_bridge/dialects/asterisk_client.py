"""Asterisk's side of chan_websocket: the frames Asterisk sends, for the simulator and tests.

:class:`AsteriskClient` builds the upgrade (path, query, Basic or bearer credentials) and the
messages an Asterisk channel dialled with ``Dial(WebSocket/<client>/c(<format>))`` produces:
``MEDIA_START`` (plain text or, with ``f(json)``, JSON), 20 ms binary media frames, ``DTMF_END``,
``MEDIA_XOFF``/``MEDIA_XON`` and the mark echo. Asterisk ends a call by closing the socket
(``closes_socket``: there is no goodbye message, so the simulator closes after ``closing()``).

It also has the simulator's client-encoder shape (``upgrade``, ``opening``, ``audio``, ``digit``,
``skip``, ``closing``, ``on_server_frame``), taking ``tracks``, ``custom_parameters`` and
``auth`` keywords like the other encoders.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from ivr_bridge.audio.codecs import pcm16_to_alaw, pcm16_to_ulaw, resample
from ivr_bridge.dialects.asterisk import FORMATS, AsteriskFormat
from ivr_bridge.simulators.base import (
    ClientAuthLike,
    authorization_headers,
    basic_authorization,
    with_query,
)

Frame = str | bytes


def auth_headers(auth: ClientAuthLike | None) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, query parameters) presenting ``auth`` as Asterisk can: Basic from
    websocket_client.conf, or a token in the URI (Asterisk sets no other headers)."""
    if auth is None or auth.scheme == "none":
        return {}, {}
    if auth.scheme == "basic":
        secrets = auth.secrets
        basic = basic_authorization(secrets.get("username", ""), secrets.get("password", ""))
        return {"Authorization": basic}, {}
    return {}, {"token": auth.secrets.get("token", "")}


_IDLE_STATUS: dict[str, Any] = {
    "queue_length": 0,
    "xon_level": 800,
    "xoff_level": 900,
    "queue_full": "false",
    "bulk_media": "false",
    "media_paused": "false",
}


class AsteriskClient:
    """One simulated chan_websocket channel. Every method returns the frames to send, in order.

    ``control_format`` is "plain-text" (the default in Asterisk) or "json". The channel is one
    mono stream, so ``tracks`` can only be ("inbound",). ``custom_parameters`` travel as URI
    parameters, as the dial option ``v()`` sends them.
    """

    dialect = "asterisk"
    frame_ms = 20
    closes_socket = True

    def __init__(
        self,
        *,
        tracks: Sequence[str] = ("inbound",),
        custom_parameters: Mapping[str, str] | None = None,
        auth: ClientAuthLike | None = None,
        media_format: str = "ulaw",
        control_format: str = "plain-text",
        connection_id: str | None = None,
        channel: str = "PJSIP/caller-00000001",
        channel_id: str | None = None,
        channel_variables: Mapping[str, str] | None = None,
        uri_parameters: Mapping[str, str] | None = None,
    ) -> None:
        if media_format not in FORMATS:
            raise ValueError(f"media_format must be one of {sorted(FORMATS)}")
        if control_format not in ("plain-text", "json"):
            raise ValueError("control_format must be 'plain-text' or 'json'")
        if tuple(tracks) != ("inbound",):
            raise ValueError("a chan_websocket channel carries one track: ('inbound',)")
        self.tracks: tuple[str, ...] = ("inbound",)
        self.auth = auth
        self.format: AsteriskFormat = FORMATS[media_format]
        self.control_format = control_format
        self.connection_id = connection_id or str(uuid.uuid4())
        self.channel = channel
        self.channel_id = channel_id or f"{uuid.uuid4().int % 10**10}.1"
        self.channel_variables = dict(channel_variables or {})
        self.uri_parameters = {**dict(uri_parameters or {}), **dict(custom_parameters or {})}
        self.sample_rate = self.format.sample_rate  # the PCM rate ``audio`` takes
        self.frame_bytes = self.format.sample_rate // 50 * self.format.bytes_per_sample

    # ---- the upgrade -----------------------------------------------------------------------

    def upgrade_path(self, path: str = "/asterisk", *, token: str | None = None) -> str:
        """The request target: ``v()`` URI parameters, plus ``token`` when given."""
        params = dict(self.uri_parameters)
        if token is not None:
            params["token"] = token
        return f"{path}?{urlencode(params)}" if params else path

    # Basic auth as websocket_client.conf sends it, or a bearer token.
    upgrade_headers = staticmethod(authorization_headers)

    # ---- control messages ------------------------------------------------------------------

    def _event(self, name: str, fields: Mapping[str, Any]) -> str:
        if self.control_format == "json":
            return json.dumps({"event": name, **fields}, separators=(",", ":"))
        parts = [name, *(f"{k}:{v}" for k, v in fields.items())]
        return " ".join(parts)

    def media_start(self) -> str:
        fields: dict[str, Any] = {
            "connection_id": self.connection_id,
            "channel": self.channel,
            "channel_id": self.channel_id,
            "format": self.format.name,
            "optimal_frame_size": self.frame_bytes,
            "ptime": 20,
        }
        if self.control_format == "json":
            fields["channel_variables"] = self.channel_variables
        return self._event("MEDIA_START", fields)

    def dtmf(self, digit: str) -> str:
        return self._event("DTMF_END", {"digit": digit})

    def xoff(self) -> str:
        return self._event("MEDIA_XOFF", {})

    def xon(self) -> str:
        return self._event("MEDIA_XON", {})

    def mark_processed(self, correlation_id: str) -> str:
        return self._event("MEDIA_MARK_PROCESSED", {"correlation_id": correlation_id})

    # ---- media -----------------------------------------------------------------------------

    def encode(self, pcm: bytes, sample_rate: int) -> bytes:
        """PCM16 at ``sample_rate`` in the channel's wire format."""
        pcm = resample(pcm, sample_rate, self.format.sample_rate)
        if self.format.encoding == "pcmu":
            return pcm16_to_ulaw(pcm)
        if self.format.encoding == "pcma":
            return pcm16_to_alaw(pcm)
        return pcm

    def media_frames(self, pcm: bytes, sample_rate: int) -> list[bytes]:
        """20 ms binary frames, the last padded with silence, as the Asterisk core frames them."""
        media = self.encode(pcm, sample_rate)
        media += bytes([self.format.silence]) * (-len(media) % self.frame_bytes)
        return [media[i : i + self.frame_bytes] for i in range(0, len(media), self.frame_bytes)]

    def raw_frames(self, media: bytes) -> list[bytes]:
        """Already-encoded media (e.g. mu-law from a file) cut into 20 ms frames."""
        media += bytes([self.format.silence]) * (-len(media) % self.frame_bytes)
        return [media[i : i + self.frame_bytes] for i in range(0, len(media), self.frame_bytes)]

    def start_frames(self) -> list[str | bytes]:
        return [self.media_start()]

    def stop_frames(self) -> list[str | bytes]:
        """Asterisk hangs up by closing the socket: no message."""
        return []

    # ---- the simulator's client-encoder shape ----------------------------------------------

    @property
    def call_id(self) -> str:
        return self.channel_id

    @property
    def stream_id(self) -> str:
        return self.connection_id

    def upgrade(self, url: str) -> tuple[str, dict[str, str]]:
        headers, query = auth_headers(self.auth)
        return with_query(url, {**self.uri_parameters, **query}), headers

    def opening(self) -> list[Frame]:
        return [self.media_start()]

    def audio(self, pcm: bytes, track: str) -> tuple[Frame, int]:
        """One binary frame of ``pcm`` (PCM16 at ``sample_rate``) in the channel's format."""
        payload = self.encode(pcm, self.sample_rate)
        return payload, len(payload)

    def skip(self, ms: float) -> None:
        """chan_websocket frames carry no timestamps: a gap is just time without frames."""

    def digit(self, digit: str) -> list[Frame]:
        return [self.dtmf(digit)]

    def closing(self) -> list[Frame]:
        return []

    def on_server_frame(self, frame: Frame) -> list[Frame]:
        """Asterisk's replies: ``MEDIA_MARK_PROCESSED`` for ``MARK_MEDIA`` (the simulator plays
        nothing, so a mark is reached at once) and ``STATUS`` for ``GET_STATUS``."""
        if not isinstance(frame, str):
            return []
        if frame.lstrip().startswith("{"):
            try:
                command = json.loads(frame)
            except ValueError:
                return []
            if not isinstance(command, dict):
                return []
            name, arg = command.get("command"), command.get("correlation_id", "")
        else:
            name, _, arg = frame.strip().partition(" ")
        if name == "MARK_MEDIA":
            return [self.mark_processed(str(arg))]
        if name == "GET_STATUS":
            return [self._event("STATUS", _IDLE_STATUS)]
        return []
