"""Asterisk, FreeSWITCH, jambonz and Vonage end to end over real websockets on port 0.

Each platform's client speaks, frame by frame, to the real bridge (BridgeServer routes the
dialect registry: auth on the upgrade, jambonz's subprotocol negotiated) and the embedded
recognizer's "tones" engine, so transcripts compare word for word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge.config import Settings
from ivr_bridge.dialects.asterisk_client import AsteriskClient
from ivr_bridge.dialects.base import DialectSettings
from ivr_bridge.dialects.freeswitch_client import AudioForkClient
from ivr_bridge.dialects.vonage_client import VonageClient
from ivr_bridge.local.tones import synthesize_script
from tests.integration.conftest import local_settings

CALLER = [["hello", "account", "balance"], ["card", "payment", "seven"]]
AGENT = [["thanks", "help", "agent"]]
SECRET = "e2e-shared-secret"


def settings() -> Settings:
    return replace(
        local_settings("tones"),
        dialects={
            "asterisk": DialectSettings(
                auth="basic", secrets={"username": "asterisk", "password": SECRET}
            ),
            "jambonz": DialectSettings(
                auth="basic", secrets={"username": "jambonz", "password": SECRET}
            ),
            "vonage": DialectSettings(auth="token", secrets={"token": SECRET}),
        },
    )


async def play(url: str, frames: Sequence[str | bytes], **kw: Any) -> None:
    async with connect(url, compression=None, **kw) as ws:
        for frame in frames:
            await ws.send(frame)


def finals(got: Any, call_id: str, channel: str) -> list[str]:
    return [str(e.data["text"]) for e in got.of(call_id, "final") if e.channel == channel]


async def test_asterisk_slin16_json_control(bridge: Any) -> None:
    app, got = await bridge(engine="tones", settings=settings())
    client = AsteriskClient(media_format="slin16", control_format="json",
                            channel_variables={"LANG": "en"})  # fmt: skip
    frames: list[str | bytes] = [
        client.media_start(),
        client.dtmf("4"),
        *client.media_frames(synthesize_script(CALLER, rate=16000), 16000),
    ]
    headers = client.upgrade_headers(username="asterisk", password=SECRET)
    await play(app.url("/asterisk"), frames, additional_headers=headers)
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    started = got.of(call_id, "call_started")[0].data
    assert started["sample_rate"] == 16000 and started["metadata"]["variable.LANG"] == "en"
    assert finals(got, call_id, "caller") == [" ".join(u) for u in CALLER]
    assert [d.data["digit"] for d in got.of(call_id, "dtmf")] == ["4"]


async def test_jambonz_stereo_gives_two_sessions(bridge: Any) -> None:
    app, got = await bridge(engine="tones", settings=settings())
    client = AudioForkClient("jambonz", sample_rate=16000, mix_type="stereo",
                             call_attributes={"from": "+15550100001"})  # fmt: skip
    left = synthesize_script(CALLER, rate=16000)
    right = bytes(16000 * 2) + synthesize_script(AGENT, rate=16000)
    frames = [client.metadata_frame(), *client.audio_frames(left, 16000, other=right),
              *client.stop_frames()]  # fmt: skip
    await play(
        app.url("/jambonz"),
        frames,
        subprotocols=[Subprotocol(client.subprotocol)],
        additional_headers=client.upgrade_headers(username="jambonz", password=SECRET),
    )
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    started = got.of(call_id, "call_started")[0].data
    assert [c["name"] for c in started["channels"]] == ["caller", "agent"]
    assert started["sample_rate"] == 16000
    assert finals(got, call_id, "caller") == [" ".join(u) for u in CALLER]
    assert finals(got, call_id, "agent") == [" ".join(u) for u in AGENT]
    assert got.of(call_id, "call_ended")[0].data["sessions_opened"] == 2


async def test_freeswitch_without_metadata_uses_the_url(bridge: Any) -> None:
    app, got = await bridge(engine="tones", settings=settings())
    client = AudioForkClient("freeswitch", sample_rate=8000)
    await play(app.url(client.upgrade_path(describe=True)), client.audio_frames(
        synthesize_script(CALLER), 8000))  # fmt: skip
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    assert finals(got, call_id, "caller") == [" ".join(u) for u in CALLER]


async def test_vonage_token_and_sixteen_khz(bridge: Any) -> None:
    app, got = await bridge(engine="tones", settings=settings())
    client = VonageClient(sample_rate=16000)
    audio = client.audio_frames(synthesize_script(CALLER, rate=16000), 16000)
    frames: list[str | bytes] = [client.connected(), *audio, client.dtmf("9")]
    await play(app.url(client.upgrade_path(token=SECRET)), frames)
    await got.wait_ended(1, timeout=60)
    (call_id,) = got.calls()
    assert got.of(call_id, "call_started")[0].data["sample_rate"] == 16000
    assert finals(got, call_id, "caller") == [" ".join(u) for u in CALLER]
    assert [d.data["digit"] for d in got.of(call_id, "dtmf")] == ["9"]


@pytest.mark.parametrize("token", [None, "forged"])
async def test_refused_upgrade_opens_no_session(bridge: Any, token: str | None) -> None:
    app, got = await bridge(engine="tones", settings=settings())
    client = VonageClient()
    with pytest.raises(InvalidStatus) as info:
        await play(app.url(client.upgrade_path(token=token)), [client.connected()])
    assert info.value.response.status_code == (401 if token is None else 403)
    assert got.events == []
    assert app.embedded is not None and app.embedded.stats.sessions_opened == 0
