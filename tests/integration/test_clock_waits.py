"""The server's drain and the call's media-inactivity timeout wait on the injected clock.

Both run on a clock 7,200 times faster than real time with hour-long limits: if either wait
were in real seconds, the test would hang until pytest's timeout instead of passing at once.
"""

from __future__ import annotations

from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge.clock import ScaledClock
from ivr_bridge.config import EmbeddedSettings, ServerSettings, Settings, SpeechKitSettings
from ivr_bridge.simulators.twilio import TwilioStreamEncoder

HOUR = 3600.0


async def _closed(ws: Any) -> tuple[int, str]:
    try:
        while True:
            await ws.recv()
    except ConnectionClosed as exc:
        assert exc.rcvd is not None
        return exc.rcvd.code, exc.rcvd.reason


async def test_drain_timeout_follows_the_injected_clock(bridge: Any) -> None:
    clock = ScaledClock(speed=2 * HOUR)
    # At 7,200x the default 5 s start timeout is under a millisecond of real time.
    settings = Settings(
        server=ServerSettings(port=0, start_timeout_s=HOUR),
        speechkit=SpeechKitSettings(languages=("en-US",)),
        embedded=EmbeddedSettings(port=0, engine="tones"),
    )
    app, _ = await bridge(engine="tones", clock=clock, settings=settings)
    assert app.server is not None
    async with connect(app.url(), compression=None) as ws:
        enc = TwilioStreamEncoder()
        await ws.send(enc.connected())
        await ws.send(enc.start())  # a started call: start_timeout_s does not end it
        while app.server.active_calls == 0:
            await clock.sleep(1)
        started = clock.now()
        await app.server.drain(HOUR)  # an hour of clock time: half a second of real time
        assert clock.now() - started >= HOUR
        assert await _closed(ws) == (1001, "bridge shutting down")


async def test_media_inactivity_timeout_follows_the_injected_clock(bridge: Any) -> None:
    clock = ScaledClock(speed=2 * HOUR)
    settings = Settings(
        server=ServerSettings(port=0, media_inactivity_timeout_s=HOUR, start_timeout_s=HOUR),
        speechkit=SpeechKitSettings(languages=("en-US",)),
        embedded=EmbeddedSettings(port=0, engine="tones"),
    )
    app, _ = await bridge(engine="tones", clock=clock, settings=settings)
    async with connect(app.url(), compression=None) as ws:
        enc = TwilioStreamEncoder()
        await ws.send(enc.connected())
        await ws.send(enc.start())  # without it, start_timeout_s would end the call first
        started = clock.now()
        code, reason = await _closed(ws)
        assert (code, reason) == (1000, "no media")
        assert clock.now() - started >= HOUR
