"""Every dialect's authentication through the real bridge, and AudioHook's session features.

``ivr-bridge simulate``'s encoder for the platform -> BridgeServer (routes from the registry,
auth on the upgrade, subprotocol negotiation) -> Call -> the embedded recognizer ("tones"
engine: exact words) -> events. The signed AudioHook upgrade is checked with valid, forged and
replayed signatures. The sample call through every dialect is in test_sample_every_dialect.py.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time
import urllib.request
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge.config import Settings
from ivr_bridge.dialects.audiohook_client import AudioHookClient
from ivr_bridge.dialects.base import DialectSettings
from ivr_bridge.local.tones import synthesize_script
from ivr_bridge.simulate import ENCODERS, make_encoder, simulate_pcm
from ivr_bridge.simulators.base import ClientAuth
from tests.integration.conftest import SAMPLE, local_settings

SECRET = "every-dialect-secret-5"
API_KEY = "audiohook-api-key-1"
CLIENT_SECRET = base64.b64encode(b"audiohook client secret, 32 byte").decode()
BASIC = {"username": "pbx", "password": SECRET}
TOKEN = {"token": SECRET}
AUTH: dict[str, tuple[str, dict[str, str]]] = {
    "twilio": ("signature", {"auth_token": SECRET}),
    "signalwire": ("token", TOKEN),
    "telnyx": ("token", TOKEN),
    "plivo": ("token", TOKEN),
    "exotel": ("basic", BASIC),
    "audiohook": ("audiohook", {API_KEY: CLIENT_SECRET}),
    "asterisk": ("basic", BASIC),
    "freeswitch": ("basic", BASIC),
    "jambonz": ("basic", BASIC),
    "vonage": ("token", TOKEN),
}
CALLER = [["hello", "account", "balance"], ["card", "payment", "seven"]]


def authenticated(engine: str, **audiohook_options: Any) -> Settings:
    dialects = {
        name: DialectSettings(
            auth=scheme,
            secrets=secrets,
            options=audiohook_options if name == "audiohook" else {},
        )
        for name, (scheme, secrets) in AUTH.items()
    }
    return replace(local_settings(engine), dialects=dialects)


def test_every_dialect_has_a_simulator() -> None:
    assert sorted(ENCODERS) == sorted(AUTH)


@pytest.mark.parametrize("dialect", sorted(AUTH))
async def test_no_credentials_no_recognition(bridge: Any, dialect: str) -> None:
    app, got = await bridge(engine="tones", settings=authenticated("tones", refusal_delay_ms=0))
    with pytest.raises(InvalidStatus) as refused:
        await simulate_pcm(app.url(f"/{dialect}"), bytes(3200), fast=True, dialect=dialect)
    assert refused.value.response.status_code == 401
    assert app.embedded is not None and app.embedded.stats.sessions_opened == 0
    assert got.events == []


async def test_audiohook_probe_hold_and_pings(bridge: Any) -> None:
    app, got = await bridge(engine="tones", settings=authenticated("tones"))
    auth = ClientAuth(*AUTH["audiohook"])
    pcm = synthesize_script(CALLER, pause_ms=1500)
    report = await simulate_pcm(
        app.url("/audiohook"), pcm, fast=True, dialect="audiohook", auth=auth,
        gap_at_s=1.8, gap_s=0.5,
    )  # fmt: skip
    assert report.close_code == 1000 and report.close_reason == "session closed"
    kinds = [m for m in report.received if '"type":"pong"' in m]
    assert kinds, "pings every 5 s of audio are answered"
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    assert [str(e.data["text"]) for e in got.of(call_id, "final")] == [" ".join(u) for u in CALLER]
    assert [e.type for e in got.of(call_id) if e.type in ("paused", "resumed")] == [
        "paused",
        "resumed",
    ]
    probe = await simulate_pcm(
        app.url("/audiohook"), pcm, encoder=make_encoder("audiohook", auth=auth, probe=True)
    )
    assert probe.close_code == 1000 and probe.frames_sent == 0
    assert app.embedded is not None and app.embedded.stats.sessions_opened == 1
    assert len(got.calls()) == 1  # the probe stored nothing


def signed_headers(url: str, nonce: str, secret: str = CLIENT_SECRET) -> dict[str, str]:
    parts = urlsplit(url)
    client = AudioHookClient(api_key=API_KEY, client_secret=secret)
    return client.upgrade_headers(
        request_target=parts.path, authority=parts.netloc, now=time.time(), nonce=nonce
    )


async def status_of(url: str, headers: dict[str, str]) -> int:
    try:
        async with connect(url, additional_headers=headers, open_timeout=10):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_signed_audiohook_upgrade_valid_forged_replayed(bridge: Any) -> None:
    app, got = await bridge(engine="tones", settings=authenticated("tones"))
    url = app.url("/audiohook")
    nonce = "n" * 24
    assert await status_of(url, signed_headers(url, nonce)) == 101
    assert await status_of(url, signed_headers(url, nonce)) == 401  # replayed
    forged = base64.b64encode(b"not the client secret, 32 bytes!").decode()
    assert await status_of(url, signed_headers(url, "f" * 24, forged)) == 401
    assert app.embedded is not None and app.embedded.stats.sessions_opened == 0
    assert got.events == []
    assert app.server is not None
    metrics = app.server.metrics.upgrades_refused
    assert metrics == {
        ("audiohook", "signature replayed"): 1,
        ("audiohook", "invalid credentials"): 1,
    }


async def test_held_back_refusal_does_not_block_other_calls(bridge: Any) -> None:
    app, got = await bridge(engine="tones", settings=authenticated("tones", refusal_delay_ms=3000))
    url = app.url("/audiohook")
    refused = asyncio.create_task(status_of(url, {"x-api-key": "unknown"}))
    await asyncio.sleep(0)
    auth = ClientAuth(*AUTH["audiohook"])
    report = await simulate_pcm(
        url, synthesize_script(CALLER), fast=True, dialect="audiohook", auth=auth
    )
    assert report.close_code == 1000
    await got.wait_ended(1, timeout=60)
    assert not refused.done()  # still held back while a whole call went through
    refused.cancel()


CLOSES_SOCKET = {"plivo", "asterisk", "freeswitch", "jambonz", "vonage"}


@pytest.mark.parametrize("dialect", sorted(AUTH))
async def test_exact_words_and_who_closes(bridge: Any, dialect: str) -> None:
    """Platforms that hang up by closing the socket close at once after the audio; the others
    say goodbye in their protocol and the bridge closes."""
    app, got = await bridge(engine="tones", settings=authenticated("tones"))
    pcm = synthesize_script(CALLER, pause_ms=1200)
    report = await simulate_pcm(
        app.url(f"/{dialect}"), pcm, fast=True, dialect=dialect, auth=ClientAuth(*AUTH[dialect])
    )
    assert report.close_code == 1000
    assert report.closed_by_server is (dialect not in CLOSES_SOCKET)
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    assert [str(e.data["text"]) for e in got.of(call_id, "final")] == [" ".join(u) for u in CALLER]


async def test_subprotocol_is_chosen_per_route(bridge: Any) -> None:
    app, _ = await bridge(engine="tones")
    offer = [Subprotocol("audio.jambonz.org"), Subprotocol("audio.drachtio.org")]
    async with connect(app.url("/jambonz"), subprotocols=offer) as ws:
        assert ws.subprotocol == "audio.jambonz.org"
    async with connect(app.url("/freeswitch"), subprotocols=offer) as ws:
        assert ws.subprotocol == "audio.drachtio.org"
    async with connect(app.url("/vonage"), subprotocols=offer) as ws:
        assert ws.subprotocol is None


async def test_cli_simulates_the_audiohook_probe_signed(bridge: Any) -> None:
    app, got = await bridge(engine="tones", settings=authenticated("tones"))
    argv = ["simulate", "--url", app.url("/audiohook"), "--dialect", "audiohook", "--probe",
            "--auth", "audiohook", "--api-key", API_KEY, "--client-secret", CLIENT_SECRET,
            str(SAMPLE)]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr_bridge", *argv, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    assert "simulated Genesys AudioHook call" in out.decode()
    assert app.server is not None and app.server.metrics.upgrades_refused == {}
    assert app.embedded is not None and app.embedded.stats.sessions_opened == 0
    assert got.events == []
    metrics = await asyncio.to_thread(
        lambda: (
            urllib.request.urlopen(app.url("/metrics").replace("ws://", "http://")).read().decode()
        )
    )
    line = 'ivr_bridge_dialect_factory_total{dialect="audiohook",counter="signature_accepted"} 1'
    assert line in metrics
