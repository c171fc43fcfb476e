"""ivr-bridge: phone-call media streams to Yandex SpeechKit streaming recognition.

Dialog logic in the same process::

    import asyncio
    import ivr_bridge

    async def handler(call: ivr_bridge.CallHandle) -> None:
        async for event in call.events():
            if event.type == "final":
                await call.play("yes.wav")

    asyncio.run(ivr_bridge.serve(handler, ivr_bridge.load_settings("bridge.toml")))

The names below are imported on first use, so ``import ivr_bridge`` stays cheap (and the
command-line tools do not load the server to read ``__version__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "serve": "ivr_bridge.app",
    "BridgeApp": "ivr_bridge.app",
    "CallHandle": "ivr_bridge.handle",
    "CallGone": "ivr_bridge.handle",
    "Handler": "ivr_bridge.handle",
    "Settings": "ivr_bridge.config",
    "load_settings": "ivr_bridge.config",
    "ConfigError": "ivr_bridge.errors",
    "UtteranceEvent": "ivr_bridge.model",
    "MessageStream": "ivr_bridge.call",
    "UpgradeRequest": "ivr_bridge.dialects.base",
    "UpgradeRefused": "ivr_bridge.dialects.base",
    "UnsupportedRequest": "ivr_bridge.dialects.base",
    "CommandError": "ivr_bridge.commands",
    "WebsocketsStream": "ivr_bridge.mount",
}

__all__ = [
    "BridgeApp",
    "CallGone",
    "CallHandle",
    "CommandError",
    "ConfigError",
    "Handler",
    "MessageStream",
    "Settings",
    "UnsupportedRequest",
    "UpgradeRefused",
    "UpgradeRequest",
    "UtteranceEvent",
    "WebsocketsStream",
    "__version__",
    "load_settings",
    "serve",
]

if TYPE_CHECKING:
    from ivr_bridge.app import BridgeApp, serve
    from ivr_bridge.call import MessageStream
    from ivr_bridge.commands import CommandError
    from ivr_bridge.config import Settings, load_settings
    from ivr_bridge.dialects.base import UnsupportedRequest, UpgradeRefused, UpgradeRequest
    from ivr_bridge.errors import ConfigError
    from ivr_bridge.handle import CallGone, CallHandle, Handler
    from ivr_bridge.model import UtteranceEvent
    from ivr_bridge.mount import WebsocketsStream


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ivr_bridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
