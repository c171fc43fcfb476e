"""SpeechKit credentials as gRPC metadata: API key, static IAM token, or service-account key.

A service-account authorized key is exchanged for short-lived IAM tokens (PS256 JWT ->
``POST /iam/v1/tokens``), because long-lived keys must never travel with every call and IAM
tokens expire (at most 12 h).

The token schedule (when a token is usable, due for renewal, or may be retried after a
failure) is pure and lives in :mod:`ivr_bridge.recognition.token_schedule`; this module adds
the exchange itself and the locking around it:

* Single flight: one ``asyncio.Lock`` guards the exchange. Callers that arrive while it runs
  and hold no usable token wait and share its outcome (success or the same error); callers
  that still have a usable token do not wait at all.
* A failed proactive refresh keeps the old token and retries after the backoff. Without a
  usable token, the last error is re-raised during the backoff instead of hammering IAM once
  per call.
* ``refresh()`` (after UNAUTHENTICATED) drops the current token and exchanges at once, but a
  burst of such calls shortly after a forced refresh shares that one new token.
* The HTTP client is injectable (:class:`TokenHttpClient`, which ``httpx.AsyncClient``
  satisfies), so tests and embedders can supply their own transport.

Secrets (API key, IAM token, JWT, private key) appear in no ``repr``, ``str``, log record or
exception message; ``describe()`` gives a summary that is safe to log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from base64 import urlsafe_b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx
import structlog
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.errors import (
    ConfigError,
    RecognitionError,
    RecognitionRejected,
    RecognitionUnavailable,
)
from ivr_bridge.recognition.token_schedule import (
    ExpirySource,
    Step,
    TokenTiming,
    TokenWindow,
    is_usable,
    next_step,
    recently_forced,
    retry_at,
    window_for,
)

log = structlog.get_logger(__name__)

IAM_TOKEN_URL = "https://iam.api.cloud.yandex.net/iam/v1/tokens"  # noqa: S105 - a URL
# The JWT audience is fixed by IAM, whatever URL the exchange is sent to (proxy, test fake).
JWT_AUDIENCE = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
JWT_LIFETIME_S = 3600  # IAM refuses exp - iat > 3600

MAX_KEY_FILE_BYTES = 1 << 20  # authorized keys are ~3 KB; refuse to slurp anything huge

CONFIG_API_KEY = "speechkit.api_key"
CONFIG_IAM_TOKEN = "speechkit.iam_token"  # noqa: S105 - a config key name
CONFIG_KEY_FILE = "speechkit.service_account_key_file"
CONFIG_KEY_JSON = "speechkit.service_account_key_json"
CONFIG_TOKEN_URL = "speechkit.token_url"  # noqa: S105 - a config key name

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_HEADER_SAFE = re.compile(r"[!-~]+")  # printable ASCII, no spaces: a valid metadata value
_RFC3339 = re.compile(
    r"(?P<base>\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d)(?:\.(?P<frac>\d+))?(?P<tz>[Zz]|[+-]\d\d:\d\d)"
)


@runtime_checkable
class Credentials(Protocol):
    """What the SpeechKit client needs: metadata per call, and a way to recover from 401."""

    async def metadata(self) -> list[tuple[str, str]]:
        """gRPC metadata for one call: ``[("authorization", "Api-Key ..." | "Bearer ...")]``."""
        ...

    async def refresh(self) -> bool:
        """Force new credentials after UNAUTHENTICATED; False when that cannot help."""
        ...

    async def aclose(self) -> None:
        """Release network resources (HTTP client)."""
        ...

    def describe(self) -> str:
        """A summary that is safe to log: kind and non-secret identifiers only."""
        ...


def fingerprint(secret: str) -> str:
    """Short SHA-256 fingerprint: lets operators tell two secrets apart without seeing them."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:8]


def _short_id(value: str) -> str:
    """Cloud ids are not secret, but logs only need enough to recognise one."""
    if len(value) <= 8:
        return value
    return f"{value[:3]}…{value[-4:]}"


def _check_header_value(value: str, what: str) -> str:
    if not isinstance(value, str) or not _HEADER_SAFE.fullmatch(value):
        # Never quote the value: it is a secret, and a typo in it is still a secret.
        raise ValueError(f"{what} is empty or contains whitespace or non-ASCII characters")
    return value


class ApiKeyCredentials:
    """A service-account API key: static, so a refresh cannot help after UNAUTHENTICATED."""

    __slots__ = ("_key",)

    def __init__(self, key: str) -> None:
        self._key = _check_header_value(key, "API key")

    async def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Api-Key {self._key}")]

    async def refresh(self) -> bool:
        return False

    async def aclose(self) -> None:
        return None

    def describe(self) -> str:
        return f"API key {fingerprint(self._key)}"

    def __repr__(self) -> str:
        return f"ApiKeyCredentials({fingerprint(self._key)})"

    __str__ = __repr__


class StaticIamToken:
    """An IAM token obtained elsewhere (e.g. by a sidecar); the bridge cannot renew it."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        self._token = _check_header_value(token, "IAM token")

    async def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self._token}")]

    async def refresh(self) -> bool:
        return False

    async def aclose(self) -> None:
        return None

    def describe(self) -> str:
        return f"static IAM token {fingerprint(self._token)}"

    def __repr__(self) -> str:
        return f"StaticIamToken({fingerprint(self._token)})"

    __str__ = __repr__


# ---- service-account authorized key ----------------------------------------------------


class AuthorizedKey:
    """A parsed ``yc iam key create`` JSON. The private key is loaded once and never shown."""

    __slots__ = ("_private_key", "id", "service_account_id")

    def __init__(
        self, key_id: str, service_account_id: str, private_key: rsa.RSAPrivateKey
    ) -> None:
        self.id = key_id
        self.service_account_id = service_account_id
        self._private_key = private_key

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, config_key: str = CONFIG_KEY_FILE
    ) -> AuthorizedKey:
        """Validate the three fields IAM needs; errors name the field, never its value."""
        if not isinstance(data, Mapping):
            raise ConfigError(config_key, "authorized key must be a JSON object")
        values: dict[str, str] = {}
        for name in ("id", "service_account_id", "private_key"):
            value = data.get(name)
            if value is None:
                hint = (
                    " (user-account keys are not supported)"
                    if name == "service_account_id" and "user_account_id" in data
                    else ""
                )
                raise ConfigError(config_key, f"authorized key has no field {name!r}{hint}")
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(config_key, f"authorized key field {name!r} must be a string")
            values[name] = value.strip()
        for name in ("id", "service_account_id"):
            if not _HEADER_SAFE.fullmatch(values[name]):
                raise ConfigError(config_key, f"authorized key field {name!r} is malformed")
        private_key = _load_private_key(values["private_key"], config_key)
        return cls(values["id"], values["service_account_id"], private_key)

    @classmethod
    def from_json(cls, text: str | bytes, *, config_key: str = CONFIG_KEY_JSON) -> AuthorizedKey:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            # exc.msg and the position are safe; str(exc) is too, but the document is not.
            raise ConfigError(
                config_key,
                f"authorized key is not valid JSON ({exc.msg} at line {exc.lineno} "
                f"column {exc.colno})",
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(config_key, "authorized key is not UTF-8 text") from None
        return cls.from_mapping(data, config_key=config_key)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, config_key: str = CONFIG_KEY_FILE
    ) -> AuthorizedKey:
        p = Path(path)
        try:
            with p.open("rb") as fh:
                raw = fh.read(MAX_KEY_FILE_BYTES + 1)
        except OSError as exc:
            raise ConfigError(
                config_key, f"cannot read {str(p)!r}: {exc.strerror or type(exc).__name__}"
            ) from None
        if len(raw) > MAX_KEY_FILE_BYTES:
            raise ConfigError(config_key, f"{str(p)!r} is too large to be an authorized key")
        return cls.from_json(raw, config_key=config_key)

    @classmethod
    def load(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any],
        *,
        config_key: str = CONFIG_KEY_FILE,
    ) -> AuthorizedKey:
        """A dict, a JSON document (starts with ``{``), or a path to a key file."""
        if isinstance(source, Mapping):
            return cls.from_mapping(source, config_key=config_key)
        if isinstance(source, str) and source.lstrip().startswith("{"):
            return cls.from_json(source, config_key=config_key)
        return cls.from_file(source, config_key=config_key)

    def sign_jwt(self, now_wall: float, *, lifetime_s: int = JWT_LIFETIME_S) -> str:
        """PS256 JWT for the IAM exchange (RSASSA-PSS, SHA-256, MGF1-SHA-256, 32-byte salt)."""
        iat = int(now_wall)
        header = {"typ": "JWT", "alg": "PS256", "kid": self.id}
        claims = {
            "iss": self.service_account_id,
            "aud": JWT_AUDIENCE,
            "iat": iat,
            "exp": iat + min(lifetime_s, JWT_LIFETIME_S),
        }
        signing_input = f"{_b64url_json(header)}.{_b64url_json(claims)}".encode("ascii")
        signature = self._private_key.sign(
            signing_input,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
            hashes.SHA256(),
        )
        return f"{signing_input.decode('ascii')}.{_b64url(signature)}"

    def __repr__(self) -> str:
        return (
            f"AuthorizedKey(id={_short_id(self.id)!r}, "
            f"service_account_id={_short_id(self.service_account_id)!r}, private_key=<redacted>)"
        )

    __str__ = __repr__


def _b64url(data: bytes) -> str:
    return urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_json(obj: Mapping[str, Any]) -> str:
    return _b64url(json.dumps(obj, separators=(",", ":"), sort_keys=False).encode())


def _load_private_key(pem: str, config_key: str) -> rsa.RSAPrivateKey:
    # yc prefixes the PEM with "PLEASE DO NOT REMOVE THIS LINE! Yandex.Cloud SA Key ID <id>".
    start = pem.find("-----BEGIN")
    if start < 0:
        raise ConfigError(config_key, "authorized key field 'private_key' is not a PEM key")
    try:
        key = serialization.load_pem_private_key(pem[start:].encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        # The library's message may describe the key's content; keep only our own words.
        raise ConfigError(
            config_key,
            "authorized key field 'private_key' is not an unencrypted PKCS#8 PEM private key",
        ) from None
    except Exception as exc:  # UnsupportedAlgorithm and friends
        raise ConfigError(
            config_key,
            f"authorized key field 'private_key' cannot be loaded ({type(exc).__name__})",
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(config_key, "authorized key field 'private_key' is not an RSA key")
    return key


def check_token_url(url: str) -> str:
    """The JWT is a bearer credential for an hour: only https, or http to this machine (tests)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
        return url
    raise ValueError("token_url must be an https:// URL (http:// only for a loopback host)")


def parse_rfc3339(value: str) -> float:
    """RFC 3339 to epoch seconds; IAM sends nanoseconds, which datetime cannot hold."""
    m = _RFC3339.fullmatch(value.strip())
    if m is None:
        raise ValueError("not an RFC 3339 timestamp")
    frac = (m.group("frac") or "0")[:6].ljust(6, "0")
    tz = m.group("tz")
    tz = "+00:00" if tz in ("Z", "z") else tz
    return datetime.fromisoformat(f"{m.group('base').replace(' ', 'T')}.{frac}{tz}").timestamp()


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    window: TokenWindow

    def __repr__(self) -> str:
        return f"_Token({fingerprint(self.value)}, usable_until={self.window.usable_until:.0f})"


class TokenHttpClient(Protocol):
    """The one HTTP call the exchange makes; ``httpx.AsyncClient`` fits as it is."""

    async def post(self, url: str, *, json: Any) -> httpx.Response:
        """POST ``json`` to ``url``; raise ``httpx.HTTPError`` when no answer arrives."""
        ...

    async def aclose(self) -> None:
        """Release connections; called once by :meth:`ServiceAccountKeyCredentials.aclose`."""
        ...


class ServiceAccountKeyCredentials:
    """Service-account authorized key -> cached, proactively refreshed IAM tokens.

    Call :meth:`metadata` before each recognition call, :meth:`refresh` after SpeechKit says
    UNAUTHENTICATED, and :meth:`aclose` once at shutdown (it also closes an injected client).
    ``timing`` replaces the whole schedule; without it, ``refresh_after_s`` adjusts the
    default one. ``http_timeout_s`` bounds each exchange on the injected clock.
    """

    def __init__(
        self,
        key: AuthorizedKey,
        *,
        token_url: str = IAM_TOKEN_URL,
        clock: Clock = SYSTEM_CLOCK,
        refresh_after_s: float = 3600,
        http_timeout_s: float = 10,
        http_client: TokenHttpClient | None = None,
        timing: TokenTiming | None = None,
    ) -> None:
        if refresh_after_s <= 0:
            raise ValueError("refresh_after_s must be positive")
        if http_timeout_s <= 0:
            raise ValueError("http_timeout_s must be positive")
        self._key = key
        self._token_url = check_token_url(token_url)
        self._clock = clock
        self._timing = timing or TokenTiming(refresh_after_s=float(refresh_after_s))
        self._http_timeout_s = float(http_timeout_s)
        self._http: TokenHttpClient | None = http_client
        self._lock = asyncio.Lock()
        self._token: _Token | None = None
        self._attempts = 0  # completed exchanges; lets lock waiters see they missed one
        self._failures = 0  # consecutive failures, for the backoff
        self._retry_at = float("-inf")
        self._last_error: RecognitionError | None = None
        self._closed = False
        self.exchanges = 0  # successful exchanges, for metrics and tests
        # Bound per call, not here: logging may be configured after credentials are built.
        self._key_id = _short_id(key.id)

    # ---- Credentials ------------------------------------------------------------------

    async def metadata(self) -> list[tuple[str, str]]:
        token = await self._current()
        return [("authorization", f"Bearer {token.value}")]

    async def refresh(self) -> bool:
        """Drop the token SpeechKit refused and get another; coalesces a burst of callers."""
        seen = self._token
        async with self._lock:
            now = self._clock.now()
            cur = self._token
            if cur is not None and (
                cur is not seen or recently_forced(cur.window, now, self._timing)
            ):
                return True  # someone just replaced the token: retry with that one
            self._token = None
            try:
                await self._exchange_locked(forced=True)
            except RecognitionRejected as exc:
                log.warning("iam_token_refresh_refused", key_id=self._key_id, status=exc.status)
                return False
            except RecognitionUnavailable as exc:
                # IAM is unreachable, not refusing: the caller's retry (with backoff) may work.
                log.warning("iam_token_refresh_unavailable", key_id=self._key_id, status=exc.status)
                return True
            return True

    async def aclose(self) -> None:
        self._closed = True
        if self._http is not None:
            client, self._http = self._http, None
            await client.aclose()

    def describe(self) -> str:
        host = urlsplit(self._token_url).netloc or self._token_url
        return (
            f"service-account key id={_short_id(self._key.id)} "
            f"sa={_short_id(self._key.service_account_id)} -> IAM token via {host}"
        )

    def __repr__(self) -> str:
        return f"ServiceAccountKeyCredentials({self.describe()!r})"

    __str__ = __repr__

    # ---- token cache ------------------------------------------------------------------

    def _usable(self, now: float) -> _Token | None:
        tok = self._token
        return tok if tok is not None and is_usable(tok.window, now) else None

    def _step(self, now: float) -> Step:
        window = self._token.window if self._token is not None else None
        return next_step(window, now, retry_at=self._retry_at, failed=self._last_error is not None)

    async def _current(self) -> _Token:
        if self._closed:
            raise RuntimeError("credentials are closed")
        now = self._clock.now()
        tok = self._usable(now)
        # Fast path, and no waiting behind a refresh while the old token still works.
        if tok is not None and (self._step(now) is Step.USE or self._lock.locked()):
            return tok
        seen_attempts = self._attempts
        async with self._lock:
            now = self._clock.now()
            tok = self._usable(now)
            step = self._step(now)
            if tok is not None and step is Step.USE:
                return tok
            # An exchange failed while we waited, or we are backing off: share its error.
            if self._last_error is not None and (
                step is Step.FAIL_FAST or (tok is None and self._attempts != seen_attempts)
            ):
                raise _copy_error(self._last_error)
            try:
                return await self._exchange_locked(forced=False)
            except RecognitionError as exc:
                old = self._usable(self._clock.now())
                if old is None:
                    raise
                log.warning(
                    "iam_token_refresh_failed_keeping_old",
                    key_id=self._key_id,
                    status=exc.status,
                    retry_in_s=round(self._retry_at - self._clock.now(), 3),
                    old_usable_for_s=round(old.window.usable_until - self._clock.now(), 1),
                )
                return old

    async def _exchange_locked(self, *, forced: bool) -> _Token:
        """One JWT -> IAM token exchange; records the outcome for backoff and lock waiters."""
        try:
            value, expires_wall = await self._exchange()
        except RecognitionError as exc:
            self._attempts += 1
            self._failures += 1
            self._retry_at = retry_at(self._clock.now(), self._failures, self._timing)
            self._last_error = exc
            raise
        self._attempts += 1
        self._failures = 0
        self._retry_at = float("-inf")
        self._last_error = None
        now = self._clock.now()
        window = window_for(
            now=now,
            wall=self._clock.wall(),
            expires_wall=expires_wall,
            forced=forced,
            timing=self._timing,
        )
        if window.source is ExpirySource.MISSING:
            log.warning(
                "iam_token_without_expiry",
                key_id=self._key_id,
                assumed_lifetime_s=window.lifetime_s,
            )
        elif window.source is ExpirySource.PAST:
            assert expires_wall is not None  # PAST is only ever derived from an expiry
            log.warning(
                "iam_token_expiry_in_past_check_clock",
                key_id=self._key_id,
                skew_s=round(self._clock.wall() - expires_wall, 1),
                assumed_lifetime_s=window.lifetime_s,
            )
        token = _Token(value=value, window=window)
        self._token = token
        self.exchanges += 1
        log.info(
            "iam_token_obtained",
            key_id=self._key_id,
            fingerprint=fingerprint(value),
            expires_in_s=round(window.lifetime_s),
            refresh_in_s=round(window.refresh_at - now),
            forced=forced,
        )
        return token

    def _client(self) -> TokenHttpClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=self._http_timeout_s,
                follow_redirects=False,
                headers={"user-agent": "ivr-bridge"},
            )
        return self._http

    async def _exchange(self) -> tuple[str, float | None]:
        if self._closed:
            raise RuntimeError("credentials are closed")
        jwt = self._key.sign_jwt(self._clock.wall())
        client = self._client()
        started = self._clock.now()
        try:
            response = await self._clock.wait_for(
                client.post(self._token_url, json={"jwt": jwt}), self._http_timeout_s
            )
        except TimeoutError:
            log.warning("iam_token_exchange_failed", key_id=self._key_id, error="TimeoutError")
            raise RecognitionUnavailable(
                "UNAVAILABLE", "IAM token exchange failed: TimeoutError"
            ) from None
        except httpx.HTTPError as exc:
            # httpx messages can carry URLs and request details; the class name is enough.
            log.warning("iam_token_exchange_failed", key_id=self._key_id, error=type(exc).__name__)
            raise RecognitionUnavailable(
                "UNAVAILABLE", f"IAM token exchange failed: {type(exc).__name__}"
            ) from None
        elapsed_ms = round((self._clock.now() - started) * 1000)
        status = response.status_code
        if status >= 500 or status in (408, 429):
            log.warning(
                "iam_token_exchange_failed", key_id=self._key_id, http_status=status, ms=elapsed_ms
            )
            raise RecognitionUnavailable(
                "UNAVAILABLE", f"IAM token exchange: HTTP {status}{_iam_message(response, jwt)}"
            )
        if not 200 <= status < 300:
            log.warning(
                "iam_token_exchange_refused", key_id=self._key_id, http_status=status, ms=elapsed_ms
            )
            raise RecognitionRejected(
                "UNAUTHENTICATED",
                f"IAM refused the service-account key: HTTP {status}{_iam_message(response, jwt)}",
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        value = body.get("iamToken") if isinstance(body, dict) else None
        if not isinstance(value, str) or not _HEADER_SAFE.fullmatch(value):
            log.warning("iam_token_exchange_malformed", key_id=self._key_id, http_status=status)
            raise RecognitionUnavailable("UNAVAILABLE", "IAM token exchange: malformed response")
        expires_wall: float | None = None
        raw_expiry = body.get("expiresAt") if isinstance(body, dict) else None
        if isinstance(raw_expiry, str):
            try:
                expires_wall = parse_rfc3339(raw_expiry)
            except ValueError:
                expires_wall = None
        return value, expires_wall


def _iam_message(response: httpx.Response, jwt: str) -> str:
    """IAM's own error text helps ("key not found"); cap it and make sure no JWT rides along."""
    try:
        body = response.json()
    except ValueError:
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message:
        return ""
    message = message.replace(jwt, "<jwt>")
    return f" ({message[:160]})"


def _copy_error(err: RecognitionError) -> RecognitionError:
    """A fresh exception per waiter, so tracebacks of different tasks do not pile up."""
    return type(err)(err.status, err.message)


# ---- settings ---------------------------------------------------------------------------


def credentials_from_settings(
    *,
    api_key: str | None,
    iam_token: str | None,
    service_account_key_file: str | None,
    service_account_key_json: str | None,
    token_url: str,
    clock: Clock,
) -> Credentials | None:
    """Exactly one credential source, or None (the caller then runs without credentials)."""
    given = [
        name
        for name, value in (
            (CONFIG_API_KEY, api_key),
            (CONFIG_IAM_TOKEN, iam_token),
            (CONFIG_KEY_FILE, service_account_key_file),
            (CONFIG_KEY_JSON, service_account_key_json),
        )
        if value
    ]
    if not given:
        return None
    if len(given) > 1:
        raise ConfigError(
            given[0], f"conflicts with {', '.join(given[1:])}: configure exactly one credential"
        )
    try:
        if api_key:
            return ApiKeyCredentials(api_key)
        if iam_token:
            return StaticIamToken(iam_token)
    except ValueError as exc:
        raise ConfigError(given[0], str(exc)) from None
    if service_account_key_file:
        key = AuthorizedKey.from_file(service_account_key_file, config_key=CONFIG_KEY_FILE)
    else:
        assert service_account_key_json is not None
        key = AuthorizedKey.from_json(service_account_key_json, config_key=CONFIG_KEY_JSON)
    try:
        return ServiceAccountKeyCredentials(key, token_url=token_url, clock=clock)
    except ValueError as exc:
        raise ConfigError(CONFIG_TOKEN_URL, str(exc)) from None
