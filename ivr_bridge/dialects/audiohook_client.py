"""Genesys's side of AudioHook, sans-I/O: what the simulator and the tests send to the bridge.

:class:`AudioHookClient` plays the AudioHook client (Genesys Cloud) for one session: it signs
the upgrade headers (X-API-KEY plus an HTTP message signature with the client secret), numbers
every message (``seq``, ``serverseq``, ``position``), encodes audio as PCMU frames (interleaved
for stereo), and reads the bridge's replies, checking their sequence numbers. Like Genesys it
answers the server's requests by itself: ``pause`` -> ``paused``, ``resume`` -> ``resumed``,
``disconnect`` -> ``close``; those answers wait in :meth:`data_to_send`.

:func:`session_plan` turns a whole call (audio, pings, a pause, the close) into a lazy sequence
of steps for an I/O runner: send this frame, wait for that reply, let this much time pass.
With ``probe=True`` the client is Genesys's connection probe (null conversation and participant
ids, open then close, no audio).
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ivr_bridge.audio.codecs import pcm16_to_ulaw, samples_for_ms
from ivr_bridge.dialects.audiohook import (
    NULL_UUID,
    PROTOCOL_VERSION,
    SAMPLE_RATE,
    format_duration_samples,
)
from ivr_bridge.dialects.audiohook_auth import (
    REQUIRED_COMPONENTS,
    decode_client_secret,
    sign_headers,
)

USER_AGENT: Final = "GenesysCloud-AudioHook-Client"
DEFAULT_OFFERS: Final = (("external", "internal"), ("external",), ("internal",))


class AudioHookClientError(ValueError):
    """The server broke the protocol (as the client sees it), or the client was misused."""


@dataclass(frozen=True, slots=True)
class ServerMessage:
    """One text message from the bridge, envelope checked."""

    type: str
    seq: int
    clientseq: int
    parameters: Mapping[str, Any]


@dataclass
class ClientState:
    """What the bridge told this client so far."""

    opened: bool = False
    media: list[dict[str, Any]] = field(default_factory=list)  # the chosen format, or []
    paused_by_server: bool = False
    closed: bool = False
    disconnect_reason: str = ""
    disconnect_info: str = ""
    pongs: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # every entity received
    binary_frames: int = 0
    binary_bytes: int = 0
    received: list[ServerMessage] = field(default_factory=list)


class AudioHookClient:
    """One AudioHook client session (Genesys's side). No I/O: frames in, frames out."""

    def __init__(
        self,
        *,
        api_key: str = "",
        client_secret: str = "",
        organization_id: str | None = None,
        session_id: str | None = None,
        correlation_id: str | None = None,
        conversation_id: str | None = None,
        participant: Mapping[str, str] | None = None,
        offers: Sequence[Sequence[str]] = DEFAULT_OFFERS,
        language: str | None = "en-US",
        custom_config: Mapping[str, Any] | None = None,
        input_variables: Mapping[str, Any] | None = None,
        probe: bool = False,
    ) -> None:
        self.api_key = api_key
        self._key = decode_client_secret(client_secret) if client_secret else None
        self.organization_id = organization_id or str(uuid.uuid4())
        self.session_id = session_id or str(uuid.uuid4())
        self.correlation_id = correlation_id or str(uuid.uuid4())
        self.probe = probe
        self.conversation_id = NULL_UUID if probe else (conversation_id or str(uuid.uuid4()))
        base_participant = {"id": NULL_UUID if probe else str(uuid.uuid4())}
        base_participant |= {"ani": "", "aniName": "", "dnis": ""}
        self.participant = {**base_participant, **(participant or {})}
        if probe:
            self.participant["id"] = NULL_UUID
        self.offers = [list(channels) for channels in offers]
        self.language = language
        self.custom_config = dict(custom_config or {})
        self.input_variables = dict(input_variables) if input_variables is not None else None
        self.state = ClientState()
        self._seq = 0
        self._serverseq = 0
        self._samples = 0  # stream position, per channel
        self._pause_start: int | None = None
        self._outbox: list[str] = []

    # ---- the upgrade -----------------------------------------------------------------------

    def upgrade_headers(
        self,
        *,
        request_target: str,
        authority: str,
        now: float,
        nonce: str | None = None,
        lifetime_s: int = 30,
    ) -> dict[str, str]:
        """Headers for the websocket upgrade, signed when a client secret is set.

        ``request_target`` is path plus query, ``authority`` the Host, as the bridge sees them.
        """
        headers = {
            "audiohook-organization-id": self.organization_id,
            "audiohook-correlation-id": self.correlation_id,
            "audiohook-session-id": self.session_id,
            "x-api-key": self.api_key,
            "user-agent": USER_AGENT,
        }
        if self._key is None:
            return headers
        values = {"@request-target": request_target, "@authority": authority.lower(), **headers}
        created = int(now)
        headers |= sign_headers(
            key=self._key,
            key_id=self.api_key,
            components=[(name, values[name]) for name in REQUIRED_COMPONENTS],
            nonce=nonce or secrets.token_urlsafe(24),
            created=created,
            expires=created + lifetime_s,
        )
        return headers

    # ---- messages ----------------------------------------------------------------------------

    @property
    def position_samples(self) -> int:
        return self._samples

    @property
    def paused(self) -> bool:
        return self._pause_start is not None

    def _message(self, kind: str, parameters: Mapping[str, Any]) -> str:
        self._seq += 1
        return json.dumps(
            {
                "version": PROTOCOL_VERSION,
                "id": self.session_id,
                "type": kind,
                "seq": self._seq,
                "serverseq": self._serverseq,
                "position": format_duration_samples(self._samples),
                "parameters": dict(parameters),
            },
            separators=(",", ":"),
        )

    def open(self) -> str:
        params: dict[str, Any] = {
            "organizationId": self.organization_id,
            "conversationId": self.conversation_id,
            "participant": dict(self.participant),
            "media": [
                {"type": "audio", "format": "PCMU", "channels": channels, "rate": SAMPLE_RATE}
                for channels in self.offers
            ],
        }
        if self.language:
            params["language"] = self.language
        if self.custom_config:
            params["customConfig"] = self.custom_config
        if self.input_variables is not None:
            params["inputVariables"] = self.input_variables
        return self._message("open", params)

    def ping(self, rtt_ms: int | None = None) -> str:
        params = {} if rtt_ms is None else {"rtt": format_duration_samples(rtt_ms * 8)}
        return self._message("ping", params)

    def update(self, language: str) -> str:
        return self._message("update", {"language": language})

    def pause(self) -> str:
        """The client pauses (hold, secure pause): no audio until :meth:`resume`."""
        if self._pause_start is None:
            self._pause_start = self._samples
        return self._message("paused", {})

    def resume(self) -> str:
        """End the pause; reports the audio withheld since it began."""
        start = self._samples if self._pause_start is None else self._pause_start
        self._pause_start = None
        return self._message(
            "resumed",
            {
                "start": format_duration_samples(start),
                "discarded": format_duration_samples(self._samples - start),
            },
        )

    def skip(self, ms: float) -> None:
        """Let ``ms`` of stream time pass without sending audio (while paused, or a drop)."""
        self._samples += samples_for_ms(ms, SAMPLE_RATE)

    def discard(self, ms: float) -> str:
        """Drop ``ms`` of audio (e.g. a backlog) and say so."""
        start = self._samples
        self.skip(ms)
        return self._message(
            "discarded",
            {
                "start": format_duration_samples(start),
                "discarded": format_duration_samples(self._samples - start),
            },
        )

    def error(self, code: int, message: str, retry_after_ms: int | None = None) -> str:
        params: dict[str, Any] = {"code": code, "message": message}
        if retry_after_ms is not None:
            params["retryAfter"] = format_duration_samples(retry_after_ms * 8)
        return self._message("error", params)

    def dtmf(self, digit: str) -> str:
        """Audio Connector's keypad digit."""
        return self._message("dtmf", {"digit": digit})

    def close(self, reason: str = "end") -> str:
        return self._message("close", {"reason": reason})

    # ---- audio ---------------------------------------------------------------------------

    @property
    def channels(self) -> list[str]:
        """The channels the bridge chose, in wire order ([] before ``opened`` or for none)."""
        return list(self.state.media[0]["channels"]) if self.state.media else []

    def audio(self, external: bytes, internal: bytes | None = None) -> bytes | None:
        """One binary frame from PCM16 8 kHz per channel (equal lengths), None while paused.

        Time passes either way, as on a real call: a paused client withholds audio, it does
        not stop the clock.
        """
        channels = self.channels
        if not channels:
            raise AudioHookClientError("no media negotiated")
        # A missing agent side is silence (mu-law of zeros), not a copy of the caller.
        per_channel = {"external": external, "internal": internal or bytes(len(external))}
        encoded = [pcm16_to_ulaw(per_channel[name]) for name in channels]
        if len({len(e) for e in encoded}) != 1:
            raise AudioHookClientError("channels must carry the same number of samples")
        self._samples += len(encoded[0])
        if self._pause_start is not None:
            return None
        if len(encoded) == 1:
            return encoded[0]
        out = bytearray(len(encoded[0]) * 2)
        out[0::2] = encoded[0]
        out[1::2] = encoded[1]
        return bytes(out)

    # ---- the bridge's replies ---------------------------------------------------------------

    def receive(self, text: str) -> ServerMessage:
        """Check one text message from the bridge and act on it (queueing any answer)."""
        try:
            raw = json.loads(text)
        except ValueError:
            raise AudioHookClientError("server message is not JSON") from None
        if not isinstance(raw, dict) or raw.get("version") != PROTOCOL_VERSION:
            raise AudioHookClientError("server message has no version 2 envelope")
        kind, seq, clientseq = raw.get("type"), raw.get("seq"), raw.get("clientseq")
        params = raw.get("parameters")
        if not isinstance(kind, str) or not isinstance(params, dict):
            raise AudioHookClientError("server message lacks type or parameters")
        if not isinstance(seq, int) or seq != self._serverseq + 1:
            raise AudioHookClientError("server seq is not one more than the last")
        if not isinstance(clientseq, int) or not 0 <= clientseq <= self._seq:
            raise AudioHookClientError("server clientseq is ahead of what we sent")
        if raw.get("id") != self.session_id:
            raise AudioHookClientError("server message for another session")
        self._serverseq = seq
        message = ServerMessage(kind, seq, clientseq, params)
        self.state.received.append(message)
        self._act(message)
        return message

    def _act(self, message: ServerMessage) -> None:
        params = message.parameters
        if message.type == "opened":
            media = params.get("media")
            if not isinstance(media, list) or len(media) > 1:
                raise AudioHookClientError("opened must choose at most one media format")
            if media and media[0].get("channels") not in self.offers:
                raise AudioHookClientError("opened chose a format that was not offered")
            self.state.opened = True
            self.state.media = media
        elif message.type == "pong":
            self.state.pongs += 1
        elif message.type == "closed":
            self.state.closed = True
        elif message.type == "disconnect":
            self.state.disconnect_reason = str(params.get("reason", ""))
            self.state.disconnect_info = str(params.get("info", ""))
            if not self.state.closed:
                self._outbox.append(self.close("disconnect"))
        elif message.type == "event":
            entities = params.get("entities")
            if not isinstance(entities, list):
                raise AudioHookClientError("event without entities")
            self.state.events.extend(entities)
        elif message.type == "pause":
            self.state.paused_by_server = True
            self._outbox.append(self.pause())
        elif message.type == "resume":
            self.state.paused_by_server = False
            self._outbox.append(self.resume())

    def receive_bytes(self, data: bytes) -> None:
        """Audio Connector playback from the bridge (counted)."""
        self.state.binary_frames += 1
        self.state.binary_bytes += len(data)

    def data_to_send(self) -> list[str]:
        """Answers the client owes the bridge (``paused``, ``resumed``, ``close``)."""
        out, self._outbox = self._outbox, []
        return out


# ---- a whole session as steps for an I/O runner ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send this frame (text or binary)."""

    frame: str | bytes


@dataclass(frozen=True, slots=True)
class Expect:
    """Read replies (feeding each to ``client.receive``) until one of this type arrives."""

    type: str


@dataclass(frozen=True, slots=True)
class Advance:
    """Stream time passes: a paced runner waits ``ms``; a fast one need not."""

    ms: int


Step = Send | Expect | Advance


def session_plan(
    client: AudioHookClient,
    external: bytes,
    internal: bytes | None = None,
    *,
    frame_ms: int = 200,
    ping_every_ms: int = 5000,
    pause_at_ms: int | None = None,
    pause_ms: int = 0,
    digits: str = "",
    close_reason: str = "end",
) -> Iterator[Step]:
    """The steps of one call: open, audio in ``frame_ms`` frames, pings, an optional client
    pause of ``pause_ms`` at ``pause_at_ms``, DTMF ``digits`` (Audio Connector) half-way, and
    the close transaction. For a probe client: open and close only.

    Lazy: audio frames are encoded once ``opened`` has been fed to ``client.receive``. The
    runner should also send ``client.data_to_send()`` after each reply it feeds in.
    """
    yield Send(client.open())
    yield Expect("opened")
    if not client.probe and client.channels:
        frame_samples = samples_for_ms(frame_ms, SAMPLE_RATE)
        total = len(external) // 2
        next_ping = ping_every_ms
        paused_done = pause_at_ms is None
        dtmf_at = total // 2 if digits else None
        for start in range(0, total, frame_samples):
            now_ms = start * 1000 // SAMPLE_RATE
            if not paused_done and pause_at_ms is not None and now_ms >= pause_at_ms:
                paused_done = True
                yield Send(client.pause())
                client.skip(pause_ms)
                yield Advance(pause_ms)
                yield Send(client.resume())
            if now_ms >= next_ping:
                next_ping += ping_every_ms
                yield Send(client.ping())
                yield Expect("pong")
            if dtmf_at is not None and start >= dtmf_at:
                dtmf_at = None
                for digit in digits:
                    yield Send(client.dtmf(digit))
            chunk_ext = _pad(external[start * 2 : (start + frame_samples) * 2], frame_samples)
            chunk_int = (
                None
                if internal is None
                else _pad(internal[start * 2 : (start + frame_samples) * 2], frame_samples)
            )
            frame = client.audio(chunk_ext, chunk_int)
            if frame is not None:
                yield Send(frame)
            yield Advance(frame_ms)
    yield Send(client.close(close_reason))
    yield Expect("closed")


def _pad(pcm: bytes, samples: int) -> bytes:
    return pcm + bytes(samples * 2 - len(pcm))
