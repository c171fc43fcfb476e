"""Shared fixtures: a whole bridge (embedded recognizer + server) on loopback port 0."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ivr_bridge.app import BridgeApp
from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.config import EmbeddedSettings, ServerSettings, Settings, SpeechKitSettings
from ivr_bridge.events.console import CallbackSink
from ivr_bridge.local.faults import FaultPlan
from ivr_bridge.local.server import LocalLimits
from ivr_bridge.model import UtteranceEvent
from ivr_bridge.recognition.policy import PolicyConfig

SAMPLE = Path(__file__).resolve().parents[2] / "ivr_bridge" / "data" / "sample_call.wav"


@dataclass
class Collector:
    events: list[UtteranceEvent] = field(default_factory=list)
    ended: dict[str, asyncio.Event] = field(default_factory=dict)

    def __call__(self, event: UtteranceEvent) -> None:
        self.events.append(event)
        if event.type == "call_ended":
            self.ended.setdefault(event.call_id, asyncio.Event()).set()

    def calls(self) -> list[str]:
        return list(dict.fromkeys(e.call_id for e in self.events))

    def of(self, call_id: str, kind: str | None = None) -> list[UtteranceEvent]:
        return [e for e in self.events if e.call_id == call_id and (kind is None or e.type == kind)]

    async def wait_ended(self, count: int = 1, timeout: float = 30) -> None:
        async def done() -> None:
            while sum(1 for e in self.events if e.type == "call_ended") < count:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(done(), timeout)


def local_settings(engine: str = "pocketsphinx", **session: Any) -> Settings:
    """Loopback settings. Calls sent faster than real time need a long final drain."""
    from ivr_bridge.config import SessionSettings

    session.setdefault("drain_timeout_s", 60.0)

    return Settings(
        server=ServerSettings(port=0),
        speechkit=SpeechKitSettings(languages=("en-US",)),
        embedded=EmbeddedSettings(port=0, engine=engine),
        session=SessionSettings(**session),
    )


Bridge = Callable[..., Any]


@pytest.fixture
async def bridge() -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await bridge(engine=..., clock=..., policy=..., limits=...)`` -> (app, events)."""
    apps: list[BridgeApp] = []

    async def make(
        engine: str = "pocketsphinx",
        clock: Clock = SYSTEM_CLOCK,
        policy: PolicyConfig | None = None,
        limits: LocalLimits | None = None,
        settings: Settings | None = None,
        faults: FaultPlan | None = None,
    ) -> tuple[BridgeApp, Collector]:
        collector = Collector()
        app = BridgeApp(
            settings or local_settings(engine),
            clock=clock,
            sinks=[CallbackSink(collector)],
            policy=policy,
            local_limits=limits,
            local_faults=faults,
        )
        await app.start()
        apps.append(app)
        return app, collector

    yield make
    for app in apps:
        await app.stop()
