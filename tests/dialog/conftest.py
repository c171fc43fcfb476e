"""A bridge on loopback port 0 with the exact "tones" engine and the events API on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge.app import BridgeApp
from ivr_bridge.config import (
    DialogSettings,
    EmbeddedSettings,
    EventSettings,
    ServerSettings,
    SessionSettings,
    Settings,
    SpeechKitSettings,
)
from ivr_bridge.handle import Handler

TOKEN = "control-token-for-tests"
READ_TOKEN = "read-token-for-tests"


def tone_settings(**events: Any) -> Settings:
    return Settings(
        server=ServerSettings(port=0),
        speechkit=SpeechKitSettings(languages=("en-US",)),
        embedded=EmbeddedSettings(port=0, engine="tones", workers=0),
        session=SessionSettings(drain_timeout_s=30.0),
        events=replace(EventSettings(api_token=TOKEN, api_read_token=READ_TOKEN), **events),
        dialog=DialogSettings(barge_in=True),
    )


StartBridge = Callable[..., Any]


@pytest.fixture
async def tone_bridge() -> AsyncIterator[StartBridge]:
    """``await tone_bridge(handler=None, **events_settings)`` -> a started BridgeApp."""
    apps: list[BridgeApp] = []

    async def start(handler: Handler | None = None, **events: Any) -> BridgeApp:
        app = BridgeApp(tone_settings(**events), handler=handler)
        await app.start()
        apps.append(app)
        return app

    yield start
    for app in apps:
        await app.stop()
