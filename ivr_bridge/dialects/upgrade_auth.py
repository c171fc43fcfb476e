"""Checks a dialect factory runs on the websocket upgrade, before any recognition session.

Pure functions over an :class:`UpgradeRequest`: Twilio's ``X-Twilio-Signature`` (HMAC-SHA1
over the URL the platform called), a shared token (``Authorization: Bearer``, a platform's own
header, or a ``token`` query parameter where the platform cannot set headers), and HTTP Basic
credentials. Every comparison is constant-time. A refusal is an :class:`UpgradeRefused` with
401 (nothing offered) or 403 (offered and wrong) and a fixed reason that never quotes what was
sent. :func:`require_secrets` is the start-up check that a scheme has what it needs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from ivr_bridge.dialects.base import DialectSettings, UpgradeRefused, UpgradeRequest
from ivr_bridge.errors import ConfigError

# What each scheme needs in DialectSettings.secrets.
SCHEME_SECRETS: Final = {
    "none": (),
    "signature": ("auth_token",),
    "token": ("token",),
    "basic": ("username", "password"),
}
_DEFAULT_PORTS: Final = {"wss": 443, "https": 443, "ws": 80, "http": 80}


def equal(given: str, expected: str) -> bool:
    """Constant-time string comparison (as bytes, so any text compares safely)."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def require_secrets(name: str, settings: DialectSettings, schemes: Sequence[str]) -> None:
    """Start-up check: the scheme is one this dialect supports and its secrets are set."""
    if settings.auth not in schemes:
        raise ConfigError(f"dialects.{name}.auth", f"supported: {', '.join(schemes)}")
    for key in SCHEME_SECRETS.get(settings.auth, ()):
        if not settings.secrets.get(key):
            env = f"IVR_BRIDGE_DIALECTS_{name.upper()}_{key.upper()}"
            raise ConfigError(f"dialects.{name}.secrets.{key}", f"required (or set {env})")


# ---- Twilio's request signature ---------------------------------------------------------


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """base64(HMAC-SHA1(auth token, URL + each POST parameter name and value, sorted))."""
    data = url + "".join(k + v for k, v in sorted((params or {}).items()))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _port_variants(url: str) -> list[str]:
    """The URL as given, and with its default port added or removed (Twilio signs either)."""
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    if default is None or not parts.hostname:
        return [url]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port is None:
        other = parts._replace(netloc=f"{host}:{default}")
    elif parts.port == default:
        other = parts._replace(netloc=host)
    else:
        return [url]
    return [url, urlunsplit(other)]


def check_twilio_signature(request: UpgradeRequest, auth_token: str) -> None:
    """Refuse unless ``X-Twilio-Signature`` signs ``request.url`` with ``auth_token``.

    A websocket upgrade is a GET with no body, so the signed string is the URL alone.
    """
    given = request.header("x-twilio-signature")
    if not given:
        raise UpgradeRefused(401, "signature required")
    ok = False
    for url in _port_variants(request.url):
        ok |= equal(given, twilio_signature(auth_token, url))
    if not ok:
        raise UpgradeRefused(403, "signature mismatch")


# ---- shared tokens and basic credentials ------------------------------------------------


def bearer(request: UpgradeRequest) -> str | None:
    value = request.header("authorization")
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None


def check_token(
    request: UpgradeRequest,
    token: str,
    *,
    header: str | None = None,
    query: bool = False,
) -> None:
    """Refuse unless a bearer token, the platform's ``header`` or (if ``query``) the ``token``
    query parameter equals ``token``. Every offered value is compared, in constant time."""
    offered = [bearer(request)]
    if header is not None:
        offered.append(request.header(header))
    if query:
        offered.append(request.query_value("token"))
    values = [v for v in offered if v]
    if not values:
        raise UpgradeRefused(401, "token required")
    ok = False
    for value in values:
        ok |= equal(value, token)
    if not ok:
        raise UpgradeRefused(403, "token mismatch")


def check_basic(request: UpgradeRequest, username: str, password: str) -> None:
    """Refuse unless ``Authorization: Basic`` carries exactly these credentials."""
    value = request.header("authorization")
    if not value or value[:6].lower() != "basic ":
        raise UpgradeRefused(401, "credentials required")
    try:
        decoded = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise UpgradeRefused(403, "credentials mismatch") from None
    user, _, secret = decoded.partition(":")
    ok = equal(user, username) & equal(secret, password)
    if not ok:
        raise UpgradeRefused(403, "credentials mismatch")


def check_shared_secret(
    request: UpgradeRequest,
    settings: DialectSettings,
    *,
    header: str | None = None,
    query: bool = False,
) -> None:
    """Apply ``settings.auth`` ("none", "token" or "basic") to the request."""
    if settings.auth == "token":
        check_token(request, settings.secrets["token"], header=header, query=query)
    elif settings.auth == "basic":
        check_basic(request, settings.secrets["username"], settings.secrets["password"])
