"""AudioHook upgrade authentication: X-API-KEY plus HTTP Message Signatures (RFC 9421, HMAC).

Genesys signs the websocket upgrade with the integration's client secret. The signature covers
``@request-target``, ``@authority``, the three ``audiohook-*`` headers and ``x-api-key``; its
parameters are ``keyid`` (= the API key), ``nonce``, ``alg`` ("hmac-sha256"), ``created`` and
``expires``. :class:`AudioHookVerifier` checks all of that before the bridge accepts the socket,
so an unauthenticated peer never reaches recognition (nothing is billed for it):

* the API key must be one we know (compared in constant time; an unknown key still costs one
  HMAC with a dummy key, so timing does not tell whether it exists);
* the signature must cover every required component, use only hmac-sha256, carry a nonce of at
  least 22 characters, be no older than 10 s (3 s of clock skew allowed), not created in the
  future and not expired, and match in constant time;
* a nonce is accepted once: :class:`NonceCache` remembers it for the signature's lifetime, in
  bounded memory (evictions are counted).

Only the parts of RFC 8941 structured fields that signatures use are parsed (a dictionary of
inner lists and byte sequences with parameters), and strictly: anything else refuses the
upgrade. The signature base is rebuilt from the parsed values, never copied from the header.
The same code signs (:func:`sign_headers`) for the client simulator and the known-answer tests.

Pure: no I/O, no clock reads (``now`` is an argument), no logging of credentials.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from ivr_bridge.dialects.base import UpgradeRefused, UpgradeRequest
from ivr_bridge.errors import ConfigError

REQUIRED_COMPONENTS: Final = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
ALGORITHM: Final = "hmac-sha256"
MIN_NONCE_CHARS: Final = 22
MAX_AGE_S: Final = 10
CLOCK_SKEW_S: Final = 3
_SIGNATURE_PARAMS: Final = frozenset({"keyid", "nonce", "alg", "created", "expires"})
_DERIVED: Final = frozenset({"@request-target", "@authority", "@method", "@path", "@query"})
_MAX_HEADER_CHARS: Final = 4096  # far beyond a real Signature-Input; bounds the parser's work

# ---- RFC 8941 structured fields (the subset signatures use) -----------------------------------

Bare = str | int | bool | bytes


@dataclass(frozen=True, slots=True)
class Token:
    """An sf-token (kept apart from strings: they serialise differently)."""

    value: str


BareItem = Bare | Token
Params = tuple[tuple[str, BareItem], ...]


@dataclass(frozen=True, slots=True)
class Item:
    value: BareItem
    params: Params = ()


@dataclass(frozen=True, slots=True)
class InnerList:
    items: tuple[Item, ...]
    params: Params = ()


class _Malformed(ValueError):
    """A structured field that does not parse; becomes a 400 with a fixed reason."""


_KEY_RE: Final = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN_RE: Final = re.compile(r"[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*")
_INT_RE: Final = re.compile(r"-?[0-9]{1,15}")
_B64_RE: Final = re.compile(r"[A-Za-z0-9+/=]*")


class _Parser:
    def __init__(self, text: str) -> None:
        if len(text) > _MAX_HEADER_CHARS or not text.isascii():
            raise _Malformed("header too long or not ascii")
        self.text = text
        self.pos = 0

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _skip_sp(self) -> None:
        while self._peek() == " ":
            self.pos += 1

    def _skip_ows(self) -> None:
        while self._peek() in (" ", "\t"):
            self.pos += 1

    def _expect(self, char: str) -> None:
        if self._peek() != char:
            raise _Malformed(f"expected {char!r}")
        self.pos += 1

    def _match(self, pattern: re.Pattern[str]) -> str:
        found = pattern.match(self.text, self.pos)
        if found is None or not found.group():
            raise _Malformed("unexpected character")
        self.pos = found.end()
        return found.group()

    def dictionary(self) -> dict[str, Item | InnerList]:
        out: dict[str, Item | InnerList] = {}
        self._skip_sp()
        while self.pos < len(self.text):
            key = self._match(_KEY_RE)
            if self._peek() == "=":
                self.pos += 1
                member: Item | InnerList = self._member()
            else:
                member = Item(True, self._params())
            if key in out:
                # RFC 8941 keeps the last one; for a signature that is ambiguity we refuse.
                raise _Malformed("duplicate dictionary key")
            out[key] = member
            self._skip_ows()
            if self.pos == len(self.text):
                return out
            self._expect(",")
            self._skip_ows()
            if self.pos == len(self.text):
                raise _Malformed("trailing comma")
        return out

    def _member(self) -> Item | InnerList:
        if self._peek() == "(":
            return self._inner_list()
        return Item(self._bare(), self._params())

    def _inner_list(self) -> InnerList:
        self._expect("(")
        items: list[Item] = []
        while True:
            self._skip_sp()
            if self._peek() == ")":
                self.pos += 1
                return InnerList(tuple(items), self._params())
            items.append(Item(self._bare(), self._params()))
            if self._peek() not in (" ", ")"):
                raise _Malformed("bad inner list")

    def _params(self) -> Params:
        out: list[tuple[str, BareItem]] = []
        while self._peek() == ";":
            self.pos += 1
            self._skip_sp()
            key = self._match(_KEY_RE)
            value: BareItem = True
            if self._peek() == "=":
                self.pos += 1
                value = self._bare()
            if any(k == key for k, _ in out):
                raise _Malformed("duplicate parameter")
            out.append((key, value))
        return tuple(out)

    def _bare(self) -> BareItem:
        char = self._peek()
        if char == '"':
            return self._string()
        if char == ":":
            self.pos += 1
            encoded = self._match(_B64_RE) if self._peek() != ":" else ""
            self._expect(":")
            try:
                return base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise _Malformed("bad byte sequence") from None
        if char == "?":
            self.pos += 1
            flag = self._match(re.compile(r"[01]"))
            return flag == "1"
        if char == "-" or char.isdigit():
            text = self._match(_INT_RE)
            if self._peek() == ".":
                raise _Malformed("decimals are not used in signatures")
            return int(text)
        return Token(self._match(_TOKEN_RE))

    def _string(self) -> str:
        self._expect('"')
        out: list[str] = []
        while True:
            char = self._peek()
            if not char:
                raise _Malformed("unterminated string")
            self.pos += 1
            if char == '"':
                return "".join(out)
            if char == "\\":
                escaped = self._peek()
                if escaped not in ('"', "\\") or not escaped:
                    raise _Malformed("bad escape")
                self.pos += 1
                out.append(escaped)
            elif not (" " <= char <= "~"):
                raise _Malformed("bad string character")
            else:
                out.append(char)


def parse_dictionary(text: str) -> dict[str, Item | InnerList]:
    """Parse an RFC 8941 dictionary (the subset above). Raises ValueError when malformed."""
    return _Parser(text.strip(" \t")).dictionary()


def _serialize_bare(value: BareItem) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    if isinstance(value, Token):
        return value.value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _serialize_params(params: Params) -> str:
    return "".join(
        f";{key}" if value is True else f";{key}={_serialize_bare(value)}" for key, value in params
    )


def serialize_inner_list(inner: InnerList) -> str:
    items = " ".join(_serialize_bare(i.value) + _serialize_params(i.params) for i in inner.items)
    return f"({items}){_serialize_params(inner.params)}"


# ---- signature base ---------------------------------------------------------------------------


def canonical_field_value(values: Sequence[str]) -> str:
    """RFC 9421 2.1: trim each value, fold obsolete line folding, join repeats with ', '."""
    return ", ".join(re.sub(r"[ \t]*\r\n[ \t]+", " ", v.strip(" \t")) for v in values)


def signature_base(components: Sequence[tuple[str, str]], signature_params: InnerList) -> str:
    """The signed text: one ``"name": value`` line per covered component, then the params."""
    lines = [f'"{name}": {value}' for name, value in components]
    lines.append(f'"@signature-params": {serialize_inner_list(signature_params)}')
    return "\n".join(lines)


def hmac_sha256(key: bytes, text: str) -> bytes:
    # surrogatepass: a hostile header value must fail the compare, never raise here.
    return hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def decode_client_secret(secret: str) -> bytes:
    """Genesys shows the client secret base64-encoded; the HMAC key is the decoded bytes."""
    try:
        return base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("client secret is not base64") from None


def sign_headers(
    *,
    key: bytes,
    key_id: str,
    components: Sequence[tuple[str, str]],
    nonce: str,
    created: int,
    expires: int,
    label: str = "sig1",
) -> dict[str, str]:
    """``Signature-Input`` and ``Signature`` for ``components`` (names lower-case, in order)."""
    params: Params = (
        ("keyid", key_id),
        ("nonce", nonce),
        ("alg", ALGORITHM),
        ("created", created),
        ("expires", expires),
    )
    inner = InnerList(tuple(Item(name) for name, _ in components), params)
    mac = hmac_sha256(key, signature_base(components, inner))
    return {
        "signature-input": f"{label}={serialize_inner_list(inner)}",
        "signature": f"{label}=:{base64.b64encode(mac).decode('ascii')}:",
    }


def request_components(request: UpgradeRequest) -> tuple[str, str]:
    """(@request-target, @authority) as the client signed them.

    Taken from ``request.url`` (the configured public URL, so a proxy that rewrites Host does
    not break verification) when the server filled it in, else from the path and Host header.
    """
    if request.url:
        parts = urlsplit(request.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return target, parts.netloc.lower()
    target = request.path + (f"?{request.query_string}" if request.query_string else "")
    return target, (request.header("host") or "").lower()


# ---- replay protection ------------------------------------------------------------------------


@dataclass
class NonceCache:
    """Remembers nonces until their signature could no longer be accepted; bounded."""

    capacity: int = 65536
    evictions: int = 0  # nonces forgotten early because the cache was full
    _seen: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, nonce: str, now: float, until: float) -> bool:
        """True the first time ``nonce`` is offered (then remembered until ``until``)."""
        while self._seen:
            oldest, expiry = next(iter(self._seen.items()))
            if expiry > now:
                break
            del self._seen[oldest]
        if nonce in self._seen:
            return False
        if len(self._seen) >= self.capacity:
            self._seen.popitem(last=False)
            self.evictions += 1
        self._seen[nonce] = until
        return True


# ---- the verifier -------------------------------------------------------------------------------


@dataclass
class AuthCounters:
    accepted: int = 0
    refused: int = 0
    replayed: int = 0
    expired: int = 0


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Who was let in: the API key's position in the configuration (never the key itself)."""

    key_index: int
    signed: bool


def _refuse(status: int, reason: str) -> UpgradeRefused:
    return UpgradeRefused(status, reason)


class AudioHookVerifier:
    """Checks one upgrade's X-API-KEY and signature. One per factory (it owns the nonce cache).

    ``keys`` maps API key -> base64 client secret. An empty secret means "this key may connect
    unsigned", honoured only when ``allow_unsigned`` is set (Genesys allows integrations without
    a secret; a production bridge should not).
    """

    def __init__(
        self,
        keys: Mapping[str, str],
        *,
        allow_unsigned: bool = False,
        max_age_s: int = MAX_AGE_S,
        clock_skew_s: int = CLOCK_SKEW_S,
        nonce_capacity: int = 65536,
    ) -> None:
        if not keys:
            raise ConfigError("secrets", "audiohook auth needs at least one API key")
        self._keys: list[tuple[bytes, bytes | None]] = []
        for api_key, secret in keys.items():
            if not api_key:
                raise ConfigError("secrets", "an API key is empty")
            try:
                decoded = decode_client_secret(secret) if secret else None
            except ValueError:
                raise ConfigError("secrets", "a client secret is not base64") from None
            self._keys.append((api_key.encode("utf-8"), decoded))
        self._allow_unsigned = allow_unsigned
        self._max_age = max_age_s
        self._skew = clock_skew_s
        self.nonces = NonceCache(capacity=nonce_capacity)
        self.counters = AuthCounters()
        self._dummy_key = secrets.token_bytes(32)

    def verify(self, request: UpgradeRequest) -> AuthResult:
        """Return who connected, or raise UpgradeRefused (401 bad credentials, 400 malformed)."""
        try:
            result = self._verify(request)
        except UpgradeRefused as refused:
            self.counters.refused += 1
            if refused.reason == "signature expired":
                self.counters.expired += 1
            elif refused.reason == "signature replayed":
                self.counters.replayed += 1
            raise
        self.counters.accepted += 1
        return result

    def _lookup(self, api_key: str) -> tuple[int, bytes | None] | None:
        wanted = api_key.encode("utf-8", "surrogateescape")
        found: tuple[int, bytes | None] | None = None
        for index, (known, secret) in enumerate(self._keys):
            # Every configured key is compared, so the time taken does not depend on which.
            if hmac.compare_digest(known, wanted) and found is None:
                found = (index, secret)
        return found

    def _verify(self, request: UpgradeRequest) -> AuthResult:
        api_key = request.header("x-api-key")
        if not api_key:
            raise _refuse(401, "missing api key")
        known = self._lookup(api_key)
        sig_input = request.header("signature-input")
        sig = request.header("signature")
        if sig_input is None and sig is None:
            if known is not None and known[1] is None and self._allow_unsigned:
                return AuthResult(known[0], signed=False)
            raise _refuse(401, "unsigned request")
        if sig_input is None or sig is None:
            raise _refuse(400, "malformed signature")
        try:
            inputs = parse_dictionary(sig_input)
            signatures = parse_dictionary(sig)
        except ValueError:
            raise _refuse(400, "malformed signature") from None
        if len(inputs) != 1:
            raise _refuse(400, "malformed signature")
        label, inner = next(iter(inputs.items()))
        mac_item = signatures.get(label)
        if not isinstance(inner, InnerList) or not isinstance(mac_item, Item):
            raise _refuse(400, "malformed signature")
        if not isinstance(mac_item.value, bytes) or mac_item.params:
            raise _refuse(400, "malformed signature")
        params = self._signature_params(inner)
        if params.get("keyid") != api_key:
            raise _refuse(401, "invalid credentials")
        created = params.get("created")
        expires = params.get("expires")
        nonce = params.get("nonce")
        if not isinstance(created, int) or (expires is not None and not isinstance(expires, int)):
            raise _refuse(400, "malformed signature")
        if not isinstance(nonce, str) or len(nonce) < MIN_NONCE_CHARS:
            raise _refuse(401, "nonce missing or too short")
        if params.get("alg", ALGORITHM) != ALGORITHM:
            raise _refuse(401, "unsupported signature algorithm")
        now = request.now
        if created > now + self._skew:
            raise _refuse(401, "signature created in the future")
        if created + self._max_age < now - self._skew or (
            isinstance(expires, int) and expires < now - self._skew
        ):
            raise _refuse(401, "signature expired")
        components = self._components(request, inner)
        key = known[1] if known is not None and known[1] is not None else self._dummy_key
        expected = hmac_sha256(key, signature_base(components, inner))
        matches = hmac.compare_digest(expected, mac_item.value)
        if not matches or known is None or known[1] is None:
            raise _refuse(401, "invalid credentials")
        until = float(created + self._max_age + 2 * self._skew)
        if isinstance(expires, int):
            until = min(until, float(expires + self._skew))
        if not self.nonces.check_and_add(f"{known[0]}:{nonce}", now, until):
            raise _refuse(401, "signature replayed")
        return AuthResult(known[0], signed=True)

    @staticmethod
    def _signature_params(inner: InnerList) -> dict[str, BareItem]:
        params: dict[str, BareItem] = {}
        for key, value in inner.params:
            if key not in _SIGNATURE_PARAMS:
                raise _refuse(400, "malformed signature")
            if key in ("created", "expires"):
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise _refuse(400, "malformed signature")
            elif not isinstance(value, str):
                raise _refuse(400, "malformed signature")
            params[key] = value
        return params

    @staticmethod
    def _components(request: UpgradeRequest, inner: InnerList) -> list[tuple[str, str]]:
        target, authority = request_components(request)
        out: list[tuple[str, str]] = []
        for item in inner.items:
            name = item.value
            if not isinstance(name, str) or item.params or name != name.lower():
                raise _refuse(400, "malformed signature")
            if any(existing == name for existing, _ in out):
                raise _refuse(400, "malformed signature")
            out.append((name, _component_value(request, name, target, authority)))
        covered = {name for name, _ in out}
        if not covered.issuperset(REQUIRED_COMPONENTS):
            raise _refuse(401, "signature does not cover the required headers")
        return out


def _component_value(request: UpgradeRequest, name: str, target: str, authority: str) -> str:
    if name.startswith("@"):
        if name not in _DERIVED:
            raise _refuse(400, "malformed signature")
        path, _, query = target.partition("?")
        derived = {
            "@request-target": target,
            "@authority": authority,
            "@method": "GET",
            "@path": path,
            "@query": "?" + query,
        }[name]
        if not derived:
            raise _refuse(400, "signed header missing")
        return derived
    values = [v for k, v in request.header_list if k.lower() == name] or (
        [request.headers[name]] if name in request.headers else []
    )
    if not values:
        raise _refuse(400, "signed header missing")
    return canonical_field_value(values)
