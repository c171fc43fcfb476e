"""Assembles a running bridge from Settings: recognizer (cloud or embedded), sinks, server.

Used by ``ivr-bridge serve``, the demo and the integration tests, so all three run the same
wiring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import structlog

from ivr_bridge.call import CallOptions
from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.config import Settings
from ivr_bridge.events.bus import EventBus, Sink
from ivr_bridge.events.console import ConsoleSink
from ivr_bridge.events.jsonl import JsonlSink
from ivr_bridge.events.webhook import WebhookSink
from ivr_bridge.local.faults import FaultPlan
from ivr_bridge.local.server import LocalLimits, LocalRecognizer, LocalRecognizerConfig
from ivr_bridge.recognition.base import SessionConfig
from ivr_bridge.recognition.credentials import (
    ApiKeyCredentials,
    Credentials,
    credentials_from_settings,
)
from ivr_bridge.recognition.policy import PolicyConfig
from ivr_bridge.recognition.speechkit_v2 import SpeechKitV2Recognizer
from ivr_bridge.recognition.speechkit_v3 import SpeechKitV3Recognizer
from ivr_bridge.recording import Recordings, build_recordings
from ivr_bridge.server import BridgeServer

log = structlog.get_logger(__name__)

SPEECHKIT_ENDPOINT = "stt.api.cloud.yandex.net:443"


def policy_from(settings: Settings) -> PolicyConfig:
    s = settings.session
    return PolicyConfig(
        keepalive=s.keepalive,
        keepalive_after_ms=s.keepalive_after_ms,
        keepalive_interval_ms=s.keepalive_interval_ms,
        rotate_soft_ms=int(s.rotate_soft_s * 1000),
        rotate_hard_ms=int(s.rotate_hard_s * 1000),
        rotate_soft_bytes=s.rotate_soft_bytes,
        rotate_hard_bytes=s.rotate_hard_bytes,
        stall_timeout_s=s.stall_timeout_s,
        max_replay_ms=int(s.max_replay_s * 1000),
        backoff_initial_s=s.backoff_initial_s,
        backoff_max_s=s.backoff_max_s,
    )


def call_options_from(settings: Settings) -> CallOptions:
    sk = settings.speechkit
    return CallOptions(
        session=SessionConfig(
            sample_rate=8000,
            model=sk.model,
            languages=sk.languages,
            text_normalization=sk.text_normalization,
            profanity_filter=sk.profanity_filter,
            literature_text=sk.literature_text,
            eou_sensitivity=sk.eou_sensitivity,
            max_pause_between_words_hint_ms=sk.max_pause_between_words_hint_ms,
        ),
        policy=policy_from(settings),
        chunk_ms=sk.chunk_ms,
        buffer_s=settings.session.buffer_s,
        drain_timeout_s=settings.session.drain_timeout_s,
        media_inactivity_timeout_s=settings.server.media_inactivity_timeout_s,
    )


@dataclass(frozen=True, slots=True)
class RecognizerChoice:
    endpoint: str
    embedded: bool
    tls: bool


def choose_recognizer(settings: Settings) -> RecognizerChoice:
    """No endpoint and no credentials: the embedded recognizer. Credentials: SpeechKit."""
    sk = settings.speechkit
    if sk.endpoint:
        return RecognizerChoice(sk.endpoint, embedded=False, tls=sk.tls)
    if sk.has_credentials:
        return RecognizerChoice(SPEECHKIT_ENDPOINT, embedded=False, tls=True)
    return RecognizerChoice("", embedded=True, tls=False)


class BridgeApp:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = SYSTEM_CLOCK,
        sinks: Sequence[Sink] = (),
        local_limits: LocalLimits | None = None,
        policy: PolicyConfig | None = None,
        local_faults: FaultPlan | None = None,
    ) -> None:
        self.settings = settings
        self._local_faults = local_faults
        self._clock = clock
        self._extra_sinks = list(sinks)
        self._local_limits = local_limits or LocalLimits()
        self._policy = policy
        self.embedded: LocalRecognizer | None = None
        self.recognizer: SpeechKitV3Recognizer | SpeechKitV2Recognizer | None = None
        self.bus: EventBus | None = None
        self.server: BridgeServer | None = None
        self._credentials: Credentials | None = None
        self.recordings: Recordings | None = None

    @property
    def port(self) -> int:
        if self.server is None:
            raise RuntimeError("not started")
        return self.server.port

    def url(self, path: str = "/twilio") -> str:
        host = self.settings.server.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"ws://{host}:{self.port}{path}"

    async def start(self) -> int:
        s = self.settings
        choice = choose_recognizer(s)
        endpoint = choice.endpoint
        credentials: Credentials | None = None
        if choice.embedded:
            self.embedded = LocalRecognizer(
                LocalRecognizerConfig(
                    host=s.embedded.host,
                    port=s.embedded.port,
                    api_key=s.embedded.api_key or None,
                    limits=self._local_limits,
                    engine=s.embedded.engine,
                    faults=self._local_faults,
                ),
                clock=self._clock,
            )
            await self.embedded.start()
            endpoint = self.embedded.address
            if s.embedded.api_key:
                credentials = ApiKeyCredentials(s.embedded.api_key)
            log.info(
                "embedded_recognizer_started",
                address=endpoint,
                engine=s.embedded.engine,
                why="no SpeechKit credentials or endpoint configured",
            )
        else:
            credentials = credentials_from_settings(
                api_key=s.speechkit.api_key or None,
                iam_token=s.speechkit.iam_token or None,
                service_account_key_file=s.speechkit.service_account_key_file or None,
                service_account_key_json=None,
                token_url=s.speechkit.token_url,
                clock=self._clock,
            )
            log.info(
                "speechkit_recognizer",
                endpoint=endpoint,
                tls=choice.tls,
                credentials=credentials.describe() if credentials else "none",
            )
        self._credentials = credentials
        if s.speechkit.api == "v2":  # the embedded recognizer serves v2 on the same port
            self.recognizer = SpeechKitV2Recognizer(
                endpoint,
                tls=choice.tls,
                credentials=credentials,
                folder_id=s.speechkit.folder_id,
                clock=self._clock,
            )
        else:
            self.recognizer = SpeechKitV3Recognizer(
                endpoint, tls=choice.tls, credentials=credentials, folder_id=s.speechkit.folder_id
            )
        self.bus = EventBus(s.events.queue_size, include_partials=s.events.include_partials)
        if s.events.jsonl:
            self.bus.add_sink(JsonlSink(s.events.jsonl))
        if s.events.stdout:
            self.bus.add_sink(ConsoleSink(include_partials=s.events.include_partials))
        if s.events.webhook:
            self.bus.add_sink(
                WebhookSink(
                    s.events.webhook,
                    secret=s.events.webhook_secret,
                    timeout_s=s.events.webhook_timeout_s,
                )
            )
        for sink in self._extra_sinks:
            self.bus.add_sink(sink)
        options = call_options_from(s)
        if self._policy is not None:
            options = replace(options, policy=self._policy)
        self.recordings = await build_recordings(  # [recording] (off by default)
            s,
            clock=self._clock,
            embedded=self.embedded,
            endpoint=endpoint,
            tls=choice.tls,
            credentials=credentials,
        )
        options = replace(options, recording=self.recordings)
        self.server = BridgeServer(
            recognizer=self.recognizer,
            bus=self.bus,
            options=options,
            host=s.server.host,
            port=s.server.port,
            max_message_bytes=s.server.max_message_bytes,
            ping_interval_s=s.server.ping_interval_s,
            ping_timeout_s=s.server.ping_timeout_s,
            open_timeout_s=s.server.open_timeout_s,
            max_calls=s.server.max_calls,
            recognizer_label="embedded" if choice.embedded else endpoint,
            clock=self._clock,
        )
        return await self.server.start()

    async def stop(self, drain_timeout_s: float = 0.0) -> None:
        if self.server is not None:
            await self.server.drain(drain_timeout_s)
            self.server = None
        if self.recordings is not None:  # transcripts in flight still publish on the bus
            await self.recordings.aclose()
            self.recordings = None
        if self.bus is not None:
            await self.bus.aclose()
            self.bus = None
        if self.recognizer is not None:
            await self.recognizer.close()
            self.recognizer = None
        if self._credentials is not None:
            await self._credentials.aclose()
            self._credentials = None
        if self.embedded is not None:
            await self.embedded.stop()
            self.embedded = None

    async def __aenter__(self) -> BridgeApp:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
