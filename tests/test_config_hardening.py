"""The slot, readiness and TLS settings: defaults, ranges, and both-or-neither TLS files."""

from __future__ import annotations

from typing import Any

import pytest

from ivr_bridge.app import call_options_from
from ivr_bridge.config import ServerSettings, Settings, load_settings
from ivr_bridge.errors import ConfigError


def test_defaults_reach_the_call_options() -> None:
    options = call_options_from(Settings())
    assert options.start_timeout_s == 5.0
    assert (options.message_rate_per_s, options.message_burst) == (20.0, 100)
    assert Settings().server.max_connections_per_ip == 0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("start_timeout_s", 0.0),
        ("start_timeout_s", -1.0),
        ("message_rate_per_s", -1.0),
        ("message_burst", 0),
        ("max_connections_per_ip", -1),
        ("ready_recognizer_grace_s", -5.0),
    ],
)
def test_out_of_range_values_name_the_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        Settings(server=ServerSettings(**{key: value}))
    assert info.value.key == f"server.{key}"


@pytest.mark.parametrize(
    ("cert", "key", "missing"), [("c.pem", "", "tls_key"), ("", "k.pem", "tls_cert")]
)
def test_tls_needs_both_files(cert: str, key: str, missing: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings(server=ServerSettings(tls_cert=cert, tls_key=key))
    assert info.value.key == f"server.{missing}"


def test_environment_sets_the_new_keys() -> None:
    env = {
        "IVR_BRIDGE_SERVER_START_TIMEOUT_S": "2.5",
        "IVR_BRIDGE_SERVER_MAX_CONNECTIONS_PER_IP": "40",
        "IVR_BRIDGE_SERVER_MESSAGE_RATE_PER_S": "0",
    }
    server = load_settings(None, env).server
    assert (server.start_timeout_s, server.max_connections_per_ip) == (2.5, 40)
    assert server.message_rate_per_s == 0  # no limit
