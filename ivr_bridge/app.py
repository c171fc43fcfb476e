"""Assembles a running bridge from Settings: recognizer (cloud or embedded), sinks, server.

Used by ``ivr-bridge serve``, the demo and the integration tests, so all three run the same
wiring.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import signal
import socket
import ssl
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog

from ivr_bridge.audiosocket_server import AudioSocketServer
from ivr_bridge.call import Call, CallOptions, MessageStream
from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.commands import CommandError, parse_command
from ivr_bridge.config import Settings
from ivr_bridge.dialects.base import UpgradeRequest
from ivr_bridge.dialects.registry import Route, build_routes
from ivr_bridge.errors import ConfigError
from ivr_bridge.events.breaker import BreakerConfig
from ivr_bridge.events.bus import EventBus, Sink
from ivr_bridge.events.console import ConsoleSink
from ivr_bridge.events.deadletter import DeadLetterFile
from ivr_bridge.events.jsonl import JsonlSink
from ivr_bridge.events.webhook import WebhookSink
from ivr_bridge.events_api import EventHub, EventsApi
from ivr_bridge.handle import DialogOptions, Handler
from ivr_bridge.health import RecognizerWatch, SinkWatch
from ivr_bridge.local.faults import FaultPlan
from ivr_bridge.local.server import EmbeddedServerConfig, EmbeddedSpeechKitServer, LocalLimits
from ivr_bridge.overload import OverloadLimits
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
from ivr_bridge.workers import WorkerPeers

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
        start_timeout_s=settings.server.start_timeout_s,
        message_rate_per_s=settings.server.message_rate_per_s,
        message_burst=settings.server.message_burst,
        read_batching=settings.server.read_batching,
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
    """A whole bridge built from Settings: recognizer (cloud or embedded), event sinks, server.

    Await :meth:`start` (or use ``async with``), point the PBX at :meth:`url`, and await
    :meth:`stop` once at the end with the drain timeout; ``stop`` closes everything
    ``start`` opened, in reverse order. On SIGHUP call :meth:`reopen_sinks`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = SYSTEM_CLOCK,
        sinks: Sequence[Sink] = (),
        local_limits: LocalLimits | None = None,
        policy: PolicyConfig | None = None,
        local_faults: FaultPlan | None = None,
        on_command: Callable[[str, dict[str, Any]], Awaitable[None] | None] | None = None,
        handler: Handler | None = None,
        listen: bool = True,
        listen_socket: socket.socket | None = None,
        peers: WorkerPeers | None = None,
    ) -> None:
        self.settings = settings
        # Commands from NATS (play/mark/clear/hangup) for a call this bridge owns; by default
        # they go to that call (see :meth:`command`).
        self._on_command = on_command or self.command
        self._handler = handler  # in-process dialog logic: one task per call
        self._listen = listen  # False: only mounted calls (:meth:`handle`), no listener
        self._routes: dict[str, Route] = {}
        self._options: CallOptions | None = None
        self._mounted: dict[str, Call] = {}
        self.events_api: EventsApi | None = None
        # One of several workers (workers.py): the shared socket and the siblings' snapshots.
        self._listen_socket = listen_socket
        self._peers = peers
        self._local_faults = local_faults
        self._clock = clock
        self._extra_sinks = list(sinks)
        self._local_limits = local_limits or LocalLimits()
        self._policy = policy
        self.embedded: EmbeddedSpeechKitServer | None = None
        self.recognizer: SpeechKitV3Recognizer | SpeechKitV2Recognizer | None = None
        self.bus: EventBus | None = None
        self.server: BridgeServer | None = None
        self.audiosocket: AudioSocketServer | None = None  # server.audiosocket_port, if set
        self._credentials: Credentials | None = None
        self.recordings: Recordings | None = None
        self._recognizer_watch = RecognizerWatch(settings.server.ready_recognizer_grace_s)
        self._sink_watch = SinkWatch()

    @property
    def port(self) -> int:
        if self.server is None:
            raise RuntimeError("not started")
        return self.server.port

    def url(self, path: str = "/twilio") -> str:
        host = self.settings.server.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        scheme = "wss" if self.settings.server.tls_cert else "ws"
        return f"{scheme}://{host}:{self.port}{path}"

    def health(self) -> tuple[dict[str, Any], bool]:
        """Per component status for /healthz, and whether /readyz may say ready."""
        now = self._clock.now()
        components: dict[str, Any] = {}
        if self.recognizer is not None:
            self._recognizer_watch.observe(self.recognizer.connectivity(), now)
            components["recognizer"] = self._recognizer_watch.report(now)
        if self.bus is not None:
            stats = self.bus.stats()
            for name, own in self.bus.health().items():
                st = stats[name]
                components[f"sink:{name}"] = self._sink_watch.report(
                    name, st.delivered, st.failed, own
                )
        return components, self._recognizer_watch.ready(now)

    async def start(self) -> int:
        """Start the recognizer, the sinks and the listener; returns the port calls connect to.

        A setting that cannot be used (port taken, host unknown, events file not writable,
        unknown engine) raises ConfigError naming it, after everything already started has
        been stopped again. After a successful start, call :meth:`stop` (or use ``async
        with``) exactly once.
        """
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> int:
        s = self.settings
        routes = self._routes = build_routes(s.dialects)  # bad dialect config: fail first
        choice = choose_recognizer(s)
        endpoint = choice.endpoint
        credentials: Credentials | None = None
        if choice.embedded:
            try:
                self.embedded = EmbeddedSpeechKitServer(
                    EmbeddedServerConfig(
                        host=s.embedded.host,
                        port=s.embedded.port,
                        api_key=s.embedded.api_key or None,
                        limits=self._local_limits,
                        engine=s.embedded.engine,
                        workers=s.embedded.workers,
                        faults=self._local_faults,
                    ),
                    clock=self._clock,
                )
            except ConfigError as exc:
                # The recognizer names its own field ("engine"); say which section it is in.
                key = exc.key if "." in exc.key else f"embedded.{exc.key}"
                raise ConfigError(key, exc.problem) from None
            try:
                await self.embedded.start()
            except OSError as exc:
                raise _listen_error(exc, "embedded", s.embedded.host, s.embedded.port) from None
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
                transport=s.speechkit.transport,
                coalesce_ms=s.speechkit.write_coalesce_ms,
            )
        else:
            self.recognizer = SpeechKitV3Recognizer(
                endpoint,
                tls=choice.tls,
                credentials=credentials,
                folder_id=s.speechkit.folder_id,
                transport=s.speechkit.transport,
                coalesce_ms=s.speechkit.write_coalesce_ms,
            )
        self.bus = await self._build_bus()
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
        if self._handler is not None:
            d = s.dialog
            dialog = DialogOptions(self._handler, d.barge_in, d.queue_size, d.finish_timeout_s)
            options = replace(options, dialog=dialog)
        self._options = options
        if s.events.api_token or s.events.api_read_token:
            hub = EventHub(
                ring_size=s.events.api_ring_size, keep_s=s.events.api_ring_keep_s, clock=self._clock
            )
            self.bus.add_sink(hub)
            self.events_api = EventsApi(
                hub,
                token=s.events.api_token,
                read_token=s.events.api_read_token,
                find_call=self.find_call,
                subscriber_queue=s.events.api_subscriber_queue,
            )
        if not self._listen:
            log.info("bridge_mounted", why="listen=False: calls come through BridgeApp.handle")
            return 0
        self.server = BridgeServer(
            routes=routes,
            public_url=s.server.public_url,
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
            overload=OverloadLimits(
                max_calls=s.server.max_calls,
                max_loop_lag_ms=s.server.max_loop_lag_ms,
                max_cpu=s.server.max_cpu,
            ),
            recognizer_label="embedded" if choice.embedded else endpoint,
            sock=self._listen_socket,
            peers=self._peers,
            clock=self._clock,
            events_api=self.events_api,
            max_connections_per_ip=s.server.max_connections_per_ip,
            tls=_tls_context(s.server.tls_cert, s.server.tls_key),
            health_probe=self.health,
        )
        try:
            port = await self.server.start()
        except OSError as exc:
            raise _listen_error(exc, "server", s.server.host, s.server.port) from None
        await self._start_audiosocket(options)
        return port

    async def _start_audiosocket(self, options: CallOptions) -> None:
        """Asterisk AudioSocket on its own TCP port, sharing the recognizer, bus and metrics."""
        s = self.settings.server
        if not s.audiosocket_port or self.server is None:
            return
        assert self.recognizer is not None and self.bus is not None
        self.audiosocket = AudioSocketServer(
            recognizer=self.recognizer,
            bus=self.bus,
            options=options,
            host=s.audiosocket_host,
            port=s.audiosocket_port,
            allowed_addresses=s.audiosocket_allow,
            max_calls=s.max_calls,
            clock=self._clock,
            metrics=self.server.metrics,
        )
        try:
            await self.audiosocket.start()
        except OSError as exc:
            self.audiosocket = None
            error = _listen_error(exc, "server", s.audiosocket_host, s.audiosocket_port)
            key = error.key.replace("server.", "server.audiosocket_")
            raise ConfigError(key, error.problem) from None
        self.server.add_metrics_source(self.audiosocket.counters)

    # ---- calls: find, command, mount ----------------------------------------------------

    def find_call(self, call_id: str) -> Call | None:
        """The live call with this id on this bridge (served or mounted), else None."""
        call = self.server.find_call(call_id) if self.server is not None else None
        return call or self._mounted.get(call_id)

    async def command(self, call_id: str, command: dict[str, Any]) -> None:
        """Carry out a command (ivr_bridge/commands.py shape) on a call this bridge owns.
        Raises CommandError when it is malformed or the call is not here, UnsupportedRequest
        when the call's platform cannot carry it."""
        request = parse_command(command)
        call = self.find_call(call_id)
        if call is None:
            raise CommandError("no such live call on this bridge")
        await call.send(request)

    async def handle(
        self,
        stream: MessageStream,
        dialect: str,
        *,
        request: UpgradeRequest | None = None,
    ) -> Call:
        """Run one call over a connection the caller's own websocket server accepted.

        ``dialect`` is a dialect name ("twilio", "audiohook", ...); ``request`` is the upgrade
        as received (headers, query), which the dialect authenticates as it would at the
        bridge's own door; without it, an empty request on the dialect's path (enough for a
        dialect configured with ``auth = "none"``). Raises UpgradeRefused when the dialect
        refuses it. Returns the finished call (its ``end_reason``, ``call_id``).
        """
        if self.recognizer is None or self.bus is None or self._options is None:
            raise RuntimeError("start the bridge before handing it calls")
        route = next((r for r in self._routes.values() if r.name == dialect), None)
        if route is None:
            enabled = ", ".join(sorted(r.name for r in self._routes.values()))
            raise ValueError(f"dialect {dialect!r} is not enabled here (enabled: {enabled})")
        upgrade = request or UpgradeRequest(path=route.path, now=self._clock.wall())
        call = Call(
            call_id="call_" + uuid.uuid4().hex[:20],
            dialect=route.factory.open(upgrade),
            stream=stream,
            recognizer=self.recognizer,
            options=self._options,
            bus=self.bus,
            clock=self._clock,
            metrics=self.server.metrics if self.server is not None else None,
        )
        self._mounted[call.call_id] = call
        try:
            await call.run()
        finally:
            del self._mounted[call.call_id]
        return call

    async def reopen_sinks(self) -> bool:
        """After logrotate (SIGHUP): ask the event bus to reopen its file sinks.

        Returns False, with a log line saying so, when the bus offers no ``reopen()``; then
        files stay open on their old inode until restart. Safe to call at any time.
        """
        reopen = getattr(self.bus, "reopen", None)
        if not callable(reopen):
            log.warning("sinks_reopen_unsupported", why="the event bus offers no reopen()")
            return False
        try:
            result = reopen()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            log.warning("sinks_reopen_failed", error=type(exc).__name__)
            return False
        log.info("sinks_reopened")
        return True

    async def _build_bus(self) -> EventBus:
        """The bus and the sinks the settings ask for (events.* keys)."""
        ev = self.settings.events
        dead_letter = DeadLetterFile(ev.dead_letter_file) if ev.dead_letter_file else None
        bus = EventBus(
            ev.queue_size,
            include_partials=ev.include_partials,
            per_call_queue_size=ev.per_call_queue_size,
            clock=self._clock,
            dead_letter=dead_letter,
        )
        if ev.jsonl:
            bus.add_sink(JsonlSink(ev.jsonl))  # raises ConfigError naming the path
        if ev.stdout:
            bus.add_sink(ConsoleSink(include_partials=ev.include_partials))
        urls = [u for u in (ev.webhook, *ev.webhooks) if u]
        for i, url in enumerate(urls):
            bus.add_sink(
                WebhookSink(
                    url,
                    name="webhook" if i == 0 else f"webhook-{i + 1}",
                    secret=ev.webhook_secret,
                    timeout_s=ev.webhook_timeout_s,
                    max_in_flight=ev.webhook_max_in_flight,
                    retry_total_s=ev.webhook_retry_total_s,
                    backoff_initial_s=ev.webhook_backoff_initial_s,
                    backoff_max_s=ev.webhook_backoff_max_s,
                    breaker=BreakerConfig(
                        threshold=ev.webhook_breaker_threshold,
                        cooldown_max_s=ev.webhook_breaker_cooldown_max_s,
                    ),
                    clock=self._clock,
                )
            )
        if ev.nats_url:
            try:
                from ivr_bridge.events.jetstream import NatsSink
            except ImportError as exc:
                raise ConfigError(
                    "events.nats_url", "needs the nats extra: pip install 'ivr-bridge[nats]'"
                ) from exc
            nats_sink = NatsSink(
                ev.nats_url,
                subject_prefix=ev.nats_subject_prefix,
                stream=ev.nats_stream,
                retention=ev.nats_retention,
                max_age_s=ev.nats_max_age_s,
                max_in_flight=ev.nats_max_in_flight,
                retry_total_s=ev.nats_retry_total_s,
                on_command=self._on_command,
                clock=self._clock,
            )
            await nats_sink.start()
            bus.add_sink(nats_sink)
        return bus

    async def stop(self, drain_timeout_s: float = 0.0) -> None:
        if self.audiosocket is not None:
            await self.audiosocket.drain(drain_timeout_s)
            self.audiosocket = None
        if self.server is not None:
            await self.server.drain(drain_timeout_s)
            self.server = None
        if self.recordings is not None:  # transcripts in flight still publish on the bus
            await self.recordings.aclose()
            self.recordings = None
        if self.bus is not None:
            # Queued events get the drain period, then go to the dead-letter file.
            await self.bus.aclose(self.settings.events.drain_timeout_s)
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


async def serve(handler: Handler, settings: Settings | None = None) -> None:
    """Run a bridge that calls ``await handler(call)`` once per call, until cancelled or
    SIGTERM; then drain live calls (``server.drain_timeout_s``) and stop.

    ``call`` is an :class:`~ivr_bridge.handle.CallHandle`: the call's metadata, its events
    (``async for event in call.events()``) and commands (play, mark, clear, hangup).
    """
    settings = settings or Settings()
    app = BridgeApp(settings, handler=handler)
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Signals only on the main thread of a POSIX process; elsewhere cancellation stops it.
    signals = sys.platform != "win32" and threading.current_thread() is threading.main_thread()
    if signals:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        log.info("bridge_serving", url=app.url(""), dialog_handler=True)
        await stop.wait()
    finally:
        if signals:
            loop.remove_signal_handler(signal.SIGTERM)
        await asyncio.shield(app.stop(settings.server.drain_timeout_s))


def _tls_context(cert: str, key: str) -> ssl.SSLContext | None:
    """The listener's TLS context from PEM files, or None without them."""
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError("server.tls_cert", f"cannot load {cert!r} / {key!r}: {why}") from None
    return context


def _listen_error(exc: OSError, section: str, host: str, port: int) -> ConfigError:
    """A bind failure as one sentence that names the setting to change."""
    if isinstance(exc, socket.gaierror):
        return ConfigError(f"{section}.host", f"cannot resolve {host!r}")
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(f"{section}.port", f"{host}:{port} is already in use")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(f"{section}.host", f"{host!r} is not an address of this machine")
    if exc.errno == errno.EACCES:
        return ConfigError(f"{section}.port", f"no permission to listen on port {port}")
    reason = exc.strerror or str(exc).splitlines()[0][:200] or type(exc).__name__
    return ConfigError(f"{section}.host", f"cannot listen on {host}:{port}: {reason}")
