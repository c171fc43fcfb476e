"""The platform's side of mod_audio_fork / jambonz listen, for the simulator and the tests.

:class:`AudioForkClient` produces what FreeSWITCH (``uuid_audio_fork <uuid> start <url> <mix>
<rate> <metadata>``) or jambonz (the ``listen`` verb) send: the upgrade (subprotocol, Basic
``wsAuth`` or a token), the metadata text frame, binary L16 frames (stereo interleaved), DTMF,
jambonz's playout ``mark`` notices, and the zero-length frame jambonz sends before closing.
The platform then closes the socket itself (``closes_socket``).

It also has the simulator's client-encoder shape (``upgrade``, ``opening``, ``audio``,
``digit``, ``skip``, ``closing``, ``on_server_frame``; ``tracks``, ``custom_parameters`` and
``auth`` keywords); the simulator must request :attr:`AudioForkClient.subprotocol`.
"""

from __future__ import annotations

import json
import uuid
from array import array
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from ivr_bridge.audio.codecs import resample
from ivr_bridge.dialects.freeswitch import MIX_TYPES, SAMPLE_RATES, SUBPROTOCOLS
from ivr_bridge.simulators.base import ClientAuthLike, authorization_headers, with_query

FRAME_MS = 20
Frame = str | bytes


class AudioForkClient:
    """One simulated fork. ``flavor`` "freeswitch" or "jambonz"; every method returns frames.

    ``call_attributes`` are the jambonz call attributes (``from``/``to`` are phone numbers in
    real calls); ``metadata`` the verb's (or start command's) metadata, merged into the first
    frame as jambonz does (``custom_parameters`` join it). ``tracks`` ("inbound",) is a mono
    fork; stereo needs both sides in one frame, so use :meth:`audio_frames` with ``other``.
    """

    frame_ms = FRAME_MS
    closes_socket = True

    def __init__(
        self,
        flavor: str = "jambonz",
        *,
        tracks: Sequence[str] = ("inbound",),
        custom_parameters: Mapping[str, str] | None = None,
        auth: ClientAuthLike | None = None,
        sample_rate: int = 8000,
        mix_type: str = "mono",
        call_sid: str | None = None,
        call_attributes: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if flavor not in SUBPROTOCOLS:
            raise ValueError("flavor must be 'freeswitch' or 'jambonz'")
        if sample_rate not in SAMPLE_RATES or mix_type not in MIX_TYPES:
            raise ValueError("unsupported sample rate or mix type")
        if tuple(tracks) != ("inbound",):
            raise ValueError("the simulator's fork is mono: tracks=('inbound',)")
        self.tracks: tuple[str, ...] = ("inbound",)
        self.auth = auth
        self.flavor = flavor
        self.dialect = flavor
        self.sample_rate = sample_rate
        self.mix_type = mix_type
        self.channels = 2 if mix_type == "stereo" else 1
        self.call_sid = call_sid or str(uuid.uuid4())
        self.call_attributes = dict(call_attributes or {})
        self.metadata = {**dict(metadata or {}), **dict(custom_parameters or {})}
        self.subprotocol = SUBPROTOCOLS[flavor]

    # ---- the upgrade -----------------------------------------------------------------------

    def upgrade_path(
        self, path: str | None = None, *, token: str | None = None, describe: bool = False
    ) -> str:
        """The request target. ``describe`` adds ``sampleRate``/``mixType`` to the query, for a
        FreeSWITCH fork that sends no JSON metadata."""
        params: dict[str, str] = {}
        if describe:
            params.update(sampleRate=str(self.sample_rate), mixType=self.mix_type)
        if token is not None:
            params["token"] = token
        base = path or f"/{self.flavor}"
        return f"{base}?{urlencode(params)}" if params else base

    upgrade_headers = staticmethod(authorization_headers)

    # ---- frames ----------------------------------------------------------------------------

    def metadata_frame(self) -> str:
        body: dict[str, Any] = {}
        if self.flavor == "jambonz":
            body.update(
                callSid=self.call_sid,
                callId=f"{self.call_sid[:8]}@sip.example",
                direction="inbound",
                accountSid="a1b2c3d4-0000-4000-8000-000000000001",
                callStatus="in-progress",
            )
        else:
            body["uuid"] = self.call_sid
        body.update(self.call_attributes)
        body.update(sampleRate=self.sample_rate, mixType=self.mix_type)
        body.update(self.metadata)
        return json.dumps(body, separators=(",", ":"))

    def start_frames(self) -> list[str | bytes]:
        return [self.metadata_frame()]

    def audio_frames(
        self, pcm: bytes, sample_rate: int, *, other: bytes | None = None, frame_ms: int = FRAME_MS
    ) -> list[bytes]:
        """PCM16 at ``sample_rate`` as L16 frames of ``frame_ms``; for stereo, ``other`` is the
        right channel (silence when None), interleaved with ``pcm`` on the left."""
        left = resample(pcm, sample_rate, self.sample_rate)
        if self.channels == 2:
            right = resample(other, sample_rate, self.sample_rate) if other else b""
            right = (right + bytes(len(left)))[: len(left)]
            mixed = array("h", bytes(2 * len(left)))
            mixed[0::2] = array("h", left)
            mixed[1::2] = array("h", right)
            data = mixed.tobytes()
        else:
            data = left
        step = self.sample_rate * frame_ms // 1000 * 2 * self.channels
        return [data[i : i + step] for i in range(0, len(data), step)]

    @staticmethod
    def dtmf(digit: str, duration_ms: int = 100) -> str:
        """A key press as jambonz forwards FreeSWITCH's event: duration in 8 kHz samples."""
        samples = duration_ms * 8
        return json.dumps({"event": "dtmf", "dtmf": digit, "duration": samples})

    @staticmethod
    def mark(name: str, event: str = "playout") -> str:
        """jambonz's notice that a mark we sent was played out (or cleared)."""
        return json.dumps({"type": "mark", "data": {"name": name, "event": event}})

    def stop_frames(self) -> list[str | bytes]:
        """jambonz flushes with a zero-length binary frame, then closes normally."""
        return [b""] if self.flavor == "jambonz" else []

    # ---- the simulator's client-encoder shape ----------------------------------------------

    @property
    def call_id(self) -> str:
        return self.call_sid

    @property
    def stream_id(self) -> str:
        return self.call_sid

    def upgrade(self, url: str) -> tuple[str, dict[str, str]]:
        """Basic ``wsAuth`` / ``MOD_AUDIO_BASIC_AUTH_*``, or a token in the URL."""
        auth = self.auth
        if auth is None or auth.scheme == "none":
            return url, {}
        if auth.scheme == "basic":
            secrets = auth.secrets
            headers = self.upgrade_headers(
                username=secrets.get("username", ""), password=secrets.get("password", "")
            )
            return url, dict(headers)
        return with_query(url, {"token": auth.secrets.get("token", "")}), {}

    def opening(self) -> list[Frame]:
        return [self.metadata_frame()]

    def audio(self, pcm: bytes, track: str) -> tuple[Frame, int]:
        """One binary frame: ``pcm`` (PCM16 at ``sample_rate``) as L16."""
        return bytes(pcm), len(pcm)

    def skip(self, ms: float) -> None:
        """Fork frames carry no timestamps: a gap is just time without frames."""

    def digit(self, digit: str) -> list[Frame]:
        return [self.dtmf(digit)]

    def closing(self) -> list[Frame]:
        return self.stop_frames()

    def on_server_frame(self, frame: Frame) -> list[Frame]:
        """jambonz's notices: a ``mark`` is played out at once (the simulator plays nothing),
        ``playAudio`` is answered with ``playDone``. FreeSWITCH raises events instead."""
        if self.flavor != "jambonz" or not isinstance(frame, str):
            return []
        try:
            message = json.loads(frame)
        except ValueError:
            return []
        if not isinstance(message, dict):
            return []
        data = message.get("data")
        if message.get("type") == "mark" and isinstance(data, dict):
            return [self.mark(str(data.get("name", "")))]
        if message.get("type") == "playAudio":
            play_id = data.get("id") if isinstance(data, dict) else None
            return [json.dumps({"type": "playDone", "data": {"id": play_id}})]
        return []
