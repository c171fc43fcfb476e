"""The embedded recognizer over a real gRPC connection: statuses, stats, auth, the engine.

The rules themselves are tested with plain messages in test_rules.py; these tests check
that the server turns them into gRPC statuses and counts them.
"""

from __future__ import annotations

import grpc
import pytest

from ivr_bridge.local import rules
from ivr_bridge.local import server as srv
from ivr_bridge.local.engine import EngineEvent, EngineOptions, EngineSession, register_engine
from tests.local.conftest import StartFn, chunk, eou, options, silence

SILENCE_1S = bytes(16000)  # 1 s of 8 kHz PCM16 zeros


async def test_first_message_must_be_session_options(start_local: StartFn) -> None:
    rec, client = await start_local(engine="tones")
    out = await client.run([chunk(SILENCE_1S), options()])
    assert out.code == grpc.StatusCode.INVALID_ARGUMENT
    assert out.details == rules.MSG_OPTIONS_FIRST
    assert rec.stats.ended == {"INVALID_ARGUMENT": 1}


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
async def test_supported_rates_and_channel_count_zero(start_local: StartFn, rate: int) -> None:
    _, client = await start_local()
    one_second = bytes(2 * rate)
    out = await client.run([options(rate, channels=0), chunk(one_second), silence(500)])
    assert out.code == grpc.StatusCode.OK, out.details
    assert out.events() == []  # silence: no results, no end of utterance


async def test_eou_with_external_classifier_ends_the_utterance_at_received_time(
    start_local: StartFn,
) -> None:
    _, client = await start_local()
    out = await client.run([options(external_eou=True), chunk(SILENCE_1S), silence(250), eou()])
    assert out.code == grpc.StatusCode.OK
    [update] = out.of("eou_update")
    assert update.eou_update.time_ms == 1250
    assert update.audio_cursors.eou_time_ms == 1250
    assert update.audio_cursors.received_data_ms == 1250


# ---- authentication ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "code", "details"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED, rules.MSG_NO_AUTH),
        (
            (("authorization", "Api-Key wrong"),),
            grpc.StatusCode.UNAUTHENTICATED,
            rules.MSG_BAD_AUTH,
        ),
        ((("authorization", "Basic s3cret"),), grpc.StatusCode.UNAUTHENTICATED, rules.MSG_BAD_AUTH),
        ((("authorization", "Api-Key s3cret"),), grpc.StatusCode.OK, ""),
        ((("authorization", "Bearer s3cret"),), grpc.StatusCode.OK, ""),
    ],
    ids=["missing", "wrong-key", "wrong-scheme", "api-key", "bearer"],
)
async def test_api_key(
    start_local: StartFn,
    metadata: tuple[tuple[str, str], ...],
    code: grpc.StatusCode,
    details: str,
) -> None:
    rec, client = await start_local(api_key="s3cret", engine="tones")
    # Even an invalid first message is not looked at before the credentials.
    first = options() if code == grpc.StatusCode.OK else chunk(bytes(3))
    out = await client.run([first, chunk(SILENCE_1S)], metadata=metadata)
    assert out.code == code
    assert out.details == details
    assert rec.stats.ended == {code.name: 1}


# ---- responses --------------------------------------------------------------------------


async def test_session_uuid_request_id_and_stats(start_local: StartFn) -> None:
    rec, client = await start_local()
    out = await client.run(
        [options(external_eou=True), chunk(SILENCE_1S), eou()],
        metadata=[("x-client-request-id", "req-42")],
    )
    assert out.code == grpc.StatusCode.OK
    assert out.responses
    uuids = {r.session_uuid.uuid for r in out.responses}
    assert len(uuids) == 1 and len(uuids.pop()) == 36
    assert {r.session_uuid.user_request_id for r in out.responses} == {"req-42"}
    assert all(r.response_wall_time_ms > 1_600_000_000_000 for r in out.responses)
    assert rec.stats.sessions_opened == 1
    assert rec.stats.sessions_active == 0
    assert rec.stats.ended == {"OK": 1}
    assert rec.stats.audio_ms == 1000


async def test_unknown_engine_is_a_config_error() -> None:
    from ivr_bridge.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown engine 'nope'"):
        srv.EmbeddedSpeechKitServer(srv.EmbeddedServerConfig(engine="nope"))


async def test_address_and_restart(start_local: StartFn) -> None:
    rec, _ = await start_local()
    host, port = rec.address.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) == rec.port > 0
    await rec.stop()
    await rec.stop()  # idempotent


class _BrokenSession:
    processed_ms = 0
    final_time_ms = 0

    def feed(self, pcm: bytes) -> list[EngineEvent]:
        raise RuntimeError("decoder exploded")

    def add_silence(self, duration_ms: int) -> list[EngineEvent]:
        return []

    def force_endpoint(self) -> list[EngineEvent]:
        return []

    def finish(self) -> list[EngineEvent]:
        return []

    def close(self) -> None:
        pass


class _BrokenEngine:
    name = "broken"
    parallel = False

    def open_session(self, options: EngineOptions) -> EngineSession:
        return _BrokenSession()

    def warm_up(self) -> None:
        pass


async def test_engine_failure_is_internal(start_local: StartFn) -> None:
    register_engine("test-broken", _BrokenEngine)
    rec, client = await start_local(engine="test-broken")
    out = await client.run([options(), silence(100), chunk(SILENCE_1S)])
    assert out.code == grpc.StatusCode.INTERNAL
    assert out.details == rules.MSG_ENGINE
    assert rec.stats.ended == {"INTERNAL": 1}


def test_builtin_engines_resolve_by_name() -> None:
    from ivr_bridge.local.engine import available_engines, get_engine

    assert {"pocketsphinx", "tones"} <= set(available_engines())
    assert get_engine("tones").name == "tones"
    assert get_engine("pocketsphinx") is get_engine("pocketsphinx")  # one per process


def test_workers_setting() -> None:
    import os

    from ivr_bridge.config import EmbeddedSettings, load_settings
    from ivr_bridge.errors import ConfigError

    assert EmbeddedSettings().workers == (os.cpu_count() or 1)
    assert load_settings(env={"IVR_BRIDGE_EMBEDDED_WORKERS": "0"}).embedded.workers == 0
    with pytest.raises(ConfigError, match=r"embedded\.workers"):
        load_settings(env={"IVR_BRIDGE_EMBEDDED_WORKERS": "-1"})
    with pytest.raises(ConfigError, match=r"embedded\.workers"):
        srv.EmbeddedServerConfig(workers=-2)
    assert srv.EmbeddedServerConfig().workers == 0  # the class decodes in-process by default
