from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from ivr_bridge.app import choose_recognizer
from ivr_bridge.config import ServerSettings, SessionSettings, Settings, load_settings
from ivr_bridge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
# production.toml authenticates every platform: its secrets come from the environment.
DIALECT_SECRETS = {
    "IVR_BRIDGE_DIALECTS_TWILIO_AUTH_TOKEN": "t",
    "IVR_BRIDGE_DIALECTS_SIGNALWIRE_TOKEN": "t",
    "IVR_BRIDGE_DIALECTS_TELNYX_TOKEN": "t",
    "IVR_BRIDGE_DIALECTS_PLIVO_TOKEN": "t",
    "IVR_BRIDGE_DIALECTS_EXOTEL_USERNAME": "u",
    "IVR_BRIDGE_DIALECTS_EXOTEL_PASSWORD": "p",
}


def test_shipped_configs_load() -> None:
    local = load_settings(ROOT / "configs" / "local.toml", env={})
    assert local.speechkit.languages == ("en-US",)
    assert choose_recognizer(local).embedded
    prod = load_settings(ROOT / "configs" / "production.toml", env=DIALECT_SECRETS)
    assert prod.logging.format == "json"
    assert not choose_recognizer(prod).embedded


def test_defaults_without_file() -> None:
    s = load_settings(None, env={})
    assert s.server.port == 8080 and s.session.keepalive


def test_environment_overrides_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nport = 9000\n[speechkit]\nlanguages = ["ru-RU"]\n')
    s = load_settings(
        cfg,
        env={
            "IVR_BRIDGE_SERVER_PORT": "9100",
            "IVR_BRIDGE_SPEECHKIT_API_KEY": "secret-key",
            "IVR_BRIDGE_SPEECHKIT_LANGUAGES": "ru-RU, en-US",
            "IVR_BRIDGE_SESSION_KEEPALIVE": "false",
        },
    )
    assert s.server.port == 9100
    assert s.speechkit.languages == ("ru-RU", "en-US")
    assert not s.session.keepalive
    choice = choose_recognizer(s)
    assert choice.endpoint == "stt.api.cloud.yandex.net:443" and choice.tls
    assert "secret-key" not in repr(s)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[server]\nport = 70000\n", "server.port"),
        ("[server]\nport = 'x'\n", "server.port"),
        ("[server]\nnope = 1\n", "server.nope"),
        ("[nope]\n", "nope"),
        ("server = 3\n", "server"),
        ("[speechkit]\neou_sensitivity = 'LOW'\n", "speechkit.eou_sensitivity"),
        ("[speechkit]\napi_key = 'a'\niam_token = 'b'\n", "speechkit.iam_token"),
        ("[speechkit]\nlanguages = []\n", "speechkit.languages"),
        ("[speechkit]\nlanguages = 3\n", "speechkit.languages"),
        ("[speechkit]\ntls = 'maybe'\n", "speechkit.tls"),
        ("[speechkit]\nchunk_ms = 5\n", "speechkit.chunk_ms"),
        ("[session]\nkeepalive_interval_ms = 5000\n", "session.keepalive_interval_ms"),
        ("[session]\nkeepalive_after_ms = 4000\n", "session.keepalive_after_ms"),
        ("[session]\nbuffer_s = 0.5\n", "session.buffer_s"),
        ("[session]\nbuffer_s = 'x'\n", "session.buffer_s"),
        ("[session]\nrotate_soft_s = 295\n", "session.rotate_hard_s"),
        ("[session]\nrotate_hard_bytes = 20000000\n", "session.rotate_hard_bytes"),
        ("[session]\nstall_timeout_s = 0\n", "session.stall_timeout_s"),
        ("[events]\nwebhook = 'ftp://x'\n", "events.webhook"),
        ("[events]\nqueue_size = 1\n", "events.queue_size"),
        ("[logging]\nlevel = 'loud'\n", "logging.level"),
        ("[logging]\nformat = 'xml'\n", "logging.format"),
        ("[server]\nmax_message_bytes = 10\n", "server.max_message_bytes"),
        ("[speechkit]\ntransport = 'bogus'\n", "speechkit.transport"),
        ("[speechkit]\nwrite_coalesce_ms = 51\n", "speechkit.write_coalesce_ms"),
        ("[speechkit]\nwrite_coalesce_ms = -1\n", "speechkit.write_coalesce_ms"),
        ("[server\n", "--config"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, env={})
    assert info.value.key == key


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings("/nonexistent/file.toml", env={})


def test_production_config_requires_platform_secrets() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(ROOT / "configs" / "production.toml", env={})
    assert info.value.key == "dialects.twilio.secrets.auth_token"
    assert "IVR_BRIDGE_DIALECTS_TWILIO_AUTH_TOKEN" in info.value.problem


def test_local_config_serves_every_dialect_without_auth() -> None:
    from ivr_bridge.dialects.registry import SPECS, build_routes

    local = load_settings(ROOT / "configs" / "local.toml", env={})
    routes = build_routes(local.dialects)
    assert sorted(routes) == sorted(spec.default_path for spec in SPECS)
    assert {route.auth for route in routes.values()} == {"none"}


def test_dialect_sections_and_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "d.toml"
    cfg.write_text(
        '[dialects.twilio]\nauth = "signature"\npath = "/pbx/twilio"\n'
        'allowed_origins = ["https://console.example"]\n'
        "[dialects.telnyx]\nenabled = false\n"
        '[dialects.plivo]\noptions = { l16_byte_order = "big" }\n'
    )
    s = load_settings(
        cfg,
        env={
            "IVR_BRIDGE_DIALECTS_TWILIO_AUTH_TOKEN": "tok",
            "IVR_BRIDGE_DIALECTS_EXOTEL_AUTH": "basic",
            "IVR_BRIDGE_DIALECTS_EXOTEL_USERNAME": "u",
            "IVR_BRIDGE_DIALECTS_EXOTEL_PASSWORD": "p",
        },
    )
    twilio = s.dialects["twilio"]
    assert (twilio.auth, twilio.path, dict(twilio.secrets)) == (
        "signature",
        "/pbx/twilio",
        {"auth_token": "tok"},
    )
    assert twilio.allowed_origins == ("https://console.example",)
    assert not s.dialects["telnyx"].enabled
    assert s.dialects["plivo"].options == {"l16_byte_order": "big"}
    assert s.dialects["exotel"].auth == "basic"


@pytest.mark.parametrize(
    ("text", "env", "key"),
    [
        ("[dialects.nosuch]\nauth = 'none'\n", {}, "dialects.nosuch"),
        ("[dialects.twilio]\ncolour = 'red'\n", {}, "dialects.twilio.colour"),
        ("[dialects.twilio]\nauth = 'token'\n", {}, "dialects.twilio.auth"),
        ("[dialects.telnyx]\nauth = 'token'\n", {}, "dialects.telnyx.secrets.token"),
        ("[dialects.exotel]\nauth = 'basic'\n", {}, "dialects.exotel.secrets.username"),
        ("[dialects.twilio]\npath = 'twilio'\n", {}, "dialects.twilio.path"),
        ("[dialects.plivo]\npath = '/twilio'\n", {}, "dialects.plivo.path"),
        ("[dialects.telnyx]\noptions = { tracks = ['left'] }\n", {}, "dialects.telnyx.options"),
        ("[dialects.telnyx]\noptions = { l16_byte_order = 'middle' }\n", {}, "dialects.telnyx"),
        ("[dialects.twilio]\nsecrets = { auth_token = 5 }\n", {}, "dialects.twilio.secrets"),
        ("[dialects.twilio]\nenabled = 'maybe'\n", {}, "dialects.twilio.enabled"),
        ("dialects = 5\n", {}, "dialects"),
        ("[dialects]\ntwilio = 5\n", {}, "dialects.twilio"),
        ("[server]\npublic_url = 'example.com'\n", {}, "server.public_url"),
    ],
)
def test_bad_dialect_config_names_the_key(
    tmp_path: Path, text: str, env: dict[str, str], key: str
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, env=env)
    assert info.value.key.startswith(key), info.value.key


# ---- ranges and relations (each of these once passed check-config and broke the service) ----


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[server]\nopen_timeout_s = 0\n", "server.open_timeout_s"),
        ("[server]\nopen_timeout_s = -1\n", "server.open_timeout_s"),
        ("[server]\nmax_calls = 0\n", "server.max_calls"),
        ("[server]\nmax_calls = -5\n", "server.max_calls"),
        ("[server]\nping_timeout_s = -1\n", "server.ping_timeout_s"),
        ("[server]\nping_timeout_s = 0\n", "server.ping_timeout_s"),
        ("[server]\nping_interval_s = 0\n", "server.ping_interval_s"),
        ("[server]\ndrain_timeout_s = 0\n", "server.drain_timeout_s"),
        ("[server]\nmedia_inactivity_timeout_s = -1\n", "server.media_inactivity_timeout_s"),
        ("[server]\nmax_message_bytes = 1000000000\n", "server.max_message_bytes"),
        ("[server]\nhost = ''\n", "server.host"),
        ("[server]\nhost = 'my host'\n", "server.host"),
        ("[session]\ndrain_timeout_s = 0\n", "session.drain_timeout_s"),
        ("[session]\ndrain_timeout_s = -3\n", "session.drain_timeout_s"),
        ("[session]\nrotate_soft_s = 1\nrotate_hard_s = 1\n", "session.rotate_hard_s"),
        ("[session]\nrotate_soft_s = 200\nrotate_hard_s = 200\n", "session.rotate_hard_s"),
        ("[session]\nrotate_soft_s = 280\nrotate_hard_s = 270\n", "session.rotate_hard_s"),
        ("[session]\nrotate_hard_s = 300\n", "session.rotate_hard_s"),
        ("[session]\nrotate_soft_bytes = 9800000\n", "session.rotate_hard_bytes"),
        ("[session]\nrotate_soft_bytes = 10\n", "session.rotate_hard_bytes"),
        ("[session]\nbackoff_max_s = 0\n", "session.backoff_max_s"),
        ("[session]\nbackoff_initial_s = -1\n", "session.backoff_initial_s"),
        ("[session]\nbackoff_initial_s = 0\n", "session.backoff_initial_s"),
        ("[session]\nbackoff_initial_s = 5\nbackoff_max_s = 1\n", "session.backoff_max_s"),
        ("[session]\nbackoff_max_s = 100000\n", "session.backoff_max_s"),
        ("[session]\nmax_replay_s = 0\n", "session.max_replay_s"),
        ("[session]\nstall_timeout_s = -1\n", "session.stall_timeout_s"),
        ("[events]\nwebhook_timeout_s = 0\n", "events.webhook_timeout_s"),
        ("[speechkit]\ntoken_url = 'http://iam.example.com/'\n", "speechkit.token_url"),
        (
            "[speechkit]\nmax_pause_between_words_hint_ms = -1\n",
            "speechkit.max_pause_between_words_hint_ms",
        ),
        ("[embedded]\nport = 70000\n", "embedded.port"),
        ("[embedded]\nengine = ''\n", "embedded.engine"),
    ],
)
def test_ranges_and_relations(tmp_path: Path, text: str, key: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, env={})
    assert info.value.key == key


def test_environment_values_are_validated_too() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"IVR_BRIDGE_SERVER_MAX_CALLS": "0"})
    assert info.value.key == "server.max_calls"


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: Settings(server=ServerSettings(max_calls=0)), "server.max_calls"),
        (lambda: Settings(server=ServerSettings(open_timeout_s=0)), "server.open_timeout_s"),
        (
            lambda: Settings(session=SessionSettings(rotate_soft_s=60, rotate_hard_s=60)),
            "session.rotate_hard_s",
        ),
        (lambda: Settings(session=SessionSettings(backoff_max_s=0.1)), "session.backoff_max_s"),
        (
            lambda: replace(Settings(), server=ServerSettings(drain_timeout_s=-1)),
            "server.drain_timeout_s",
        ),
    ],
)
def test_settings_built_in_code_are_validated(build: Callable[[], Settings], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.key == key


def test_edges_that_are_allowed() -> None:
    s = Settings(
        server=ServerSettings(port=0, max_calls=1, media_inactivity_timeout_s=0),
        session=SessionSettings(
            rotate_soft_s=10, rotate_hard_s=299.9, backoff_initial_s=2, backoff_max_s=2
        ),
    )
    assert s.server.max_calls == 1 and s.session.backoff_max_s == 2
    local = load_settings(None, env={"IVR_BRIDGE_SPEECHKIT_TOKEN_URL": "http://127.0.0.1:9/t"})
    assert local.speechkit.token_url.startswith("http://127.0.0.1")


@pytest.mark.parametrize(
    ("chunk_ms", "after_ms", "ok"),
    [(200, 4000, True), (1000, 3500, True), (1000, 3600, False), (1000, 4000, False)],
)
def test_keepalive_leaves_room_for_the_chunk_and_the_check_interval(
    tmp_path: Path, chunk_ms: int, after_ms: int, ok: bool
) -> None:
    """Quiet PBX: the rest of a chunk, then keepalive_after_ms, then up to one 250 ms check,
    and SpeechKit drops a session at 5 s: the sum must stay clear of it."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f"[speechkit]\nchunk_ms = {chunk_ms}\n"
        f"[session]\nkeepalive_after_ms = {after_ms}\nkeepalive_interval_ms = 500\n"
    )
    if ok:
        assert load_settings(cfg, env={}).session.keepalive_after_ms == after_ms
    else:
        with pytest.raises(ConfigError) as info:
            load_settings(cfg, env={})
        assert info.value.key == "session.keepalive_after_ms"
        assert "chunk_ms" in str(info.value)
