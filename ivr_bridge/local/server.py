"""The embedded recognizer's gRPC server: ``speechkit.stt.v3.Recognizer`` on grpc.aio.

It speaks SpeechKit's own API (same package, messages and field numbers) and enforces
SpeechKit's documented session rules, so the bridge's client code is identical for the cloud
and for this server; only the endpoint and credentials differ. This module is the server's
lifecycle: binding, loading the engine into its workers, admitting calls (credentials,
injected outages, fault plans), counting them, and stopping. The rules themselves are in
``rules.py`` (plain messages in, statuses out), one call's tasks in ``session.py``, and where
decoding runs in ``workers.py`` (worker processes for PocketSphinx, so decoding never holds
this process's event loop). The statuses and messages are listed in
docs/embedded-recognizer.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import structlog

from ivr_bridge._proto import stt_v3_service_pb2_grpc as pb_grpc
from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.errors import ConfigError
from ivr_bridge.local.faults import FaultInjector, FaultPlan
from ivr_bridge.local.rules import (
    MSG_REFUSED,
    LocalLimits,
    SessionError,
    check_authorization,
)
from ivr_bridge.local.services import add_other_services
from ivr_bridge.local.session import RecognitionSession, RecognizerStats, drain_requests
from ivr_bridge.local.workers import EnginePool

__all__ = [
    "EmbeddedServerConfig",
    "EmbeddedSpeechKitServer",
    "LocalLimits",
    "RecognizerStats",
    "default_workers",
    "serve_forever",
]

log = structlog.get_logger(__name__)

# The generated grpc module is untyped; this is its one entry point used here.
_add_servicer: Callable[[Any, Any], None] = pb_grpc.add_RecognizerServicer_to_server


def default_workers() -> int:
    """One engine worker process per core."""
    return os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class EmbeddedServerConfig:
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = None  # require "authorization: Api-Key <key>" (or "Bearer <key>")
    limits: LocalLimits = LocalLimits()
    engine: str = "pocketsphinx"
    # Engine worker processes for a CPU-bound engine (PocketSphinx): sessions are pinned to
    # the least-loaded one. 0 decodes in one thread of this process (and cheap engines such
    # as "tones" always do).
    workers: int = 0
    # Fault injection (tests, chaos drills): a plan for every session, and whether a client
    # may ask for one with x-fault-* metadata. Never set either in front of real callers.
    faults: FaultPlan | None = None
    allow_fault_metadata: bool = False

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError("embedded.workers", "must be 0 (in-process) or more")


class _Servicer(pb_grpc.RecognizerServicer):
    def __init__(self, owner: EmbeddedSpeechKitServer) -> None:
        self._owner = owner

    async def RecognizeStreaming(self, request_iterator: Any, context: Any) -> None:
        await self._owner.handle(context)


class EmbeddedSpeechKitServer:
    """The embedded SpeechKit v3 streaming recognizer: one grpc.aio server and its engine pool.

    ``await start()`` binds, loads the engine in every worker and serves; ``address`` is then
    what a client connects to. ``await stop(grace)`` ends the calls (they get ``grace``
    seconds) and the workers. ``stats`` counts sessions, ends by status, audio and finals.
    """

    def __init__(self, config: EmbeddedServerConfig, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self.clock = clock
        self.pool = EnginePool(config.engine, config.workers)  # ConfigError: unknown engine
        self.engine = self.pool.engine
        self.stats = RecognizerStats()
        self.faults = FaultInjector(clock)
        self.outage_event = asyncio.Event()  # set (and replaced) by each injected outage
        self._server: Any = None
        self._port = 0
        self._sessions: set[asyncio.Task[Any]] = set()
        # Run by stop() before the engine pool goes: the other services' background work
        # (asynchronous recognition jobs) is cancelled, not failed by a vanished engine.
        self.on_stop: list[Callable[[], Awaitable[None]]] = []

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        if not self._port:
            raise RuntimeError("local recognizer not started")
        host = self.config.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self._port}"

    async def start(self) -> int:
        server = grpc.aio.server(
            # RecognizeFile carries up to 60 MB of inline audio (base64-free in gRPC).
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 61 << 20)]
        )
        _add_servicer(_Servicer(self), server)
        # SpeechKit's other APIs: v2 streaming, asynchronous recognition (services.py).
        add_other_services(self, server)
        host = self.config.host
        bind_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        try:
            port = server.add_insecure_port(f"{bind_host}:{self.config.port}")
        except RuntimeError as exc:
            raise OSError(f"cannot bind {bind_host}:{self.config.port}: {exc}") from exc
        if not port:
            raise OSError(f"cannot bind {bind_host}:{self.config.port}")
        # Load models before serving: the first callers must not wait for them.
        try:
            await self.pool.start()
        except BaseException:
            await self.pool.stop()  # the workers that did start
            raise
        await server.start()
        self._server = server
        self._port = int(port)
        log.info(
            "local_recognizer_started",
            address=self.address,
            engine=self.config.engine,
            auth=bool(self.config.api_key),
            worker_processes=len(self.pool.lanes) if self.pool.processes else 0,
        )
        return self._port

    async def stop(self, grace: float = 1.0) -> None:
        """Stop serving; calls in progress get ``grace`` seconds. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
        if self._sessions:
            await asyncio.wait(set(self._sessions), timeout=grace + 5.0)
        if server is not None:
            for close in self.on_stop:
                await close()
            await self.pool.stop()
            log.info("local_recognizer_stopped", stats=self.stats.ended)

    def outage(self, seconds: float) -> None:
        """Simulate losing the network: end every session now, refuse new ones for a while."""
        log.info("local_injected_outage", seconds=seconds, active=self.stats.sessions_active)
        self.faults.outage(seconds)
        event, self.outage_event = self.outage_event, asyncio.Event()
        event.set()

    async def handle(self, context: Any) -> None:
        metadata = {str(k).lower(): str(v) for k, v in (context.invocation_metadata() or ())}
        request_id = metadata.get("x-client-request-id", "")
        stats = self.stats
        stats.sessions_opened += 1
        stats.sessions_active += 1
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        started = self.clock.now()
        code, message = "CANCELLED", ""
        session: RecognitionSession | None = None
        try:
            check_authorization(metadata, self.config.api_key)
            if self.faults.refusing():
                raise SessionError("UNAVAILABLE", MSG_REFUSED)
            plan = self.config.faults
            if self.config.allow_fault_metadata:
                try:
                    plan = FaultPlan.from_metadata(metadata) or plan
                except ValueError as exc:
                    raise SessionError("INVALID_ARGUMENT", f"bad x-fault metadata: {exc}") from exc
            if plan is not None and not plan.applies_to(stats.sessions_opened):
                plan = None
            session = RecognitionSession(
                context,
                engine=self.pool.assign(),
                clock=self.clock,
                limits=self.config.limits,
                stats=stats,
                outage=self.outage_event,
                request_id=request_id,
                plan=plan,
            )
            code, message = await session.run()
        except SessionError as exc:
            code, message = exc.code, exc.message
            await drain_requests(context)
        finally:
            stats.sessions_active -= 1
            stats.count_end(code)
            if task is not None:
                self._sessions.discard(task)
            log.info(
                "local_session_ended",
                session=session.uuid if session else "",
                request_id=request_id,
                status=code,
                reason=message,
                audio_ms=session.received_ms if session else 0,
                finals=session.finals if session else 0,
                seconds=round(self.clock.now() - started, 3),
            )
        if code != "OK":
            context.set_code(getattr(grpc.StatusCode, code))
            context.set_details(message)


async def serve_forever(config: EmbeddedServerConfig, rest_port: int | None = None) -> None:
    """Run until SIGINT/SIGTERM (the CLI's ``ivr-bridge local-recognizer``); with
    ``rest_port`` also the v2 REST front (long-running recognition, operations) on that port."""
    from ivr_bridge.local.rest import LocalRestServer  # rest.py imports this module

    recognizer = EmbeddedSpeechKitServer(config)
    await recognizer.start()
    rest = None if rest_port is None else LocalRestServer(recognizer, config.host, rest_port)
    if rest is not None:
        try:
            await rest.start()
        except BaseException:
            await recognizer.stop()
            raise
    log.info("local_recognizer_listening", address=recognizer.address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(RuntimeError):  # no signal handlers on this loop (Windows)
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        log.info("local_recognizer_stopping", address=recognizer.address)
        if rest is not None:
            await rest.stop()
        await recognizer.stop(grace=2.0)
