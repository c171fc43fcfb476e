"""AudioHook upgrade authentication: known-answer vectors, then valid, expired, replayed, forged,
missing and malformed credentials, Origin, the nonce cache's bounds, and the factory."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import pytest

from ivr_bridge.dialects.audiohook import SPEC, AudioHookDialect, AudioHookFactory
from ivr_bridge.dialects.audiohook_auth import (
    AudioHookVerifier,
    InnerList,
    Item,
    NonceCache,
    hmac_sha256,
    parse_dictionary,
    request_components,
    serialize_inner_list,
    signature_base,
)
from ivr_bridge.dialects.audiohook_client import AudioHookClient
from ivr_bridge.dialects.base import DialectSettings, UpgradeRefused, UpgradeRequest
from ivr_bridge.errors import ConfigError

# AudioHook documentation "Example 1" (as used by Genesys's reference verifier tests).
EX_KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"
EX_SECRET = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
EX_HEADERS = {
    "host": "audiohook.example.com",
    "audiohook-organization-id": "d7934305-0972-4844-938e-9060eef73d05",
    "audiohook-session-id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
    "audiohook-correlation-id": "e160e428-53e2-487c-977d-96989bf5c99d",
    "x-api-key": EX_KEY,
    "signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:",
    "signature-input": 'sig1=("@request-target" "@authority" "audiohook-organization-id" '
    '"audiohook-session-id" "audiohook-correlation-id" "x-api-key");'
    'keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";'
    'alg="hmac-sha256";created=1641013200;expires=3282026430',
}
EX_PATH = "/api/v1/voicebiometrics/ws"
EX_CREATED = 1641013200

KEY = "bridge-api-key"
SECRET_B64 = base64.b64encode(b"a client secret of 32 bytes long").decode()
NOW = 1_800_000_000.0


def inner_list(member: Item | InnerList) -> InnerList:
    assert isinstance(member, InnerList)
    return member


def ex_request(now: float = EX_CREATED + 1, **headers: str) -> UpgradeRequest:
    merged = {**EX_HEADERS, **headers}
    return UpgradeRequest(path=EX_PATH, headers={k: v for k, v in merged.items() if v}, now=now)


def signed(
    now: float = NOW,
    *,
    created: float | None = None,
    secret: str = SECRET_B64,
    api_key: str = KEY,
    nonce: str | None = None,
    path: str = "/audiohook",
    host: str = "bridge.example.com",
    **override: str,
) -> UpgradeRequest:
    client = AudioHookClient(api_key=api_key, client_secret=secret)
    headers = client.upgrade_headers(
        request_target=path,
        authority=host,
        now=now if created is None else created,
        nonce=nonce,
    )
    headers = {**headers, "host": host, **override}
    return UpgradeRequest(
        path=path.split("?", maxsplit=1)[0],
        query_string=path.partition("?")[2],
        headers={k: v for k, v in headers.items() if v},
        now=now,
    )


def verifier(keys: Mapping[str, str] | None = None, **kw: Any) -> AudioHookVerifier:
    return AudioHookVerifier(keys or {KEY: SECRET_B64}, **kw)


def refused(v: AudioHookVerifier, request: UpgradeRequest, status: int) -> str:
    with pytest.raises(UpgradeRefused) as info:
        v.verify(request)
    assert info.value.status == status, info.value.reason
    for credential in (KEY, SECRET_B64, EX_KEY, EX_SECRET):
        assert credential not in info.value.reason
    return info.value.reason


# ---- known answers ----------------------------------------------------------------------------


def test_rfc9421_hmac_vector() -> None:
    # RFC 9421 appendix B.2.5 (HMAC-SHA256 over date, @authority, content-type).
    key = base64.b64decode(
        "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ=="
    )
    field = (
        'sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"'
    )
    inner = inner_list(parse_dictionary(field)["sig-b25"])
    components = [
        ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("@authority", "example.com"),
        ("content-type", "application/json"),
    ]
    mac = hmac_sha256(key, signature_base(components, inner))
    assert base64.b64encode(mac).decode() == "pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8="


def test_audiohook_documentation_example_verifies() -> None:
    v = verifier({EX_KEY: EX_SECRET})
    result = v.verify(ex_request())
    assert result.signed and result.key_index == 0


def test_audiohook_example_with_headers_in_another_order_and_repeats() -> None:
    headers = dict(reversed(list(EX_HEADERS.items())))
    request = UpgradeRequest(
        path=EX_PATH,
        headers=headers,
        header_list=tuple(headers.items()),
        now=EX_CREATED + 2,
    )
    assert verifier({EX_KEY: EX_SECRET}).verify(request).signed


def test_example_signature_changes_with_any_covered_value() -> None:
    v = verifier({EX_KEY: EX_SECRET})
    refused(v, ex_request(host="other.example.com"), 401)
    other_session: dict[str, Any] = {"audiohook-session-id": "30b0e395-84d3-4570-ac13-9a62d8f514c1"}
    refused(v, ex_request(**other_session), 401)
    bad = UpgradeRequest(path="/other", headers=EX_HEADERS, now=EX_CREATED + 1)
    refused(v, bad, 401)


def test_public_url_overrides_host_for_authority_and_target() -> None:
    request = UpgradeRequest(
        path="/internal/rewritten",
        headers={**EX_HEADERS, "host": "10.0.0.5:8080"},
        url="wss://AudioHook.Example.com" + EX_PATH,
        now=EX_CREATED + 1,
    )
    assert request_components(request) == (EX_PATH, "audiohook.example.com")
    assert verifier({EX_KEY: EX_SECRET}).verify(request).signed


# ---- valid, expired, replayed, forged, missing -------------------------------------------------


def test_valid_signature_from_the_client() -> None:
    v = verifier()
    assert v.verify(signed()).signed
    assert v.counters.accepted == 1


def test_query_string_is_part_of_the_target() -> None:
    v = verifier()
    assert v.verify(signed(path="/audiohook?tenant=7")).signed
    tampered = signed(path="/audiohook?tenant=7")
    moved = UpgradeRequest(path="/audiohook", query_string="tenant=8", headers=tampered.headers)
    refused(v, moved, 401)


@pytest.mark.parametrize(
    ("created_offset", "reason"),
    [
        (-14, "signature expired"),
        (-600, "signature expired"),
        (4, "signature created in the future"),
    ],
)
def test_freshness(created_offset: int, reason: str) -> None:
    v = verifier()
    assert refused(v, signed(created=NOW + created_offset), 401) == reason


@pytest.mark.parametrize("created_offset", [-13, -1, 0, 3])
def test_within_the_window_and_skew(created_offset: int) -> None:
    assert verifier().verify(signed(created=NOW + created_offset)).signed


def test_expires_parameter_is_honoured() -> None:
    client = AudioHookClient(api_key=KEY, client_secret=SECRET_B64)
    headers = client.upgrade_headers(
        request_target="/audiohook", authority="h", now=NOW, lifetime_s=1
    )
    late = UpgradeRequest(path="/audiohook", headers={**headers, "host": "h"}, now=NOW + 5)
    assert refused(verifier(), late, 401) == "signature expired"


def test_replay_is_refused_and_nonces_are_per_key() -> None:
    v = verifier({KEY: SECRET_B64, "other": SECRET_B64})
    request = signed(nonce="n" * 24)
    assert v.verify(request).signed
    assert refused(v, request, 401) == "signature replayed"
    assert v.verify(signed(nonce="n" * 24, api_key="other")).key_index == 1
    assert v.counters.replayed == 1
    # Once the window has passed the nonce may be forgotten; the signature is too old anyway.
    later = signed(nonce="n" * 24, now=NOW + 60)
    assert v.verify(later).signed


def test_forged_signature() -> None:
    v = verifier()
    wrong = base64.b64encode(b"another secret, same length!!!!!").decode()
    assert refused(v, signed(secret=wrong), 401) == "invalid credentials"
    good = signed()
    flipped = good.headers["signature"].replace(":", ":A", 1)[:-5] + "AAA=:"
    refused(
        v,
        UpgradeRequest(path="/audiohook", headers={**good.headers, "signature": flipped}, now=NOW),
        401,
    )


def test_unknown_key_and_keyid_mismatch() -> None:
    v = verifier()
    assert refused(v, signed(api_key="stranger"), 401) == "invalid credentials"
    request = signed()
    mismatched = {**request.headers, "x-api-key": "stranger"}
    refused(v, UpgradeRequest(path="/audiohook", headers=mismatched, now=NOW), 401)


def test_missing_credentials() -> None:
    v = verifier()
    request = signed()
    no_key = {k: v for k, v in request.headers.items() if k != "x-api-key"}
    assert refused(v, UpgradeRequest(path="/audiohook", headers=no_key, now=NOW), 401) == (
        "missing api key"
    )
    unsigned = {k: v for k, v in request.headers.items() if not k.startswith("signature")}
    assert refused(v, UpgradeRequest(path="/audiohook", headers=unsigned, now=NOW), 401) == (
        "unsigned request"
    )
    half = {k: v for k, v in request.headers.items() if k != "signature"}
    refused(v, UpgradeRequest(path="/audiohook", headers=half, now=NOW), 400)


def test_unsigned_only_for_an_empty_secret_when_allowed() -> None:
    client = AudioHookClient(api_key="open-key")
    headers = client.upgrade_headers(request_target="/audiohook", authority="h", now=NOW)
    request = UpgradeRequest(path="/audiohook", headers=headers, now=NOW)
    assert not verifier({"open-key": ""}, allow_unsigned=True).verify(request).signed
    refused(verifier({"open-key": ""}), request, 401)
    refused(verifier({"open-key": SECRET_B64}, allow_unsigned=True), request, 401)
    # A key with no secret cannot pass by signing with an empty key either.
    forged = signed(api_key="open-key", secret=base64.b64encode(b"\x00").decode())
    refused(verifier({"open-key": ""}, allow_unsigned=True), forged, 401)


def _resign(input_value: str, *, now: float = NOW, secret: str = SECRET_B64) -> UpgradeRequest:
    """A request whose Signature-Input is ``input_value``, correctly signed over it."""
    inner = inner_list(parse_dictionary(input_value)["sig1"])
    base_request = signed()
    values = {
        "@request-target": "/audiohook",
        "@authority": "bridge.example.com",
        "@method": "GET",
        **base_request.headers,
    }
    components = [(str(item.value), values.get(str(item.value), "")) for item in inner.items]
    mac = hmac_sha256(base64.b64decode(secret), signature_base(components, inner))
    headers = {
        **base_request.headers,
        "signature-input": "sig1=" + serialize_inner_list(inner),
        "signature": "sig1=:" + base64.b64encode(mac).decode() + ":",
    }
    return UpgradeRequest(path="/audiohook", headers=headers, now=now)


ALL = (
    '"@request-target" "@authority" "audiohook-organization-id" "audiohook-session-id" '
    '"audiohook-correlation-id" "x-api-key"'
)
PARAMS = (
    f'keyid="{KEY}";nonce="abcdefghijklmnopqrstuvwxyz";created={int(NOW)};expires={int(NOW) + 30}'
)


@pytest.mark.parametrize(
    ("signature_input", "status", "reason"),
    [
        (f"sig1=({ALL});{PARAMS}", 0, ""),
        (f'sig1=({ALL});{PARAMS};alg="hmac-sha256"', 0, ""),
        (f'sig1=({ALL});{PARAMS};alg="rsa-pss-sha512"', 401, "unsupported signature algorithm"),
        (
            f'sig1=("@authority" "x-api-key");{PARAMS}',
            401,
            "signature does not cover the required headers",
        ),
        (
            f'sig1=({ALL});keyid="{KEY}";nonce="short";created={int(NOW)}',
            401,
            "nonce missing or too short",
        ),
        (f'sig1=({ALL});keyid="{KEY}";created={int(NOW)}', 401, "nonce missing or too short"),
        (
            f'sig1=({ALL});keyid="{KEY}";nonce="abcdefghijklmnopqrstuvwxyz"',
            400,
            "malformed signature",
        ),
        (f'sig1=({ALL} "@method");{PARAMS}', 0, ""),
        (f'sig1=({ALL} "@status");{PARAMS}', 400, "malformed signature"),
        (f'sig1=({ALL} "x-api-key");{PARAMS}', 400, "malformed signature"),
        (f'sig1=({ALL} "x-missing");{PARAMS}', 400, "signed header missing"),
        (f'sig1=({ALL});{PARAMS};tag="x"', 400, "malformed signature"),
        (f"sig1=({ALL});{PARAMS.replace('created=', 'created=-')}", 400, "malformed signature"),
    ],
)
def test_signature_input_rules(signature_input: str, status: int, reason: str) -> None:
    request = _resign(signature_input)
    if status == 0:
        assert verifier().verify(request).signed
    else:
        assert refused(verifier(), request, status) == reason


@pytest.mark.parametrize(
    "value",
    [
        "sig1",
        "sig1=(",
        'sig1=("a" "b";x=?2)',
        "sig1=:not base64!:",
        'sig1=("a"), sig2=("b")',
        'sig1=("a"),',
        'sig1=("a");x=1;x=2',
        'sig1=("a"), sig1=("a")',
        'sig1=("a\\q")',
        'sig1=("unterminated',
        "sig1=1.5",
        "s\u00e9=1",
        "x" * 5000,
        'sig1=("a");keyid=tok',
    ],
)
def test_malformed_structured_fields_are_400(value: str) -> None:
    request = signed()
    for header in ("signature-input", "signature"):
        broken = UpgradeRequest(
            path="/audiohook", headers={**request.headers, header: value}, now=NOW
        )
        refused(verifier(), broken, 400)


def test_structured_field_round_trip() -> None:
    value = 'sig1=("@a" "b";k=1);keyid="x\\"y";n=-5;t=tok;f;b=:AQI=:'
    parsed = inner_list(parse_dictionary(value)["sig1"])
    assert (
        "sig1=" + serialize_inner_list(parsed)
        == 'sig1=("@a" "b";k=1);keyid="x\\"y";n=-5;t=tok;f;b=:AQI=:'
    )


# ---- nonce cache ------------------------------------------------------------------------------


def test_nonce_cache_is_bounded_and_forgets_expired_entries() -> None:
    cache = NonceCache(capacity=3)
    assert all(cache.check_and_add(n, now=0, until=10) for n in "abc")
    assert not cache.check_and_add("a", now=1, until=10)
    assert cache.check_and_add("d", now=1, until=10)  # full: the oldest is evicted, counted
    assert cache.evictions == 1 and len(cache) == 3
    assert cache.check_and_add("e", now=11, until=20)  # everything before expired
    assert len(cache) == 1


# ---- the factory ----------------------------------------------------------------------------


def settings(**kw: Any) -> DialectSettings:
    base: dict[str, Any] = {"path": "/audiohook", "auth": "audiohook", "secrets": {KEY: SECRET_B64}}
    base.update(kw)
    return DialectSettings(**base)


def test_spec_builds_a_factory_that_opens_dialects() -> None:
    assert SPEC.name == "audiohook" and SPEC.default_path == "/audiohook"
    factory = SPEC.make_factory(settings())
    request = signed()
    dialect = factory.open(request)
    assert isinstance(dialect, AudioHookDialect)
    assert dialect.identity.session_id == request.headers["audiohook-session-id"]
    assert dialect.identity.organization_id == request.headers["audiohook-organization-id"]


def test_factory_refusals_are_counted() -> None:
    factory = AudioHookFactory(settings())
    with pytest.raises(UpgradeRefused) as info:
        factory.open(signed(api_key="stranger"))
    assert info.value.status == 401
    with pytest.raises(UpgradeRefused) as info:
        factory.open(signed(origin="https://evil.example"))
    assert info.value.status == 403
    assert factory.refused == 2
    allowed = AudioHookFactory(settings(allowed_origins=("https://console.example",)))
    allowed.open(signed(origin="https://console.example"))


def test_factory_without_auth_for_local_use() -> None:
    factory = AudioHookFactory(DialectSettings(auth="none"))
    dialect = factory.open(UpgradeRequest(path="/audiohook"))
    assert isinstance(dialect, AudioHookDialect) and dialect.identity.session_id is None
    with pytest.raises(UpgradeRefused) as info:
        factory.open(UpgradeRequest(path="/audiohook", headers={"audiohook-session-id": "x"}))
    assert info.value.status == 400


def test_signed_upgrade_needs_the_session_headers() -> None:
    no_session: dict[str, Any] = {"audiohook-session-id": ""}
    request = signed(**no_session)
    with pytest.raises(UpgradeRefused):
        AudioHookFactory(settings()).open(request)


@pytest.mark.parametrize(
    "kw",
    [
        {"auth": "token"},
        {"secrets": {}},
        {"secrets": {"": SECRET_B64}},
        {"secrets": {KEY: "not base64!"}},
        {"options": {"channels": "mono"}},
    ],
)
def test_factory_configuration_errors(kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        AudioHookFactory(settings(**kw))
