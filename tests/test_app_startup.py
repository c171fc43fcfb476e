"""How BridgeApp turns a failed bind into one sentence naming the setting to change."""

from __future__ import annotations

import errno
import socket

import pytest

from ivr_bridge.app import BridgeApp, _listen_error
from ivr_bridge.config import EmbeddedSettings, ServerSettings, Settings
from ivr_bridge.errors import ConfigError


@pytest.mark.parametrize(
    ("exc", "key", "problem"),
    [
        (socket.gaierror(-2, "Name or service not known"), "server.host", "cannot resolve 'h'"),
        (OSError(errno.EADDRINUSE, "in use"), "server.port", "h:80 is already in use"),
        (
            OSError(errno.EADDRNOTAVAIL, "x"),
            "server.host",
            "'h' is not an address of this machine",
        ),
        (OSError(errno.EACCES, "denied"), "server.port", "no permission to listen on port 80"),
        (OSError(errno.EMFILE, "Too many open files"), "server.host", "cannot listen on h:80: "),
    ],
)
def test_bind_failures_name_the_setting(exc: OSError, key: str, problem: str) -> None:
    err = _listen_error(exc, "server", "h", 80)
    assert err.key == key
    assert err.problem.startswith(problem)


async def test_a_failed_start_stops_what_it_started() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = BridgeApp(
            Settings(
                server=ServerSettings(host="127.0.0.1", port=port),
                embedded=EmbeddedSettings(port=0, engine="tones"),
            )
        )
        with pytest.raises(ConfigError) as info:
            await app.start()
    assert info.value.key == "server.port"
    # The embedded recognizer that had started is stopped again, nothing left running.
    assert app.embedded is None and app.bus is None and app.server is None
