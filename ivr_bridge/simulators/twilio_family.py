"""The other Twilio-family platforms' side: SignalWire, Telnyx, Plivo and Exotel encoders.

Each overrides the message builders of :class:`~.twilio.TwilioStreamEncoder` with its own
field names and numbering, and picks its codec and authentication the way that platform does
(see each dialect's module for the wire tables these follow).
"""

from __future__ import annotations

from typing import Any

from ivr_bridge.simulators.base import Frame
from ivr_bridge.simulators.twilio import TwilioStreamEncoder


class SignalWireStreamEncoder(TwilioStreamEncoder):
    """SignalWire: Twilio's frames, version 0.2.0, L16 at 16 kHz, DTMF with a duration."""

    dialect = "signalwire"
    codec = "l16"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("sample_rate", 16000)
        super().__init__(**kwargs)

    def connected(self) -> str:
        return self._dump({"event": "connected", "protocol": "Call", "version": "0.2.0"})

    def _start_message(self, seq: str) -> dict[str, Any]:
        message = super()._start_message(seq)
        message["start"]["mediaFormat"] = {
            "encoding": "audio/x-L16",
            "sampleRate": self.sample_rate,
            "channels": 1,
        }
        return message

    def _dtmf_message(self, seq: str, digit: str, track: str) -> dict[str, Any]:
        message = super()._dtmf_message(seq, digit, track)
        message["dtmf"]["duration"] = 100
        return message


class TelnyxStreamEncoder(TwilioStreamEncoder):
    """Telnyx: snake_case, ``stream_id`` at the top level, PCMU 8 kHz, token header."""

    dialect = "telnyx"
    token_header = "x-telnyx-streaming-auth-token"  # noqa: S105 (a header name)

    def connected(self) -> str:
        return self._dump({"event": "connected", "version": "1.0.0"})

    def _start_message(self, seq: str) -> dict[str, Any]:
        return {
            "event": "start",
            "sequence_number": seq,
            "start": {
                "user_id": self.account_sid,
                "call_control_id": self.call_sid,
                "call_session_id": "session-" + self.call_sid,
                "from": "+15550100",
                "to": "+15550199",
                "tags": ["simulated"],
                "client_state": "",
                "custom_parameters": self.custom_parameters,
                "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
            },
            "stream_id": self.stream_sid,
        }

    def _media_message(
        self, seq: str, track: str, chunk: str, timestamp: str, payload: str
    ) -> dict[str, Any]:
        return {
            "event": "media",
            "sequence_number": seq,
            "media": {"track": track, "chunk": chunk, "timestamp": timestamp, "payload": payload},
            "stream_id": self.stream_sid,
        }

    def _dtmf_message(self, seq: str, digit: str, track: str) -> dict[str, Any]:
        return {
            "event": "dtmf",
            "sequence_number": seq,
            "dtmf": {"digit": digit},
            "stream_id": self.stream_sid,
        }

    def _mark_message(self, seq: str, name: str) -> dict[str, Any]:
        return {
            "event": "mark",
            "sequence_number": seq,
            "mark": {"name": name},
            "stream_id": self.stream_sid,
        }

    def _stop_message(self, seq: str) -> dict[str, Any]:
        return {
            "event": "stop",
            "sequence_number": seq,
            "stop": {"call_control_id": self.call_sid, "user_id": self.account_sid},
            "stream_id": self.stream_sid,
        }


class PlivoStreamEncoder(TwilioStreamEncoder):
    """Plivo: camelCase with real numbers, L16 8 kHz, no connected/stop, ``?token=`` auth."""

    dialect = "plivo"
    codec = "l16"
    token_in_query = True

    def opening(self) -> list[Frame]:
        return [self.start()]

    def closing(self) -> list[Frame]:
        return []  # Plivo just closes the socket

    def _start_message(self, seq: str) -> dict[str, Any]:
        return {
            "event": "start",
            "sequenceNumber": int(seq),
            "start": {
                "callId": self.call_sid,
                "streamId": self.stream_sid,
                "accountId": self.account_sid,
                "tracks": list(self.tracks),
                "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": self.sample_rate},
            },
            "extra_headers": ",".join(f"{k}={v}" for k, v in self.custom_parameters.items()),
        }

    def _media_message(
        self, seq: str, track: str, chunk: str, timestamp: str, payload: str
    ) -> dict[str, Any]:
        epoch_ms = 1_760_000_000_000 + int(timestamp)  # Plivo stamps media with Unix ms
        return {
            "event": "media",
            "sequenceNumber": int(seq),
            "streamId": self.stream_sid,
            "media": {
                "track": track,
                "timestamp": str(epoch_ms),
                "chunk": int(chunk),
                "payload": payload,
            },
        }

    def _dtmf_message(self, seq: str, digit: str, track: str) -> dict[str, Any]:
        return {
            "event": "dtmf",
            "sequenceNumber": int(seq),
            "streamId": self.stream_sid,
            "dtmf": {"digit": digit},
        }

    def _mark_message(self, seq: str, name: str) -> dict[str, Any]:
        return {"event": "playedStream", "sequenceNumber": int(seq), "streamId": self.stream_sid,
                "name": name}  # fmt: skip

    def _stop_message(self, seq: str) -> dict[str, Any]:
        return {"event": "stop", "sequenceNumber": int(seq), "streamId": self.stream_sid}


class ExotelStreamEncoder(TwilioStreamEncoder):
    """Exotel: snake_case, quoted numbers, slin 8 kHz in 100 ms frames, basic auth."""

    dialect = "exotel"
    codec = "l16"
    frame_ms = 100
    token_in_query = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.tracks != ("inbound",):
            raise ValueError("Exotel streams carry the caller only")

    def connected(self) -> str:
        return self._dump({"event": "connected"})

    def _start_message(self, seq: str) -> dict[str, Any]:
        return {
            "event": "start",
            "sequence_number": seq,
            "stream_sid": self.stream_sid,
            "start": {
                "stream_sid": self.stream_sid,
                "call_sid": self.call_sid,
                "account_sid": self.account_sid,
                "from": "+15550100",
                "to": "+15550199",
                "custom_parameters": self.custom_parameters,
                "media_format": {
                    "encoding": "audio/x-raw",
                    "sample_rate": str(self.sample_rate),
                    "bit_rate": "16",
                },
            },
        }

    def _media_message(
        self, seq: str, track: str, chunk: str, timestamp: str, payload: str
    ) -> dict[str, Any]:
        return {
            "event": "media",
            "sequence_number": seq,
            "stream_sid": self.stream_sid,
            "media": {"chunk": chunk, "timestamp": timestamp, "payload": payload},
        }

    def _dtmf_message(self, seq: str, digit: str, track: str) -> dict[str, Any]:
        return {
            "event": "dtmf",
            "sequence_number": seq,
            "stream_sid": self.stream_sid,
            "dtmf": {"digit": digit, "duration": "120"},
        }

    def _mark_message(self, seq: str, name: str) -> dict[str, Any]:
        return {"event": "mark", "sequence_number": seq, "stream_sid": self.stream_sid,
                "mark": {"name": name}}  # fmt: skip

    def _stop_message(self, seq: str) -> dict[str, Any]:
        return {
            "event": "stop",
            "sequence_number": seq,
            "stream_sid": self.stream_sid,
            "stop": {"call_sid": self.call_sid, "account_sid": self.account_sid,
                     "reason": "callended"},
        }  # fmt: skip
