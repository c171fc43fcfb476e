"""Registers the embedded recognizer's services besides v3 streaming on its gRPC server.

One place, so ``server.py`` needs a single call and each API stays in its own module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ivr_bridge.local.v2_streaming import add_v2_streaming

if TYPE_CHECKING:
    from ivr_bridge.local.server import LocalRecognizer


def add_other_services(owner: LocalRecognizer, server: Any) -> None:
    """Add SpeechKit v2 streaming to ``server`` (served by ``owner``'s sessions)."""
    add_v2_streaming(owner, server)
