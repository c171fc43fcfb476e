"""Every dialect the bridge speaks, in one place, and the routes built from configuration.

Each dialect module exports a ``SPEC`` (:class:`~ivr_bridge.dialects.base.DialectSpec`);
:data:`SPECS` lists them. :func:`build_routes` turns the ``[dialects.NAME]`` settings into the
path -> :class:`Route` mapping that server.py serves: disabled dialects are left out, each
factory is built (and so checks its auth scheme, secrets and options) at start-up, and a
misconfiguration is a ConfigError naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ivr_bridge.dialects import (
    asterisk,
    audiohook,
    exotel,
    freeswitch,
    plivo,
    signalwire,
    telnyx,
    twilio,
    vonage,
)
from ivr_bridge.dialects.base import DialectFactory, DialectSettings, DialectSpec
from ivr_bridge.errors import ConfigError

SPECS: tuple[DialectSpec, ...] = (
    twilio.SPEC,
    signalwire.SPEC,
    telnyx.SPEC,
    plivo.SPEC,
    exotel.SPEC,
    audiohook.SPEC,
    asterisk.SPEC,
    freeswitch.SPEC,
    freeswitch.JAMBONZ_SPEC,
    vonage.SPEC,
)


@dataclass(frozen=True, slots=True)
class Route:
    """One served path: the dialect's factory and what server.py checks before calling it."""

    path: str
    name: str
    factory: DialectFactory
    auth: str = "none"
    allowed_origins: tuple[str, ...] = ()
    subprotocols: tuple[str, ...] = ()  # offered by the platform; the server echoes one


def build_routes(
    configured: Mapping[str, DialectSettings],
    specs: Sequence[DialectSpec] = SPECS,
) -> dict[str, Route]:
    """path -> Route for every enabled dialect. Raises ConfigError naming the bad key."""
    known = {spec.name for spec in specs}
    for name in configured:
        if name not in known:
            raise ConfigError(f"dialects.{name}", f"unknown dialect (known: {sorted(known)})")
    routes: dict[str, Route] = {}
    for spec in specs:
        settings = configured.get(spec.name, DialectSettings())
        if not settings.enabled:
            continue
        path = (settings.path or spec.default_path).rstrip("/")
        if not path.startswith("/") or "?" in path:
            raise ConfigError(f"dialects.{spec.name}.path", "must start with / and have no query")
        if path in routes:
            raise ConfigError(f"dialects.{spec.name}.path", f"{path} is already served")
        try:
            factory = spec.make_factory(replace(settings, path=path))
        except ConfigError as exc:
            if exc.key.startswith("dialects."):
                raise
            raise ConfigError(f"dialects.{spec.name}.{exc.key}", exc.problem) from None
        routes[path] = Route(
            path,
            spec.name,
            factory,
            settings.auth,
            settings.allowed_origins,
            spec.subprotocols,
        )
    return routes
