from __future__ import annotations

from pathlib import Path

import pytest

from ivr_bridge.app import choose_recognizer
from ivr_bridge.config import load_settings
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
