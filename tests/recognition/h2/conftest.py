"""The h2 client's tests run on both event loops: asyncio's, and uvloop, which the service
runs on by default (``ivr-bridge serve``); transports, TLS and write buffering differ."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Mapping

import pytest

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, LoopFactory]:
    factories: dict[str, LoopFactory] = {"asyncio": asyncio.new_event_loop}
    if importlib.util.find_spec("uvloop") is not None:  # a dev dependency, not on Windows
        import uvloop

        factories["uvloop"] = uvloop.new_event_loop
    return factories
