"""Upgrade authentication: Twilio signatures checked against the official SDK, tokens, basic.

Each scheme is tried with valid, missing, forged and wrong-URL (or wrong-secret) credentials;
a refusal never quotes what was offered.
"""

from __future__ import annotations

import base64

import pytest
from twilio.request_validator import RequestValidator

from ivr_bridge.dialects import exotel, plivo, signalwire, telnyx, twilio
from ivr_bridge.dialects.base import DialectSettings, UpgradeRefused, UpgradeRequest
from ivr_bridge.dialects.upgrade_auth import (
    check_basic,
    check_token,
    check_twilio_signature,
    twilio_signature,
)
from ivr_bridge.errors import ConfigError

TOKEN = "auth-token-4711"
URL = "wss://bridge.example.com/twilio"


def request(
    url: str = URL, headers: dict[str, str] | None = None, query: str = ""
) -> UpgradeRequest:
    path = url.split("example.com", 1)[1].split("?", 1)[0]
    return UpgradeRequest(
        path=path,
        query_string=query,
        headers={k.lower(): v for k, v in (headers or {}).items()},
        url=url,
    )


def refused(fn: object, *args: object, **kwargs: object) -> UpgradeRefused:
    with pytest.raises(UpgradeRefused) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    assert TOKEN not in info.value.reason and "forged" not in info.value.reason
    return info.value


# ---- Twilio ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [URL, "wss://bridge.example.com:443/twilio", "wss://bridge.example.com/twilio?x=1&y=%20"],
)
def test_signature_matches_the_official_sdk(url: str) -> None:
    official = RequestValidator(TOKEN).compute_signature(url, {})
    assert twilio_signature(TOKEN, url) == official
    assert RequestValidator(TOKEN).validate(url, {}, twilio_signature(TOKEN, url))
    # POST parameters are appended name+value, sorted; upgrades have none, but the rule holds.
    params = {"b": "2", "a": "1"}
    assert twilio_signature(TOKEN, url, params) == RequestValidator(TOKEN).compute_signature(
        url, params
    )


def test_valid_signature_from_the_sdk_is_accepted() -> None:
    signature = RequestValidator(TOKEN).compute_signature(URL, {})
    check_twilio_signature(request(headers={"X-Twilio-Signature": signature}), TOKEN)


@pytest.mark.parametrize(
    ("signed", "served"),
    [
        ("wss://bridge.example.com:443/twilio", URL),  # Twilio may sign with the port
        (URL, "wss://bridge.example.com:443/twilio"),
    ],
)
def test_default_port_either_way(signed: str, served: str) -> None:
    signature = RequestValidator(TOKEN).compute_signature(signed, {})
    check_twilio_signature(request(served, {"X-Twilio-Signature": signature}), TOKEN)


def test_missing_signature_is_401() -> None:
    assert refused(check_twilio_signature, request(), TOKEN).status == 401


@pytest.mark.parametrize(
    "signature",
    [
        "forged",
        base64.b64encode(b"\x00" * 20).decode(),
        RequestValidator("another-token").compute_signature(URL, {}),
        RequestValidator(TOKEN).compute_signature("https://bridge.example.com/twilio", {}),
        RequestValidator(TOKEN).compute_signature("wss://bridge.example.com/other", {}),
        RequestValidator(TOKEN).compute_signature("wss://evil.example.com/twilio", {}),
        RequestValidator(TOKEN).compute_signature("wss://bridge.example.com:8443/twilio", {}),
        "é" * 28,
    ],
)
def test_forged_or_wrong_url_signature_is_403(signature: str) -> None:
    err = refused(check_twilio_signature, request(headers={"X-Twilio-Signature": signature}), TOKEN)
    assert (err.status, err.reason) == (403, "signature mismatch")


def test_twilio_factory_refuses_query_and_checks_signature() -> None:
    factory = twilio.make_factory(DialectSettings(auth="signature", secrets={"auth_token": TOKEN}))
    err = refused(factory.open, request(URL + "?token=x", query="token=x"))
    assert err.status == 400
    assert refused(factory.open, request()).status == 401
    good = RequestValidator(TOKEN).compute_signature(URL, {})
    assert factory.open(request(headers={"X-Twilio-Signature": good})).name == "twilio"
    open_factory = twilio.make_factory(DialectSettings())
    assert open_factory.open(request()).name == "twilio"


def test_twilio_factory_needs_its_secret_and_a_known_scheme() -> None:
    with pytest.raises(ConfigError, match="auth_token"):
        twilio.make_factory(DialectSettings(auth="signature"))
    with pytest.raises(ConfigError) as info:
        twilio.make_factory(DialectSettings(auth="token", secrets={"token": "x"}))
    assert info.value.key == "dialects.twilio.auth"


# ---- tokens and basic credentials ----------------------------------------------------------


def test_token_from_bearer_header_or_query() -> None:
    check_token(request(headers={"Authorization": f"Bearer {TOKEN}"}), TOKEN)
    check_token(request(headers={"Authorization": f"bearer  {TOKEN} "}), TOKEN)
    check_token(request(headers={"X-Own": TOKEN}), TOKEN, header="x-own")
    check_token(request(query=f"token={TOKEN}"), TOKEN, query=True)


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        ({}, "", 401),
        ({"Authorization": "Basic abc"}, "", 401),
        ({}, f"token={TOKEN}", 401),  # the query is not accepted where the platform has headers
        ({"Authorization": "Bearer forged"}, "", 403),
        ({"Authorization": f"Bearer {TOKEN}x"}, "", 403),
        ({"X-Own": "forged"}, "", 403),
    ],
)
def test_bad_tokens(headers: dict[str, str], query: str, status: int) -> None:
    err = refused(check_token, request(headers=headers, query=query), TOKEN, header="x-own")
    assert err.status == status


def basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def test_basic_credentials() -> None:
    check_basic(request(headers=basic("key", TOKEN)), "key", TOKEN)
    assert refused(check_basic, request(), "key", TOKEN).status == 401
    assert refused(check_basic, request(headers=basic("key", "forged")), "key", TOKEN).status == 403
    assert refused(check_basic, request(headers=basic("other", TOKEN)), "key", TOKEN).status == 403
    bad = {"Authorization": "Basic !!!"}
    assert refused(check_basic, request(headers=bad), "key", TOKEN).status == 403


@pytest.mark.parametrize(
    ("module", "settings", "good", "bad"),
    [
        (
            signalwire,
            DialectSettings(auth="token", secrets={"token": TOKEN}),
            {"headers": {"Authorization": f"Bearer {TOKEN}"}},
            {"headers": {"Authorization": "Bearer forged"}},
        ),
        (
            telnyx,
            DialectSettings(auth="token", secrets={"token": TOKEN}),
            {"headers": {"x-telnyx-streaming-auth-token": TOKEN}},
            {"headers": {"x-telnyx-streaming-auth-token": "forged"}},
        ),
        (
            plivo,
            DialectSettings(auth="token", secrets={"token": TOKEN}),
            {"query": f"token={TOKEN}"},
            {"query": "token=forged"},
        ),
        (
            exotel,
            DialectSettings(auth="basic", secrets={"username": "key", "password": TOKEN}),
            {"headers": basic("key", TOKEN)},
            {"headers": basic("key", "forged")},
        ),
        (
            exotel,
            DialectSettings(auth="token", secrets={"token": TOKEN}),
            {"query": f"token={TOKEN}"},
            {"query": "token=forged"},
        ),
    ],
)
def test_family_factories_authenticate(
    module: object, settings: DialectSettings, good: dict[str, object], bad: dict[str, object]
) -> None:
    factory = module.make_factory(settings)  # type: ignore[attr-defined]
    assert factory.open(request(**good)).name == factory.name  # type: ignore[arg-type]
    assert refused(factory.open, request(**bad)).status == 403  # type: ignore[arg-type]
    assert refused(factory.open, request()).status == 401


def test_signalwire_refuses_query_strings() -> None:
    factory = signalwire.make_factory(DialectSettings())
    assert refused(factory.open, request(query="a=b")).status == 400
