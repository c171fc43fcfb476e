"""Typed events: one frozen class per event type, with the payload fields it carries.

Each class is an EventPayload: a frozen dataclass that also reads as the JSON ``data``
object (``payload["text"]``), and UtteranceEvent.to_json is the one place it becomes JSON.
ivr_bridge/schema/events.schema.json describes the same envelope and payloads for
receivers in any language; tests keep the two in step.

Call sites build an event with ``UtteranceEvent.of(Final(...), call_id=..., ...)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any, ClassVar, Final

from ivr_bridge.model import ChannelInfo, EventPayload, MediaFormat


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class TimedWord:
    """A recognized word with call-relative times."""

    text: str
    start_ms: int
    end_ms: int


# ---- recognition --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpeechStarted(EventPayload):
    TYPE: ClassVar[str] = "speech_started"
    start_ms: int


@dataclass(frozen=True, slots=True)
class Partial(EventPayload):
    TYPE: ClassVar[str] = "partial"
    text: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class FinalText(EventPayload):
    """A final transcript (the ``final`` event)."""

    TYPE: ClassVar[str] = "final"
    text: str
    start_ms: int
    end_ms: int
    words: tuple[TimedWord, ...]
    final_index: int  # 1, 2, ... per channel; refinements point back to it
    session: int  # which recognition session (rotation/reconnect count) produced it


@dataclass(frozen=True, slots=True)
class FinalRefinement(EventPayload):
    TYPE: ClassVar[str] = "final_refinement"
    final_index: int
    text: str


@dataclass(frozen=True, slots=True)
class EndOfUtterance(EventPayload):
    """The ``eou`` event: the caller stopped speaking at ``end_ms``."""

    TYPE: ClassVar[str] = "eou"
    end_ms: int


@dataclass(frozen=True, slots=True)
class AudioGap(EventPayload):
    """Audio that was never recognized (the channel's buffer overflowed during an outage)."""

    TYPE: ClassVar[str] = "audio_gap"
    from_ms: int
    to_ms: int
    duration_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class RecognitionDegraded(EventPayload):
    TYPE: ClassVar[str] = "recognition_degraded"
    status: str  # gRPC status name
    from_ms: int


@dataclass(frozen=True, slots=True)
class RecognitionRestored(EventPayload):
    TYPE: ClassVar[str] = "recognition_restored"
    from_ms: int
    resume_ms: int
    session: int


@dataclass(frozen=True, slots=True)
class RecognitionFailed(EventPayload):
    TYPE: ClassVar[str] = "recognition_failed"
    status: str
    message: str


# ---- the call -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtmfDigit(EventPayload):
    """The ``dtmf`` event."""

    TYPE: ClassVar[str] = "dtmf"
    digit: str
    duration_ms: int | None


@dataclass(frozen=True, slots=True)
class MarkPlayed(EventPayload):
    """The ``mark`` event: the platform played everything queued before this mark."""

    TYPE: ClassVar[str] = "mark"
    name: str


@dataclass(frozen=True, slots=True)
class BargeIn(EventPayload):
    """The ``barge_in`` event: the caller spoke over a prompt and the bridge cleared playback
    (``dialog.barge_in``); ``prompt`` was cut after ``played_ms`` of ``duration_ms``."""

    TYPE: ClassVar[str] = "barge_in"
    prompt: str
    played_ms: int
    duration_ms: int
    dropped_prompts: tuple[str, ...]  # queued behind the cut prompt, dropped with it


@dataclass(frozen=True, slots=True)
class MediaPaused(EventPayload):
    """The ``paused`` event: the platform paused the media (hold). Only Genesys AudioHook
    sends it today; no audio arrives until ``resumed``."""

    TYPE: ClassVar[str] = "paused"


@dataclass(frozen=True, slots=True)
class MediaResumed(EventPayload):
    """The ``resumed`` event: media flows again after ``paused``."""

    TYPE: ClassVar[str] = "resumed"


@dataclass(frozen=True, slots=True)
class CallStartedInfo(EventPayload):
    """The ``call_started`` event."""

    TYPE: ClassVar[str] = "call_started"
    dialect: str
    platform_call_id: str
    stream_id: str
    channels: tuple[ChannelInfo, ...]
    media_format: MediaFormat
    sample_rate: int
    metadata: Mapping[str, str] = field(default_factory=_empty)
    custom_parameters: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class CallEndedSummary(EventPayload):
    """The ``call_ended`` event: why, how long, and the call's audio accounting."""

    TYPE: ClassVar[str] = "call_ended"
    reason: str
    duration_ms: int
    messages: int
    dtmf: int
    audio_ms_received: int
    audio_ms_sent: int
    audio_ms_replayed: int
    audio_ms_dropped: int
    keepalive_ms: int
    sessions_opened: int
    errors: int
    channels: Mapping[str, Mapping[str, Any]]  # per channel: RecognitionChannel.accounting()
    dialog_events_dropped: int = 0  # by the dialog handler's bounded queue (a slow handler)
    # The dialect's own counters of the stream on the wire (sequence gaps, duplicates,
    # timestamp jumps...), for dialects that keep them; tolerated anomalies, not errors.
    wire: Mapping[str, int] = field(default_factory=dict)


# ---- after the call (recording.py) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordingReady(EventPayload):
    """The call's WAV is complete (``recording.transcribe`` off)."""

    TYPE: ClassVar[str] = "recording_ready"
    recording: Mapping[str, Any]  # path, [uri], channels, sample_rate, frames_dropped


@dataclass(frozen=True, slots=True)
class TranscriptReady(EventPayload):
    """The recording's full-call transcript from asynchronous recognition, per channel."""

    TYPE: ClassVar[str] = "transcript_ready"
    recording: Mapping[str, Any]
    operation_id: str
    channels: Mapping[str, Mapping[str, Any]]  # name -> text, phrases (with word times)


@dataclass(frozen=True, slots=True)
class TranscriptFailed(EventPayload):
    """Asynchronous recognition of the recording failed; the recording is kept."""

    TYPE: ClassVar[str] = "transcript_failed"
    recording: Mapping[str, Any]
    error: str


PAYLOADS: Final[tuple[type[EventPayload], ...]] = (
    SpeechStarted,
    Partial,
    FinalText,
    FinalRefinement,
    EndOfUtterance,
    AudioGap,
    RecognitionDegraded,
    RecognitionRestored,
    RecognitionFailed,
    DtmfDigit,
    MarkPlayed,
    BargeIn,
    MediaPaused,
    MediaResumed,
    CallStartedInfo,
    CallEndedSummary,
    RecordingReady,
    TranscriptReady,
    TranscriptFailed,
)
EVENT_TYPES: Final[Mapping[str, type[EventPayload]]] = MappingProxyType(
    {cls.TYPE: cls for cls in PAYLOADS}
)


def load_schema() -> dict[str, Any]:
    """The JSON Schema of the event envelope and every payload (shipped as package data)."""
    text = resources.files("ivr_bridge").joinpath("schema/events.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
