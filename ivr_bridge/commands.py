"""Commands from out-of-process dialog logic (GET /events, NATS) as outbound requests.

One JSON shape for both transports, checked strictly so a bad command is a clear error and
never reaches the dialect::

    {"type": "play", "pcm16_b64": "...", "sample_rate": 8000}   raw PCM16 mono, little-endian
    {"type": "play", "wav_b64": "..."}                          a whole WAV file
    {"type": "mark", "name": "menu-done"}
    {"type": "clear"}
    {"type": "hangup", "reason": "completed"}

Audio travels inside the message (base64), never as a path: a remote client must not make the
bridge read its files.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from ivr_bridge.audio.wav import load_wav
from ivr_bridge.dialects.base import ClearAudio, Disconnect, OutboundRequest, PlayAudio, SendMark
from ivr_bridge.errors import BridgeError

COMMAND_TYPES = ("play", "mark", "clear", "hangup")
_RATES = frozenset({8000, 16000, 24000, 32000, 44100, 48000})
_MAX_NAME = 256
_FIELDS: Mapping[str, frozenset[str]] = {
    "play": frozenset({"type", "pcm16_b64", "wav_b64", "sample_rate"}),
    "mark": frozenset({"type", "name"}),
    "clear": frozenset({"type"}),
    "hangup": frozenset({"type", "reason"}),
}


class CommandError(BridgeError):
    """A command that cannot be carried out; the message says why, without its content."""


def _text(command: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = command.get(key, default)
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
        raise CommandError(f"{key} must be a non-empty string of at most {_MAX_NAME} characters")
    return value


def _b64(command: Mapping[str, Any], key: str) -> bytes:
    value = command[key]
    if not isinstance(value, str):
        raise CommandError(f"{key} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CommandError(f"{key} is not valid base64") from None


def _play(command: Mapping[str, Any]) -> PlayAudio:
    has_pcm, has_wav = "pcm16_b64" in command, "wav_b64" in command
    if has_pcm == has_wav:
        raise CommandError("play needs exactly one of pcm16_b64 or wav_b64")
    if has_wav:
        try:
            wav = load_wav(_b64(command, "wav_b64"))
        except ValueError as exc:  # WavError and any other decoding complaint
            raise CommandError(f"wav_b64 is not a usable WAV file: {exc}") from None
        pcm, rate = wav.pcm, wav.sample_rate
    else:
        pcm = _b64(command, "pcm16_b64")
        rate = command.get("sample_rate", 8000)
        if isinstance(rate, bool) or rate not in _RATES:
            raise CommandError(f"sample_rate must be one of {sorted(_RATES)}")
        if len(pcm) % 2:
            raise CommandError("pcm16_b64 must hold whole 16-bit samples")
    if not pcm:
        raise CommandError("play needs some audio")
    return PlayAudio(pcm, int(rate))


def parse_command(command: object) -> OutboundRequest:
    """The outbound request a command asks for; CommandError when it is malformed."""
    if not isinstance(command, Mapping):
        raise CommandError("a command is a JSON object")
    kind = command.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise CommandError(f"type must be one of {', '.join(COMMAND_TYPES)}")
    unknown = sorted(set(command) - _FIELDS[kind])
    if unknown:
        raise CommandError(f"unknown field(s) for {kind}: {', '.join(map(str, unknown))}")
    if kind == "play":
        return _play(command)
    if kind == "mark":
        return SendMark(_text(command, "name"))
    if kind == "clear":
        return ClearAudio()
    return Disconnect(_text(command, "reason", "completed"))
