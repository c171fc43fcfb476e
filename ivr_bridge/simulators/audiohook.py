"""Genesys's side of AudioHook as a simulator client encoder.

:class:`AudioHookEncoder` wraps :class:`~ivr_bridge.dialects.audiohook_client.AudioHookClient`
(which numbers, encodes and checks every message) in the simulator's encoder shape, and adds
what a paced runner needs from a session that answers back:

* the upgrade is signed with the integration's API key and client secret (``auth`` scheme
  "audiohook", secrets ``{api_key: base64 client secret}``, the bridge's own layout);
* after ``open`` the runner waits until :meth:`ready` (``opened`` arrived) before audio;
* a ``ping`` goes out every ``ping_every_ms`` of audio (:meth:`pending` hands it over);
* a gap is a hold: :meth:`hold` sends ``paused`` before it, :meth:`skip` queues ``resumed``
  with the audio withheld, so the bridge puts the hold on its timeline;
* the goodbye is the close transaction (``close``, the bridge's ``closed``), and a
  ``disconnect`` from the bridge is answered with ``close`` as Genesys does;
* ``probe=True`` is Genesys's connection probe: open and close with null ids, no audio.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ivr_bridge.dialects.audiohook import SAMPLE_RATE
from ivr_bridge.dialects.audiohook_client import AudioHookClient
from ivr_bridge.simulators.base import ClientAuth, Frame

PING_EVERY_MS = 5000


class AudioHookEncoder:
    """One simulated Genesys AudioHook session (the caller's side, mono ``external``)."""

    dialect = "audiohook"
    sample_rate = SAMPLE_RATE
    frame_ms = 200  # Genesys streams audio in 200 ms frames
    closes_socket = False

    def __init__(
        self,
        *,
        tracks: Sequence[str] = ("inbound",),
        custom_parameters: Mapping[str, str] | None = None,
        auth: ClientAuth | None = None,
        probe: bool = False,
        ping_every_ms: int = PING_EVERY_MS,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if tuple(tracks) != ("inbound",):
            raise ValueError("the AudioHook simulator streams the caller only: tracks='inbound'")
        self.tracks: tuple[str, ...] = ("inbound",)
        self.auth = auth or ClientAuth()
        api_key, secret = "", ""
        if self.auth.scheme == "audiohook":
            if not self.auth.secrets:
                raise ValueError("auth 'audiohook' needs secrets {api_key: client secret}")
            api_key, secret = next(iter(self.auth.secrets.items()))
        elif self.auth.scheme != "none":
            raise ValueError("AudioHook authenticates with auth 'audiohook' or 'none'")
        self.client = AudioHookClient(
            api_key=api_key,
            client_secret=secret,
            offers=[["external"]],
            custom_config=dict(custom_parameters or {}),
            probe=probe,
        )
        self.probe = probe
        self.sends_audio = not probe
        self._wall = wall
        self._ping_every = ping_every_ms
        self._audio_ms = 0
        self._next_ping = ping_every_ms
        self._pending: list[Frame] = []

    # ---- ClientEncoder ---------------------------------------------------------------------

    @property
    def call_id(self) -> str:
        return self.client.conversation_id

    @property
    def stream_id(self) -> str:
        return self.client.session_id

    def upgrade(self, url: str) -> tuple[str, dict[str, str]]:
        """The session headers, signed over the request target and authority we dial."""
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = self.client.upgrade_headers(
            request_target=target, authority=parts.netloc, now=self._wall()
        )
        return url, headers

    def opening(self) -> list[Frame]:
        return [self.client.open()]

    def ready(self) -> bool:
        """Audio may flow once the bridge answered ``open`` (or the session is over)."""
        state = self.client.state
        return state.opened or state.closed or bool(state.disconnect_reason)

    def audio(self, pcm: bytes, track: str) -> tuple[Frame, int]:
        frame = self.client.audio(pcm)
        if frame is None:
            raise ValueError("audio while the client is paused")
        self._audio_ms += len(pcm) * 1000 // (2 * SAMPLE_RATE)
        if self._audio_ms >= self._next_ping:
            self._next_ping += self._ping_every
            self._pending.append(self.client.ping())
        return frame, len(frame)

    def hold(self) -> list[Frame]:
        """A gap begins: Genesys pauses the stream (``paused``)."""
        return [self.client.pause()]

    def skip(self, ms: float) -> None:
        """The gap passed: its audio was withheld; ``resumed`` reports it (see :meth:`pending`)."""
        self.client.skip(ms)
        if self.client.paused:
            self._pending.append(self.client.resume())

    def pending(self) -> list[Frame]:
        """Frames due now besides the step's own (pings, ``resumed``), in order."""
        out, self._pending = self._pending, []
        return out

    def digit(self, digit: str) -> list[Frame]:
        return [self.client.dtmf(digit)]

    def closing(self) -> list[Frame]:
        state = self.client.state
        if state.closed or state.disconnect_reason:
            return []  # the session is already closing (we answered the bridge's disconnect)
        return [self.client.close("end")]

    def on_server_frame(self, frame: Frame) -> list[Frame]:
        """Check the bridge's message and answer as Genesys (``disconnect`` -> ``close``)."""
        if isinstance(frame, bytes):
            self.client.receive_bytes(frame)
            return []
        self.client.receive(frame)
        return list(self.client.data_to_send())

    def summary(self) -> dict[str, Any]:
        """What the session negotiated and heard, for the simulation report."""
        state = self.client.state
        return {
            "opened": state.opened,
            "closed": state.closed,
            "pongs": state.pongs,
            "disconnect_reason": state.disconnect_reason,
        }
