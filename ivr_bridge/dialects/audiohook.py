"""Genesys Cloud AudioHook (protocol v2), sans-I/O: the bridge is the AudioHook server.

Genesys (the client) opens the websocket, sends ``open``; we answer ``opened`` with the one media
format we chose (PCMU 8 kHz; stereo ``external``/``internal`` becomes two channels, "caller" and
"agent", each with its own recognition session). Audio then arrives as binary frames
(sample-interleaved for stereo) and control as JSON text frames, every one numbered (``seq``),
acknowledging ours (``serverseq``) and stamped with the stream ``position``. The client always
ends the session: ``close`` -> our ``closed``. To end early we send ``disconnect`` and wait for
the client's ``close``.

What the dialect does with each client message is in docs/dialects/audiohook.md. The rules that
shape the code:

* Envelope and sequence rules are checked as Genesys's reference server checks them (``seq``
  exactly one more than the last, ``serverseq`` never ahead of what we sent, the session ``id``
  unchanged, a known message type with valid parameters). A breach is answered the AudioHook
  way, ``disconnect`` with reason ``error``, and then DialectError, so call.py flushes that
  goodbye and closes the socket with the code. Binary audio before ``opened``, while paused or
  after ``close`` is such a breach too, as is a frame that is not whole samples.
* ``position`` is the protocol's sample clock and includes audio the client withheld (paused)
  or dropped (``discarded``). When it runs ahead of the audio we received, the difference goes
  on the timeline as a MediaGap, so call times and the ledger stay true; a position that goes
  backwards is a breach, one that lags the audio received is counted and tolerated.
* The connection probe (null conversation id) gets ``opened`` with no media and ``closed``,
  and produces no CallStarted, so no recognition opens and nothing is stored.
* Close reasons and ``info`` texts are fixed phrases: payloads may carry personal data.

:class:`AudioHookFactory` authenticates the upgrade (see audiohook_auth) and builds one
:class:`AudioHookDialect` per connection; ``SPEC`` registers both at ``/audiohook``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from ivr_bridge.audio.codecs import pcm16_to_ulaw, resample, ulaw_to_pcm16
from ivr_bridge.dialects import strictjson as sj
from ivr_bridge.dialects.audiohook_auth import AudioHookVerifier
from ivr_bridge.dialects.base import (
    ClearAudio,
    Dialect,
    DialectSettings,
    DialectSpec,
    Disconnect,
    OutboundRequest,
    PlayAudio,
    QueuedOutput,
    SendEvent,
    SendMark,
    UnsupportedRequest,
    UpgradeRefused,
    UpgradeRequest,
)
from ivr_bridge.dialects.strictjson import invalid as _invalid
from ivr_bridge.dialects.strictjson import loads as _loads
from ivr_bridge.dialects.strictjson import obj as _object
from ivr_bridge.dialects.strictjson import protocol as _protocol
from ivr_bridge.dialects.strictjson import required as _required
from ivr_bridge.dialects.strictjson import unsupported as _unsupported
from ivr_bridge.dialects.strictjson import utf8 as _utf8
from ivr_bridge.errors import ConfigError, DialectError
from ivr_bridge.model import (
    Audio,
    CallEnded,
    CallStarted,
    ChannelInfo,
    DialectEvent,
    Dtmf,
    MediaFormat,
    MediaGap,
    Paused,
    Resumed,
)

SAMPLE_RATE: Final = 8000
PROTOCOL_VERSION: Final = "2"
NULL_UUID: Final = "00000000-0000-0000-0000-000000000000"
MAX_TEXT_CHARS: Final = 65535  # the reference server refuses longer text messages
CHANNEL_NAMES: Final = {"external": "caller", "internal": "agent"}
CLOSE_REASONS: Final = frozenset({"end", "error", "disconnect", "reconnect"})
DISCONNECT_REASONS: Final = frozenset({"completed", "unauthorized", "error"})
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
PLAYBACK_FRAME_BYTES: Final = 1600  # 200 ms of PCMU: what Audio Connector peers send back
_POSITION_TOLERANCE: Final = 8  # samples (1 ms): rounding in the client's decimal seconds
# No conversation streams for two days; a position beyond is hostile, and would turn into a
# gap the timeline could not hold.
MAX_POSITION_SAMPLES: Final = 48 * 3600 * SAMPLE_RATE
_UUID_RE: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_DURATION_RE: Final = re.compile(r"PT(?:([0-9]{1,12})|([0-9]{0,12})\.([0-9]{1,12}))S")
_LANGUAGE_RE: Final = re.compile(r"[a-z]{2,3}-[A-Za-z]{2,3}")

# States of one session.
AWAIT_OPEN: Final = "await_open"
ACTIVE: Final = "active"
PAUSED: Final = "paused"
CLOSED: Final = "closed"  # we answered the client's close
ENDED: Final = "ended"  # socket dropped or protocol breach: nothing more is accepted
_LIVE: Final = frozenset({AWAIT_OPEN, ACTIVE, PAUSED})


class _Unauthorized(DialectError):
    """A breach that AudioHook answers with ``disconnect`` reason ``unauthorized``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, DialectError.POLICY_VIOLATION)


# ---- typed fields (parsing is ivr_bridge.dialects.strictjson) -------------------------------


def _string(value: Any, what: str) -> str:
    """A string (possibly empty) that can be re-encoded: no lone surrogates reach sinks."""
    if not isinstance(value, str):
        raise _invalid(f"{what} must be a string")
    _utf8(value, what)
    return value


def _optional_string(obj: Mapping[str, Any], key: str, what: str) -> str:
    return _string(obj[key], what) if obj.get(key) is not None else ""


def _counter(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _invalid(f"{what} must be a non-negative integer")


def _uuid(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _UUID_RE.fullmatch(value):
        raise _invalid(f"{what} must be a UUID")
    return value  # kept as spelled: replies echo the client's own id; compare lower-cased


def _boolean(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise _invalid(f"{what} must be a boolean")
    return value


# ---- durations ---------------------------------------------------------------------------


def parse_duration_ns(value: Any, what: str) -> int:
    """An AudioHook duration ("PT12.34S") in nanoseconds. Raises DialectError."""
    if not isinstance(value, str):
        raise _invalid(f"{what} must be a duration")
    found = _DURATION_RE.fullmatch(value)
    if found is None:
        raise _invalid(f"{what} must be a duration")
    whole = found.group(1) if found.group(1) is not None else (found.group(2) or "0")
    fraction = (found.group(3) or "")[:9].ljust(9, "0")
    return int(whole) * 1_000_000_000 + int(fraction)


def ns_to_samples(ns: int, rate: int = SAMPLE_RATE) -> int:
    return (ns * rate + 500_000_000) // 1_000_000_000


def format_duration_ms(ms: int) -> str:
    """Milliseconds as an AudioHook duration: 1234 -> "PT1.234S", 2000 -> "PT2S"."""
    seconds, rest = divmod(max(0, int(ms)), 1000)
    if not rest:
        return f"PT{seconds}S"
    return f"PT{seconds}.{rest:03d}".rstrip("0") + "S"


def format_duration_samples(samples: int, rate: int = SAMPLE_RATE) -> str:
    """Samples as an AudioHook duration, exact to the nanosecond (8 kHz: 125 us steps)."""
    ns = samples * 1_000_000_000 // rate
    seconds, rest = divmod(ns, 1_000_000_000)
    if not rest:
        return f"PT{seconds}S"
    return f"PT{seconds}.{rest:09d}".rstrip("0") + "S"


# ---- options -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioHookOptions:
    """``[dialects.audiohook.options]``; see docs/dialects/audiohook.md."""

    channels: str = "both"  # "both" (stereo when offered), "external" or "internal"
    send_events: bool = False  # transcripts back to Genesys as ``event`` messages
    send_partials: bool = False  # partial transcripts too (send_events must be on)
    audio_connector: bool = False  # Audio Connector: playback and barge-in allowed
    allow_unsigned: bool = False  # API keys with an empty secret may connect unsigned
    supported_languages: tuple[str, ...] = ()  # answered when ``open`` asks for them
    refusal_delay_ms: int = 500  # a refused upgrade is answered this late (slows guessing)

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> AudioHookOptions:
        """Validate the TOML options; raises ConfigError naming the offending key."""
        known = {"channels", "send_events", "send_partials", "audio_connector"}
        known |= {"allow_unsigned", "supported_languages", "refusal_delay_ms"}
        for key in options:
            if key not in known:
                raise ConfigError(f"options.{key}", "unknown audiohook option")
        channels = options.get("channels", "both")
        if channels not in ("both", "external", "internal"):
            raise ConfigError("options.channels", "must be 'both', 'external' or 'internal'")
        flags: dict[str, bool] = {}
        for key in ("send_events", "send_partials", "audio_connector", "allow_unsigned"):
            value = options.get(key, False)
            if not isinstance(value, bool):
                raise ConfigError(f"options.{key}", "must be true or false")
            flags[key] = value
        languages = options.get("supported_languages", ())
        if not isinstance(languages, list | tuple) or not all(
            isinstance(x, str) and _LANGUAGE_RE.fullmatch(x) for x in languages
        ):
            raise ConfigError("options.supported_languages", "must be a list like ['en-US']")
        delay = options.get("refusal_delay_ms", 500)
        if not isinstance(delay, int) or isinstance(delay, bool) or not 0 <= delay <= 10_000:
            raise ConfigError("options.refusal_delay_ms", "must be 0..10000 milliseconds")
        return cls(
            channels=channels,
            supported_languages=tuple(languages),
            refusal_delay_ms=delay,
            **flags,
        )


# ---- the bridge's side ---------------------------------------------------------------------


@dataclass
class AudioHookCounters:
    """What one session looked like on the wire; anomalies here are tolerated, not fatal."""

    messages: int = 0  # every frame fed in, text or binary, valid or not
    audio_frames: int = 0
    audio_samples: int = 0  # per channel
    pings: int = 0
    last_rtt_ms: int = -1  # the client's measured round trip, from ``ping.rtt``
    updates: int = 0
    pauses: int = 0
    discarded_reports: int = 0
    discarded_reported_ms: int = 0  # what ``discarded`` / ``resumed`` said was skipped
    gap_ms: int = 0  # what we put on the timeline as MediaGap
    position_behind: int = 0  # position lagged the audio received (tolerated)
    client_errors: int = 0
    last_client_error: int = 0
    ignored_messages: int = 0  # valid messages that mean nothing in the current state
    dtmf: int = 0
    playback_notices: int = 0
    events_sent: int = 0
    events_skipped: int = 0  # bridge events with no AudioHook form (or partials, when off)
    events_dropped: int = 0  # no live session, or the client asked us to back off (429)
    audio_frames_sent: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SessionIdentity:
    """What the upgrade told us (headers); checked against the ``open`` message."""

    session_id: str | None = None
    organization_id: str | None = None
    correlation_id: str | None = None


class AudioHookDialect(QueuedOutput):
    """One AudioHook session. See the module docstring; build it with AudioHookFactory."""

    name = "audiohook"

    def __init__(
        self,
        options: AudioHookOptions | None = None,
        identity: SessionIdentity | None = None,
    ) -> None:
        self.options = options or AudioHookOptions()
        self.identity = identity or SessionIdentity()
        self.counters = AudioHookCounters()
        self._outbox: list[str | bytes] = []
        self._close: tuple[int, str] | None = None
        self._state = AWAIT_OPEN
        self._id: str | None = self.identity.session_id
        self._seq = 0  # our last seq
        self._clientseq = 0  # the client's last seq
        self._position = 0  # the client's last position, samples
        self._timeline = 0  # where our timeline stands, samples per channel
        self._gap_samples = 0  # all gaps so far, samples
        self._channels: tuple[str, ...] = ()  # AudioHook names, wire order
        self._probe = False
        self._disconnect_sent = ""
        self._language = ""
        self._hold_events_until = -1  # position (samples) before which events are held (429)
        self._handlers: dict[str, Callable[[dict[str, Any]], list[DialectEvent]]] = {
            "open": self._on_open,
            "ping": self._on_ping,
            "update": self._on_update,
            "paused": self._on_paused,
            "resumed": self._on_resumed,
            "discarded": self._on_discarded,
            "error": self._on_error,
            "close": self._on_close,
            "dtmf": self._on_dtmf,
            "playback_started": self._on_playback,
            "playback_completed": self._on_playback,
        }

    # ---- state ---------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    @property
    def session_id(self) -> str | None:
        return self._id

    @property
    def is_probe(self) -> bool:
        return self._probe

    @property
    def channels(self) -> tuple[str, ...]:
        """The negotiated AudioHook channels ("external", "internal"), in wire order."""
        return self._channels

    @property
    def position_samples(self) -> int:
        return self._position

    @property
    def language(self) -> str:
        return self._language

    # ---- Dialect protocol ----------------------------------------------------------------

    @property
    def capabilities(self) -> frozenset[str]:
        caps = {"disconnect"}
        if self.options.send_events:
            caps.add("event")
        if self.options.audio_connector:
            caps |= {"play", "clear"}
        return frozenset(caps)

    def receive_text(self, text: str) -> list[DialectEvent]:
        """Feed one text frame. Raises DialectError (after queueing ``disconnect``)."""
        self.counters.messages += 1
        try:
            return self._receive_text(text)
        except RecursionError:
            raise self._fail(_invalid("message nested too deeply")) from None
        except DialectError as err:
            raise self._fail(err) from None

    def receive_bytes(self, data: bytes) -> list[DialectEvent]:
        """Feed one binary frame (audio). Raises DialectError (after queueing ``disconnect``)."""
        self.counters.messages += 1
        try:
            return self._receive_audio(data)
        except DialectError as err:
            raise self._fail(err) from None

    def receive_eof(self) -> list[DialectEvent]:
        """The socket dropped without a close transaction."""
        if self._state in (CLOSED, ENDED):
            self._state = ENDED
            return []
        self._state = ENDED
        return [CallEnded(reason="probe" if self._probe else "hangup")]

    def send(self, request: OutboundRequest) -> None:
        """Queue a request for Genesys; raises UnsupportedRequest if AudioHook cannot carry it."""
        if isinstance(request, Disconnect):
            self._disconnect(_disconnect_reason(request.reason), request.info or request.reason)
        elif isinstance(request, SendEvent):
            self._send_event(request.data)
        elif isinstance(request, PlayAudio):
            self._play(request)
        elif isinstance(request, ClearAudio):
            if not self.options.audio_connector:
                raise UnsupportedRequest("AudioHook Monitor plays no audio")
            self._queue_event([{"type": "barge_in", "data": {}}])
        elif isinstance(request, SendMark):
            raise UnsupportedRequest("AudioHook has no marks")

    def close(self, reason: str) -> None:
        """The bridge is ending the call: ask the client to close (``disconnect``).

        ``close_to_send`` stays None: AudioHook's client ends the session itself (``close``,
        our ``closed``, then it closes the socket), so keep reading; Genesys's reference client
        completes that within seconds. Drop the socket only if it never comes.
        """
        self._disconnect(_disconnect_reason(reason), reason)

    # ---- server-initiated pause (not part of the Dialect protocol) -----------------------

    def request_pause(self) -> bool:
        """Ask the client to stop sending audio; it answers ``paused``. False if not live."""
        if self._state not in (ACTIVE, PAUSED) or self._probe:
            return False
        self._queue("pause", {})
        return True

    def request_resume(self) -> bool:
        """End a pause we asked for; the client answers ``resumed``. False if not live."""
        if self._state not in (ACTIVE, PAUSED) or self._probe:
            return False
        self._queue("resume", {})
        return True

    # ---- outbound --------------------------------------------------------------------------

    def _queue(self, kind: str, parameters: dict[str, Any]) -> None:
        self._seq += 1
        message = {
            "version": PROTOCOL_VERSION,
            "type": kind,
            "seq": self._seq,
            "clientseq": self._clientseq,
            "id": self._id or NULL_UUID,
            "parameters": parameters,
        }
        # ASCII with escapes: a lone surrogate in a transcript cannot break the websocket send.
        self._outbox.append(json.dumps(message, separators=(",", ":")))

    def _disconnect(self, reason: str, info: str) -> None:
        if self._state not in _LIVE or self._disconnect_sent:
            return
        self._disconnect_sent = reason
        parameters: dict[str, Any] = {"reason": reason}
        if info:
            parameters["info"] = _safe_info(info)
        self._queue("disconnect", parameters)

    def _fail(self, err: DialectError) -> DialectError:
        """Answer a breach the AudioHook way, then let call.py close the socket."""
        reason = "unauthorized" if isinstance(err, _Unauthorized) else "error"
        self._disconnect(reason, err.reason)
        self._state = ENDED
        if self._close is None:
            self._close = (err.close_code, err.reason)
        return err

    def _events_allowed(self) -> bool:
        return self._state in (ACTIVE, PAUSED) and not self._probe

    def _queue_event(self, entities: list[dict[str, Any]]) -> None:
        # The stream clock (audio received or reported skipped) measures the 429 back-off.
        clock = max(self._position, self._timeline)
        if not self._events_allowed() or clock < self._hold_events_until:
            self.counters.events_dropped += 1
            return
        self._queue("event", {"entities": entities})
        self.counters.events_sent += 1

    def _send_event(self, data: Mapping[str, Any]) -> None:
        if not self.options.send_events:
            raise UnsupportedRequest("event messages are off (options.send_events)")
        entities = self._entities(data)
        if entities:
            self._queue_event(entities)

    def _entities(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Either explicit entities, or a bridge transcript event turned into one."""
        if "entities" in data:
            entities = data["entities"]
            if not isinstance(entities, list) or not all(
                isinstance(e, dict) and isinstance(e.get("type"), str) and "data" in e
                for e in entities
            ):
                raise UnsupportedRequest("entities must be a list of {type, data} objects")
            try:
                json.dumps(entities, allow_nan=False)
            except (TypeError, ValueError, RecursionError):
                raise UnsupportedRequest("entities are not JSON") from None
            return list(entities)
        kind = data.get("type")
        if kind not in ("final", "partial"):
            if isinstance(kind, str):
                self.counters.events_skipped += 1
                return []
            raise UnsupportedRequest("AudioHook carries transcripts and entity lists only")
        if kind == "partial" and not self.options.send_partials:
            self.counters.events_skipped += 1
            return []
        return [self._transcript_entity(data, final=kind == "final")]

    def _transcript_entity(self, event: Mapping[str, Any], *, final: bool) -> dict[str, Any]:
        body = event.get("data")
        channel = {v: k for k, v in CHANNEL_NAMES.items()}.get(str(event.get("channel")))
        if not isinstance(body, Mapping) or channel is None:
            raise UnsupportedRequest("a transcript needs data and a caller/agent channel")
        text, start, end = body.get("text"), body.get("start_ms"), body.get("end_ms")
        if not isinstance(text, str) or not isinstance(start, int) or not isinstance(end, int):
            raise UnsupportedRequest("a transcript needs text, start_ms and end_ms")
        confidence = body.get("confidence", 1.0)
        if not isinstance(confidence, int | float) or not 0 <= confidence <= 1:
            confidence = 1.0
        tokens = []
        for word in body.get("words") or ():
            if not isinstance(word, Mapping):
                continue
            w_text, w_start, w_end = word.get("text"), word.get("start_ms"), word.get("end_ms")
            if isinstance(w_text, str) and isinstance(w_start, int) and isinstance(w_end, int):
                tokens.append(
                    {
                        "type": "word",
                        "value": w_text,
                        "confidence": float(confidence),
                        "offset": format_duration_ms(w_start),
                        "duration": format_duration_ms(w_end - w_start),
                    }
                )
        interpretation: dict[str, Any] = {"type": "display", "transcript": text}
        if tokens:
            interpretation["tokens"] = tokens
        alternative: dict[str, Any] = {
            "confidence": float(confidence),
            "interpretations": [interpretation],
        }
        if self._language:
            alternative["languages"] = [self._language]
        # One id per utterance: partials and the final of one utterance share it.
        key = f"{self._id}/{channel}/{start}"
        return {
            "type": "transcript",
            "data": {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, key)),
                "channel": channel,
                "isFinal": final,
                "offset": format_duration_ms(start),
                "duration": format_duration_ms(end - start),
                "alternatives": [alternative],
            },
        }

    def _play(self, request: PlayAudio) -> None:
        if not self.options.audio_connector:
            raise UnsupportedRequest("AudioHook Monitor plays no audio")
        if not self._events_allowed() or "external" not in self._channels:
            self.counters.events_dropped += 1
            return
        pcm = resample(request.pcm, request.sample_rate, SAMPLE_RATE)
        mulaw = pcm16_to_ulaw(pcm)
        for i in range(0, len(mulaw), PLAYBACK_FRAME_BYTES):
            self._outbox.append(mulaw[i : i + PLAYBACK_FRAME_BYTES])
            self.counters.audio_frames_sent += 1

    # ---- inbound text ----------------------------------------------------------------------

    def _receive_text(self, text: str) -> list[DialectEvent]:
        if self._state == CLOSED:
            raise _protocol("message after closed")
        if self._state == ENDED:
            raise _protocol("message after the session ended")
        if len(text) > MAX_TEXT_CHARS:
            raise DialectError("text message too large", DialectError.TOO_BIG)
        message = _object(_loads(text), "message")
        if message.get("version") != PROTOCOL_VERSION:
            raise _invalid('version must be "2"')
        session_id = _uuid(_required(message, "id", "id"), "id")
        kind = _string(_required(message, "type", "type"), "type")
        seq = _counter(_required(message, "seq", "seq"), "seq")
        serverseq = _counter(_required(message, "serverseq", "serverseq"), "serverseq")
        position_ns = parse_duration_ns(_required(message, "position", "position"), "position")
        parameters = _object(_required(message, "parameters", "parameters"), "parameters")

        if seq != self._clientseq + 1:
            raise _protocol("seq is not one more than the last")
        self._clientseq = seq
        if serverseq > self._seq:
            raise _protocol("serverseq is ahead of what we sent")
        if self._id is None:
            self._id = session_id
        elif session_id.lower() != self._id.lower():
            raise _protocol("session id mismatch")
        handler = self._handlers.get(kind)
        if handler is None:
            raise _protocol("unsupported message type")
        position = ns_to_samples(position_ns)
        if position > MAX_POSITION_SAMPLES:
            raise _invalid("position out of range")
        if position < self._position:
            raise _protocol("position went backwards")
        self._position = position
        # Audio the position says was skipped lands on the timeline before this message acts;
        # undone if the message turns out invalid, so counters match the events given out.
        saved = (self._timeline, self._gap_samples, self.counters.gap_ms)
        events = self._catch_up() if self._state == ACTIVE else []
        try:
            return [*events, *handler(parameters)]
        except DialectError:
            self._timeline, self._gap_samples, self.counters.gap_ms = saved
            raise

    def _ignored(self) -> list[DialectEvent]:
        self.counters.ignored_messages += 1
        return []

    def _catch_up(self) -> list[DialectEvent]:
        """Put audio the client reports but never sent (paused, discarded) on the timeline."""
        if self._state not in (ACTIVE, PAUSED) or self._probe:
            return []
        ahead = self._position - self._timeline
        if ahead < -_POSITION_TOLERANCE:
            self.counters.position_behind += 1
            return []
        if ahead <= _POSITION_TOLERANCE:
            return []
        before_ms = self._gap_samples * 1000 // SAMPLE_RATE
        self._gap_samples += ahead
        self._timeline = self._position
        gap_ms = self._gap_samples * 1000 // SAMPLE_RATE - before_ms
        if gap_ms <= 0:
            return []
        self.counters.gap_ms += gap_ms
        return [MediaGap(None, gap_ms)]

    def _on_open(self, params: dict[str, Any]) -> list[DialectEvent]:
        if self._state != AWAIT_OPEN:
            return self._ignored()  # as the reference server does
        organization = _uuid(
            _required(params, "organizationId", "organizationId"), "organizationId"
        )
        conversation = _uuid(
            _required(params, "conversationId", "conversationId"), "conversationId"
        )
        participant = _object(_required(params, "participant", "participant"), "participant")
        participant_id = _uuid(_required(participant, "id", "participant.id"), "participant.id")
        ani = _optional_string(participant, "ani", "participant.ani")
        ani_name = _optional_string(participant, "aniName", "participant.aniName")
        dnis = _optional_string(participant, "dnis", "participant.dnis")
        offers = _required(params, "media", "media")
        if not isinstance(offers, list):
            raise _invalid("media must be an array")
        checked = [_media_offer(offer) for offer in offers]
        language = ""
        if params.get("language") is not None:
            language = _string(params["language"], "language")
            if not _LANGUAGE_RE.fullmatch(language):
                raise _invalid("language must be a language code")
        wants_languages = _boolean(params.get("supportedLanguages", False), "supportedLanguages")
        custom = sj.string_map(params.get("customConfig"), "customConfig")
        custom.update(sj.string_map(params.get("inputVariables"), "inputVariables", "input."))
        if params.get("continuedSessions") is not None and not isinstance(
            params["continuedSessions"], list
        ):
            raise _invalid("continuedSessions must be an array")

        header_org = self.identity.organization_id
        if header_org is not None and header_org.lower() != organization.lower():
            raise _Unauthorized("organization id does not match the upgrade")

        self._probe = conversation == NULL_UUID
        chosen = None if self._probe else self._choose(checked)
        if chosen is None and not self._probe:
            raise _unsupported("no offered media format is supported")
        self._language = language
        self._timeline = self._position  # the stream clock starts wherever the client says
        opened: dict[str, Any] = {"media": [chosen] if chosen else []}
        if wants_languages:
            opened["supportedLanguages"] = list(self.options.supported_languages)
        self._queue("opened", opened)
        self._state = ACTIVE
        if chosen is None:
            return []  # the probe: no recognition, nothing stored
        self._channels = tuple(chosen["channels"])
        return [
            CallStarted(
                dialect=self.name,
                platform_call_id=conversation,
                stream_id=self._id or "",
                channels=tuple(ChannelInfo(CHANNEL_NAMES[c], c) for c in self._channels),
                media_format=MediaFormat("pcmu", SAMPLE_RATE, len(self._channels)),
                sample_rate=SAMPLE_RATE,
                metadata={
                    "organization_id": organization,
                    "conversation_id": conversation,
                    "session_id": self._id or "",
                    "correlation_id": self.identity.correlation_id or "",
                    "participant_id": participant_id,
                    "ani": ani,
                    "ani_name": ani_name,
                    "dnis": dnis,
                    "language": language,
                    "media_channels": ",".join(self._channels),
                },
                custom_parameters=custom,
            )
        ]

    def _choose(self, offers: list[dict[str, Any] | None]) -> dict[str, Any] | None:
        """The offer to accept, verbatim: PCMU 8 kHz, in the configured channel preference."""
        usable = [o for o in offers if o is not None]
        want = self.options.channels
        if want == "both":
            for offer in usable:
                if len(offer["channels"]) == 2:
                    return offer
            return usable[0] if usable else None
        for offer in usable:
            if offer["channels"] == [want]:
                return offer
        return None

    def _on_ping(self, params: dict[str, Any]) -> list[DialectEvent]:
        if params.get("rtt") is not None:
            rtt_ns = parse_duration_ns(params["rtt"], "rtt")
            self.counters.last_rtt_ms = rtt_ns // 1_000_000
        self.counters.pings += 1
        self._queue("pong", {})
        return []

    def _on_update(self, params: dict[str, Any]) -> list[DialectEvent]:
        language = _string(_required(params, "language", "language"), "language")
        if not _LANGUAGE_RE.fullmatch(language):
            raise _invalid("language must be a language code")
        if self._state not in (ACTIVE, PAUSED):
            return self._ignored()
        self.counters.updates += 1
        self._language = language
        return []

    def _on_paused(self, params: dict[str, Any]) -> list[DialectEvent]:
        if self._state != ACTIVE or self._probe:
            return self._ignored()
        self._state = PAUSED
        self.counters.pauses += 1
        return [Paused()]

    def _on_resumed(self, params: dict[str, Any]) -> list[DialectEvent]:
        parse_duration_ns(_required(params, "start", "start"), "start")
        discarded = parse_duration_ns(_required(params, "discarded", "discarded"), "discarded")
        if self._state not in (ACTIVE, PAUSED) or self._probe:
            return self._ignored()
        self.counters.discarded_reported_ms += discarded // 1_000_000
        was_paused = self._state == PAUSED
        self._state = ACTIVE
        events = self._catch_up()
        return [*events, Resumed()] if was_paused else events

    def _on_discarded(self, params: dict[str, Any]) -> list[DialectEvent]:
        parse_duration_ns(_required(params, "start", "start"), "start")
        discarded = parse_duration_ns(_required(params, "discarded", "discarded"), "discarded")
        if self._state not in (ACTIVE, PAUSED) or self._probe:
            return self._ignored()
        self.counters.discarded_reports += 1
        self.counters.discarded_reported_ms += discarded // 1_000_000
        return []

    def _on_error(self, params: dict[str, Any]) -> list[DialectEvent]:
        code = _required(params, "code", "code")
        if not isinstance(code, int) or isinstance(code, bool) or not 400 <= code < 10000:
            raise _invalid("code must be an error code")
        _string(_required(params, "message", "message"), "message")
        retry_after = None
        if params.get("retryAfter") is not None:
            retry_after = parse_duration_ns(params["retryAfter"], "retryAfter")
        self.counters.client_errors += 1
        self.counters.last_client_error = code
        if code == 429 and retry_after is not None:
            # Rate limited: hold our events until that much more audio has streamed.
            self._hold_events_until = self._position + ns_to_samples(retry_after)
        return []

    def _on_close(self, params: dict[str, Any]) -> list[DialectEvent]:
        reason = _string(_required(params, "reason", "reason"), "reason")
        if reason not in CLOSE_REASONS:
            raise _invalid("reason is not a close reason")
        events = self._catch_up() if self._state == PAUSED else []
        self._queue("closed", {})
        self._state = CLOSED
        self._close = (1000, "session closed")
        return [*events, CallEnded(reason="probe" if self._probe else reason)]

    def _on_dtmf(self, params: dict[str, Any]) -> list[DialectEvent]:
        digit = _string(_required(params, "digit", "digit"), "digit")
        if digit not in DTMF_DIGITS:
            raise _invalid("digit is not a DTMF digit")
        if self._state not in (ACTIVE, PAUSED) or self._probe:
            return self._ignored()
        self.counters.dtmf += 1
        # Digits come from the customer: the external channel when we have it.
        channel = "external" if "external" in self._channels else self._channels[0]
        return [Dtmf(CHANNEL_NAMES[channel], digit)]

    def _on_playback(self, params: dict[str, Any]) -> list[DialectEvent]:
        self.counters.playback_notices += 1
        return []

    # ---- inbound audio ---------------------------------------------------------------------

    def _receive_audio(self, data: bytes) -> list[DialectEvent]:
        if self._state == CLOSED:
            raise _protocol("audio after closed")
        if self._state == ENDED:
            raise _protocol("audio after the session ended")
        if self._state == AWAIT_OPEN:
            raise _protocol("audio before opened")
        if self._state == PAUSED:
            raise _protocol("audio while paused")
        if not self._channels:
            raise _protocol("audio without negotiated media")
        width = len(self._channels)  # PCMU: one byte per sample per channel
        if len(data) % width:
            raise _invalid("audio frame is not whole samples")
        samples = len(data) // width
        if not samples:
            return []
        timestamp_ms = self._timeline * 1000 // SAMPLE_RATE
        self._timeline += samples
        self.counters.audio_frames += 1
        self.counters.audio_samples += samples
        planes = [data[index::width] if width > 1 else data for index in range(width)]
        return [
            Audio(CHANNEL_NAMES[name], ulaw_to_pcm16(plane), timestamp_ms, plane)
            for name, plane in zip(self._channels, planes, strict=True)
        ]


def _media_offer(value: Any) -> dict[str, Any] | None:
    """One ``media`` entry checked; None when well-formed but not something we take."""
    offer = _object(value, "media entry")
    kind = _string(_required(offer, "type", "media.type"), "media.type")
    fmt = _string(_required(offer, "format", "media.format"), "media.format")
    rate = _required(offer, "rate", "media.rate")
    channels = _required(offer, "channels", "media.channels")
    if not isinstance(channels, list) or not 1 <= len(channels) <= 2:
        raise _invalid("media.channels must list one or two channels")
    if not all(isinstance(c, str) and c in CHANNEL_NAMES for c in channels):
        raise _invalid("media.channels must be external/internal")
    if len(set(channels)) != len(channels):
        raise _invalid("media.channels repeats a channel")
    if not isinstance(rate, int) or isinstance(rate, bool):
        raise _invalid("media.rate must be an integer")
    if kind != "audio" or fmt != "PCMU" or rate != SAMPLE_RATE:
        return None
    return {"type": "audio", "format": "PCMU", "channels": list(channels), "rate": SAMPLE_RATE}


def _disconnect_reason(reason: str) -> str:
    """The bridge's reason for ending, in AudioHook's three words."""
    if reason in DISCONNECT_REASONS:
        return reason
    if "error" in reason:
        return "error"
    return "completed"


def _safe_info(text: str) -> str:
    """``info`` is shown in Genesys's logs: printable ASCII words only, short."""
    return re.sub(r"[^A-Za-z0-9 _.,:;()/-]", "", text)[:120]


# ---- the factory: authentication on the upgrade ------------------------------------------------


class AudioHookFactory:
    """Authenticates each upgrade (``auth`` = "audiohook" or "none") and builds the dialect.

    Refusals: 403 for a browser Origin that is not allowed, 401 for missing or bad credentials
    (expired, replayed, forged, unknown key), 400 for malformed signature or session headers.
    The reason never quotes a credential. Unlike Genesys's reference server, which accepts the
    socket and then sends ``disconnect`` ``unauthorized``, we refuse before the upgrade, so no
    socket, dialect or recognition session exists for an unauthenticated peer.
    """

    name = "audiohook"

    def __init__(self, settings: DialectSettings) -> None:
        self.settings = settings
        self.options = AudioHookOptions.from_mapping(settings.options)
        self.verifier: AudioHookVerifier | None = None
        if settings.auth == "audiohook":
            self.verifier = AudioHookVerifier(
                settings.secrets, allow_unsigned=self.options.allow_unsigned
            )
        elif settings.auth != "none":
            raise ConfigError("auth", "audiohook supports 'audiohook' or 'none'")
        self.refused = 0
        # server.py holds a refusal back this long, in that connection's own task only.
        self.refusal_delay_s = self.options.refusal_delay_ms / 1000

    def counters(self) -> dict[str, int]:
        """Upgrade checks so far, for /metrics (no key or nonce is ever named)."""
        out = {"refused": self.refused}
        if self.verifier is not None:
            auth = self.verifier.counters
            out |= {
                "signature_accepted": auth.accepted,
                "signature_refused": auth.refused,
                "signature_replayed": auth.replayed,
                "signature_expired": auth.expired,
                "nonce_evictions": self.verifier.nonces.evictions,
            }
        return out

    def open(self, request: UpgradeRequest) -> Dialect:
        """Return a fresh dialect for this connection, or raise UpgradeRefused."""
        try:
            return self._open(request)
        except UpgradeRefused:
            self.refused += 1
            raise

    def _open(self, request: UpgradeRequest) -> AudioHookDialect:
        origin = request.header("origin")
        if origin is not None and origin not in self.settings.allowed_origins:
            raise UpgradeRefused(403, "origin not allowed")
        if self.verifier is not None:
            self.verifier.verify(request)
        identity = SessionIdentity(
            session_id=_header_uuid(request, "audiohook-session-id", self.verifier is not None),
            organization_id=_header_uuid(
                request, "audiohook-organization-id", self.verifier is not None
            ),
            correlation_id=request.header("audiohook-correlation-id"),
        )
        return AudioHookDialect(self.options, identity)


def _header_uuid(request: UpgradeRequest, name: str, required: bool) -> str | None:
    value = request.header(name)
    if value is None:
        if required:
            raise UpgradeRefused(400, f"missing {name} header")
        return None
    if not _UUID_RE.fullmatch(value.strip()):
        raise UpgradeRefused(400, f"{name} is not a UUID")
    return value.strip()


SPEC: Final = DialectSpec(
    name="audiohook",
    default_path="/audiohook",
    make_factory=AudioHookFactory,
    description="Genesys Cloud AudioHook v2 (Monitor and Audio Connector)",
)
