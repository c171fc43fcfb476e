"""Credentials against a local fake IAM token endpoint that really verifies the PS256 JWT."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jwt as pyjwt  # test-only, via yandexcloud: an independent PS256 implementation
import pytest
import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ivr_bridge.clock import ScaledClock
from ivr_bridge.errors import ConfigError, RecognitionRejected, RecognitionUnavailable
from ivr_bridge.recognition.credentials import (
    JWT_AUDIENCE,
    ApiKeyCredentials,
    AuthorizedKey,
    Credentials,
    ServiceAccountKeyCredentials,
    StaticIamToken,
    credentials_from_settings,
    parse_rfc3339,
)

KEY_ID = "ajeb9l33r5ukqn1r2mno"
SA_ID = "ajegtlf2q28b6vmlq7sd"
API_KEY = "AQVNzc1lRq7c0Vv2ghtPYmKd0aaSecretApiKey42"
STATIC_TOKEN = "t1.9euelZrStaticIamTokenValue.0123456789abcdefABCDEF"
_T = TypeVar("_T")
PSS_32 = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


# ---- fixtures ---------------------------------------------------------------------------


class FakeClock:
    """Monotonic and wall time that move only when the test says so."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.epoch = 1_750_000_000.0

    def now(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.epoch

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)

    async def wait_for(self, awaitable: Awaitable[_T], timeout: float | None) -> _T:
        # Time stands still here, so no deadline can pass while the awaitable runs.
        return await awaitable

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.epoch += seconds


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def rfc3339_nanos(epoch: float) -> str:
    """IAM style: nanoseconds and "Z"."""
    dt = datetime.fromtimestamp(int(epoch), tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".123456789Z"


class FakeIam:
    """A tiny HTTP/1.1 server for POST /iam/v1/tokens that checks the JWT like IAM would."""

    def __init__(self, public_key: rsa.RSAPublicKey, wall: Callable[[], float]) -> None:
        self.public_key = public_key
        self.wall = wall
        self.requests = 0
        self.issued = 0
        self.script: list[int] = []  # HTTP statuses to answer next, before verifying
        self.lifetime_s = 12 * 3600.0
        self.delay_s = 0.0
        self.hold: asyncio.Event | None = None
        self.body_override: bytes | None = None
        self.errors: list[str] = []
        self.headers: list[dict[str, Any]] = []
        self.claims: list[dict[str, Any]] = []
        self.tokens: list[str] = []
        self.jwts: list[str] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/iam/v1/tokens"
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip()
                for k, v in (ln.split(":", 1) for ln in lines[1:] if ln)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests += 1
            self.jwts.append(json.loads(body)["jwt"])
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.hold is not None:
                await self.hold.wait()
            status, payload = self._answer(method, path, headers, body)
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        if self.script:
            status = self.script.pop(0)
            return status, json.dumps({"code": 16, "message": f"scripted {status}"}).encode()
        if self.body_override is not None:
            return 200, self.body_override
        problem = self._verify(method, path, headers, body)
        if problem:
            self.errors.append(problem)
            return 401, json.dumps({"code": 16, "message": problem}).encode()
        self.issued += 1
        token = f"t1.fakeIamToken{self.issued}.{'A' * 86}"
        self.tokens.append(token)
        doc = {"iamToken": token, "expiresAt": rfc3339_nanos(self.wall() + self.lifetime_s)}
        return 200, json.dumps(doc).encode()

    def _verify(self, method: str, path: str, headers: dict[str, str], body: bytes) -> str:
        if method != "POST" or path != "/iam/v1/tokens":
            return f"wrong request line {method} {path}"
        if "application/json" not in headers.get("content-type", ""):
            return "not JSON"
        token = json.loads(body)["jwt"]
        head_b64, claims_b64, sig_b64 = token.split(".")
        header = json.loads(b64url_decode(head_b64))
        claims = json.loads(b64url_decode(claims_b64))
        self.headers.append(header)
        self.claims.append(claims)
        try:
            self.public_key.verify(
                b64url_decode(sig_b64), f"{head_b64}.{claims_b64}".encode(), PSS_32, hashes.SHA256()
            )
        except InvalidSignature:
            return "bad signature"
        if header != {"typ": "JWT", "alg": "PS256", "kid": KEY_ID}:
            return f"bad header {header}"
        if claims.get("iss") != SA_ID or claims.get("aud") != JWT_AUDIENCE:
            return "bad iss/aud"
        if not 0 < claims["exp"] - claims["iat"] <= 3600:
            return "bad lifetime"
        if abs(claims["iat"] - self.wall()) > 5:
            return "iat not now"
        return ""


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def key_doc(pem: str) -> dict[str, Any]:
    """The shape of `yc iam key create -o key.json`, including yc's warning line."""
    return {
        "id": KEY_ID,
        "service_account_id": SA_ID,
        "created_at": "2025-06-01T10:00:00.000000000Z",
        "key_algorithm": "RSA_2048",
        "public_key": "-----BEGIN PUBLIC KEY-----\nnot used\n-----END PUBLIC KEY-----\n",
        "private_key": f"PLEASE DO NOT REMOVE THIS LINE! Yandex.Cloud SA Key ID <{KEY_ID}>\n{pem}",
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def iam(rsa_key: rsa.RSAPrivateKey, clock: FakeClock) -> AsyncIterator[FakeIam]:
    fake = FakeIam(rsa_key.public_key(), clock.wall)
    await fake.start()
    yield fake
    await fake.stop()
    assert fake.errors == []


@pytest.fixture
async def creds(
    key_doc: dict[str, Any], iam: FakeIam, clock: FakeClock
) -> AsyncIterator[ServiceAccountKeyCredentials]:
    c = ServiceAccountKeyCredentials(
        AuthorizedKey.from_mapping(key_doc), token_url=iam.url, clock=clock, http_timeout_s=5
    )
    yield c
    await c.aclose()


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


# ---- service-account key: exchange and cache ---------------------------------------------


async def test_happy_path_exchanges_verified_jwt_for_bearer_token(
    creds: ServiceAccountKeyCredentials, iam: FakeIam, clock: FakeClock
) -> None:
    md = await creds.metadata()
    assert md == bearer(iam.tokens[0])
    assert iam.requests == 1 and iam.errors == []
    assert iam.headers[0] == {"typ": "JWT", "alg": "PS256", "kid": KEY_ID}
    claims = iam.claims[0]
    assert claims["iss"] == SA_ID
    assert claims["aud"] == "https://iam.api.cloud.yandex.net/iam/v1/tokens"
    assert claims["iat"] == int(clock.wall())
    assert claims["exp"] - claims["iat"] == 3600
    assert isinstance(creds, Credentials)


async def test_jwt_signature_is_pss_sha256_with_32_byte_salt(
    key_doc: dict[str, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    token = AuthorizedKey.from_mapping(key_doc).sign_jwt(1_750_000_000.0)
    head, claims, sig = token.split(".")
    assert "=" not in token  # base64url without padding
    pub = rsa_key.public_key()
    pub.verify(b64url_decode(sig), f"{head}.{claims}".encode(), PSS_32, hashes.SHA256())
    wrong_salt = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=20)
    with pytest.raises(InvalidSignature):
        pub.verify(b64url_decode(sig), f"{head}.{claims}".encode(), wrong_salt, hashes.SHA256())
    # An independent implementation (PyJWT, what the official SDK uses) accepts it too.
    decoded = pyjwt.decode(
        token,
        pub,
        algorithms=["PS256"],
        audience=JWT_AUDIENCE,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert decoded == {
        "iss": SA_ID,
        "aud": JWT_AUDIENCE,
        "iat": 1_750_000_000,
        "exp": 1_750_003_600,
    }
    assert pyjwt.get_unverified_header(token)["kid"] == KEY_ID


async def test_token_is_cached(creds: ServiceAccountKeyCredentials, iam: FakeIam) -> None:
    results = [await creds.metadata() for _ in range(25)]
    assert iam.requests == 1
    assert all(r == results[0] for r in results)


async def test_fifty_concurrent_callers_trigger_one_exchange(
    creds: ServiceAccountKeyCredentials, iam: FakeIam
) -> None:
    iam.delay_s = 0.05
    results = await asyncio.gather(*(creds.metadata() for _ in range(50)))
    assert iam.requests == 1
    assert {tuple(r) for r in results} == {tuple(bearer(iam.tokens[0]))}


async def test_proactive_refresh_after_refresh_after_s(
    creds: ServiceAccountKeyCredentials, iam: FakeIam, clock: FakeClock
) -> None:
    first = await creds.metadata()
    clock.advance(3599)  # 12 h token: refresh_after_s (1 h) is the earlier mark
    assert await creds.metadata() == first
    assert iam.requests == 1
    clock.advance(2)
    second = await creds.metadata()
    assert second == bearer(iam.tokens[1]) != first
    assert iam.requests == 2


async def test_proactive_refresh_at_half_of_a_short_lifetime(
    creds: ServiceAccountKeyCredentials, iam: FakeIam, clock: FakeClock
) -> None:
    iam.lifetime_s = 1000
    first = await creds.metadata()
    clock.advance(499)
    assert await creds.metadata() == first
    clock.advance(2)
    assert await creds.metadata() == bearer(iam.tokens[1])
    assert iam.requests == 2


async def test_callers_with_a_valid_token_do_not_wait_for_the_refresh(
    creds: ServiceAccountKeyCredentials, iam: FakeIam, clock: FakeClock
) -> None:
    first = await creds.metadata()
    clock.advance(3601)
    iam.hold = asyncio.Event()  # IAM answers only when the test says so
    refresher = asyncio.create_task(creds.metadata())
    while iam.requests < 2:
        await asyncio.sleep(0.005)  # the refresher now holds the lock, waiting for IAM
    others = await asyncio.wait_for(asyncio.gather(*(creds.metadata() for _ in range(10))), 5)
    assert all(o == first for o in others)
    assert not refresher.done()
    iam.hold.set()
    assert await refresher == bearer(iam.tokens[1])
    assert iam.requests == 2


async def test_refresh_after_unauthenticated_gets_new_token(
    creds: ServiceAccountKeyCredentials, iam: FakeIam
) -> None:
    first = await creds.metadata()
    assert await creds.refresh() is True
    second = await creds.metadata()
    assert second == bearer(iam.tokens[1]) != first
    assert iam.requests == 2
    # A burst of UNAUTHENTICATED from many calls shares the one forced refresh.
    assert all(await asyncio.gather(*(creds.refresh() for _ in range(20))))
    assert await creds.refresh() is True
    assert iam.requests == 2


async def test_forced_refresh_again_after_coalescing_window(
    creds: ServiceAccountKeyCredentials, iam: FakeIam, clock: FakeClock
) -> None:
    await creds.refresh()
    clock.advance(6)
    assert await creds.refresh() is True
    assert iam.requests == 2
    assert await creds.metadata() == bearer(iam.tokens[1])


async def test_refresh_returns_false_when_iam_refuses_the_key(
    creds: ServiceAccountKeyCredentials, iam: FakeIam
) -> None:
    await creds.metadata()
    iam.script = [403]
    assert await creds.refresh() is False
    iam.script = [401]
    with pytest.raises(RecognitionRejected):
        await creds.metadata()  # the refused token was dropped; within backoff: same error


async def test_refresh_backoff_follows_the_injected_clock(
    key_doc: dict[str, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    """Backoff deadlines are clock time: on a 20x clock a 1 s backoff ends after 50 ms."""
    clock = ScaledClock(speed=20)
    iam = FakeIam(rsa_key.public_key(), clock.wall)
    await iam.start()
    c = ServiceAccountKeyCredentials(
        AuthorizedKey.from_mapping(key_doc), token_url=iam.url, clock=clock, http_timeout_s=60
    )
    try:
        iam.script = [503, 503]
        with pytest.raises(RecognitionUnavailable):
            await c.metadata()  # failure 1: the next try waits 1 s of clock time
        with pytest.raises(RecognitionUnavailable):
            await c.metadata()  # backing off: the last error again, no request
        assert iam.requests == 1
        await clock.sleep(1.05)
        with pytest.raises(RecognitionUnavailable):
            await c.metadata()  # failure 2: the schedule doubles to 2 s
        assert iam.requests == 2
        with pytest.raises(RecognitionUnavailable):
            await c.metadata()
        assert iam.requests == 2
        await clock.sleep(2.05)
        assert await c.metadata() == bearer(iam.tokens[0])
        assert iam.requests == 3
    finally:
        await c.aclose()
        await iam.stop()


async def test_http_client_is_injectable(key_doc: dict[str, Any], clock: FakeClock) -> None:
    bodies: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        expires = rfc3339_nanos(clock.wall() + 3600)
        return httpx.Response(200, json={"iamToken": "t1.injected", "expiresAt": expires})

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    c = ServiceAccountKeyCredentials(
        AuthorizedKey.from_mapping(key_doc),
        token_url="https://iam.example.test/iam/v1/tokens",
        clock=clock,
        http_client=client,
    )
    assert await c.metadata() == bearer("t1.injected")
    assert await c.metadata() == bearer("t1.injected")
    assert len(bodies) == 1 and bodies[0]["jwt"].count(".") == 2
    await c.aclose()
    assert client.is_closed  # the credentials own the client they were given


async def test_refresh_while_iam_unavailable_says_retry(
    creds: ServiceAccountKeyCredentials, iam: FakeIam, clock: FakeClock
) -> None:
    await creds.metadata()
    iam.script = [503]
    assert await creds.refresh() is True  # the caller's retry may succeed
    with pytest.raises(RecognitionUnavailable):
        await creds.metadata()  # backing off, and the refused token is gone
    clock.advance(1.5)
    assert await creds.metadata() == bearer(iam.tokens[1])


async def test_endpoint_500_while_old_token_valid_keeps_old_token(
    creds: ServiceAccountKeyCredentials, iam: FakeIam, clock: FakeClock
) -> None:
    first = await creds.metadata()
    clock.advance(3601)
    iam.script = [500]
    with structlog.testing.capture_logs() as logs:
        assert await creds.metadata() == first
    assert iam.requests == 2
    assert any(e["event"] == "iam_token_refresh_failed_keeping_old" for e in logs)
    # Backing off: no request per call while the old token still works.
    for _ in range(5):
        assert await creds.metadata() == first
    assert iam.requests == 2
    clock.advance(1.1)
    iam.script = [502]
    assert await creds.metadata() == first  # second failure: backoff doubles to 2 s
    assert iam.requests == 3
    clock.advance(1.5)
    assert await creds.metadata() == first
    assert iam.requests == 3
    clock.advance(1)
    assert await creds.metadata() == bearer(iam.tokens[1])
    assert iam.requests == 4


async def test_no_valid_token_left_and_endpoint_down_raises_unavailable(
    creds: ServiceAccountKeyCredentials, iam: FakeIam, clock: FakeClock
) -> None:
    iam.lifetime_s = 1000
    await creds.metadata()
    clock.advance(1000 - 59)  # inside the 60 s expiry margin: no longer usable
    iam.script = [503]
    with pytest.raises(RecognitionUnavailable) as exc_info:
        await creds.metadata()
    assert exc_info.value.status == "UNAVAILABLE"
    assert "HTTP 503" in exc_info.value.message


async def test_endpoint_401_with_no_token_raises_rejected_and_waiters_share_it(
    creds: ServiceAccountKeyCredentials, iam: FakeIam, clock: FakeClock
) -> None:
    iam.delay_s = 0.05
    iam.script = [401]
    results = await asyncio.gather(*(creds.metadata() for _ in range(20)), return_exceptions=True)
    assert iam.requests == 1
    assert all(isinstance(r, RecognitionRejected) for r in results)
    err = results[0]
    assert isinstance(err, RecognitionRejected)
    assert err.status == "UNAUTHENTICATED"
    assert "HTTP 401" in err.message and "scripted 401" in err.message
    with pytest.raises(RecognitionRejected):
        await creds.metadata()  # backoff: no new request
    assert iam.requests == 1
    clock.advance(1.1)
    iam.delay_s = 0
    assert await creds.metadata() == bearer(iam.tokens[0])


async def test_network_failure_is_unavailable(
    key_doc: dict[str, Any], clock: FakeClock, iam: FakeIam
) -> None:
    await iam.stop()  # nothing listens on that port any more
    c = ServiceAccountKeyCredentials(
        AuthorizedKey.from_mapping(key_doc), token_url=iam.url, clock=clock, http_timeout_s=2
    )
    try:
        with pytest.raises(RecognitionUnavailable) as exc_info:
            await c.metadata()
        assert "ConnectError" in exc_info.value.message
    finally:
        await c.aclose()


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b"{}", json.dumps({"iamToken": "has space"}).encode()],
)
async def test_malformed_answer_is_unavailable(
    creds: ServiceAccountKeyCredentials, iam: FakeIam, body: bytes
) -> None:
    iam.body_override = body
    with pytest.raises(RecognitionUnavailable):
        await creds.metadata()


async def test_missing_expiry_assumes_short_lifetime(
    creds: ServiceAccountKeyCredentials, iam: FakeIam, clock: FakeClock
) -> None:
    iam.body_override = json.dumps({"iamToken": "t1.noexpiry"}).encode()
    assert await creds.metadata() == bearer("t1.noexpiry")
    clock.advance(151)  # fallback lifetime 300 s -> refresh at 150 s
    iam.body_override = None
    assert await creds.metadata() == bearer(iam.tokens[0])


async def test_aclose_is_idempotent_and_final(creds: ServiceAccountKeyCredentials) -> None:
    await creds.metadata()
    await creds.aclose()
    await creds.aclose()
    with pytest.raises(RuntimeError):
        await creds.metadata()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-06-15T12:30:45.123456789Z", 1749990645.123456),
        ("2025-06-15T12:30:45Z", 1749990645.0),
        ("2025-06-15T15:30:45.5+03:00", 1749990645.5),
        ("2025-06-15t12:30:45.000000001z", 1749990645.0),
    ],
)
def test_parse_rfc3339(text: str, expected: float) -> None:
    assert parse_rfc3339(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("text", ["", "2025-06-15", "2025-06-15T12:30:45", "yesterday"])
def test_parse_rfc3339_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


# ---- static credentials ------------------------------------------------------------------


async def test_api_key_and_static_token_cannot_refresh() -> None:
    api = ApiKeyCredentials(API_KEY)
    assert await api.metadata() == [("authorization", f"Api-Key {API_KEY}")]
    assert await api.refresh() is False
    tok = StaticIamToken(STATIC_TOKEN)
    assert await tok.metadata() == bearer(STATIC_TOKEN)
    assert await tok.refresh() is False
    for c in (api, tok):
        assert isinstance(c, Credentials)
        await c.aclose()


@pytest.mark.parametrize("bad", ["", " ", "abc def", "abc\n", "ключ"])
def test_static_secrets_must_be_header_safe(bad: str) -> None:
    with pytest.raises(ValueError) as exc_info:
        ApiKeyCredentials(bad)
    assert bad not in str(exc_info.value) or not bad.strip()
    with pytest.raises(ValueError):
        StaticIamToken(bad)


# ---- authorized key parsing and settings -------------------------------------------------


@pytest.mark.parametrize("field", ["id", "service_account_id", "private_key"])
def test_missing_key_field_names_the_field(key_doc: dict[str, Any], pem: str, field: str) -> None:
    del key_doc[field]
    with pytest.raises(ConfigError) as exc_info:
        AuthorizedKey.from_json(json.dumps(key_doc))
    assert exc_info.value.key == "speechkit.service_account_key_json"
    assert repr(field) in exc_info.value.problem
    assert pem not in str(exc_info.value) and "BEGIN" not in str(exc_info.value)


def test_user_account_key_is_explained(key_doc: dict[str, Any]) -> None:
    key_doc["user_account_id"] = key_doc.pop("service_account_id")
    with pytest.raises(ConfigError, match="user-account keys are not supported"):
        AuthorizedKey.from_mapping(key_doc)


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda d: d.update(private_key="MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"), "not a PEM key"),
        (
            lambda d: d.update(
                private_key="-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANsecretish\n"
                "-----END PRIVATE KEY-----\n"
            ),
            "not an unencrypted PKCS#8 PEM",
        ),
        (lambda d: d.update(id=12345), "'id' must be a string"),
        (lambda d: d.update(service_account_id="has space"), "is malformed"),
    ],
)
def test_bad_key_material_is_a_config_error_without_echo(
    key_doc: dict[str, Any], mutate: Callable[[dict[str, Any]], None], words: str
) -> None:
    mutate(key_doc)
    with pytest.raises(ConfigError) as exc_info:
        AuthorizedKey.from_mapping(key_doc)
    msg = str(exc_info.value)
    assert exc_info.value.key == "speechkit.service_account_key_file"
    assert words in msg
    assert "MIIEvQ" not in msg and "secretish" not in msg


def test_non_rsa_key_is_refused(key_doc: dict[str, Any]) -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    key_doc["private_key"] = ec_pem
    with pytest.raises(ConfigError, match="not an RSA key"):
        AuthorizedKey.from_mapping(key_doc)


def test_invalid_json_reports_position_not_content() -> None:
    with pytest.raises(ConfigError) as exc_info:
        AuthorizedKey.from_json('{"private_key": "-----BEGIN PRIVATE KEY-----\nMIIE", ')
    assert "not valid JSON" in exc_info.value.problem
    assert "MIIE" not in str(exc_info.value)
    with pytest.raises(ConfigError, match="must be a JSON object"):
        AuthorizedKey.from_json("[1, 2]")


def test_load_accepts_path_json_and_dict(key_doc: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(key_doc))
    for source in (path, str(path), json.dumps(key_doc), key_doc):
        key = AuthorizedKey.load(source)
        assert (key.id, key.service_account_id) == (KEY_ID, SA_ID)


async def test_settings_pick_exactly_one_source(
    key_doc: dict[str, Any], tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(key_doc))
    base: dict[str, Any] = {
        "api_key": None,
        "iam_token": None,
        "service_account_key_file": None,
        "service_account_key_json": None,
        "token_url": "https://iam.example.invalid/iam/v1/tokens",
        "clock": clock,
    }
    assert credentials_from_settings(**base) is None
    assert credentials_from_settings(**{**base, "api_key": ""}) is None
    assert isinstance(credentials_from_settings(**{**base, "api_key": API_KEY}), ApiKeyCredentials)
    assert isinstance(
        credentials_from_settings(**{**base, "iam_token": STATIC_TOKEN}), StaticIamToken
    )
    sa = credentials_from_settings(**{**base, "service_account_key_file": str(path)})
    assert isinstance(sa, ServiceAccountKeyCredentials)
    assert "iam.example.invalid" in sa.describe()
    sa_json = credentials_from_settings(**{**base, "service_account_key_json": json.dumps(key_doc)})
    assert isinstance(sa_json, ServiceAccountKeyCredentials)

    with pytest.raises(ConfigError) as exc_info:
        credentials_from_settings(**{**base, "api_key": API_KEY, "iam_token": STATIC_TOKEN})
    assert exc_info.value.key == "speechkit.api_key"
    assert "speechkit.iam_token" in exc_info.value.problem
    assert API_KEY not in str(exc_info.value) and STATIC_TOKEN not in str(exc_info.value)

    with pytest.raises(ConfigError) as exc_info:
        credentials_from_settings(**{**base, "api_key": "two words"})
    assert exc_info.value.key == "speechkit.api_key"
    with pytest.raises(ConfigError) as exc_info:
        credentials_from_settings(**{**base, "iam_token": "bad\ntoken"})
    assert exc_info.value.key == "speechkit.iam_token"


def test_token_url_must_be_https_or_loopback(key_doc: dict[str, Any], clock: FakeClock) -> None:
    key_json = json.dumps(key_doc)
    for url in ("http://iam.example.com/iam/v1/tokens", "ftp://x/", "iam.api.cloud.yandex.net"):
        with pytest.raises(ConfigError) as exc_info:
            credentials_from_settings(
                api_key=None,
                iam_token=None,
                service_account_key_file=None,
                service_account_key_json=key_json,
                token_url=url,
                clock=clock,
            )
        assert exc_info.value.key == "speechkit.token_url"
    for url in ("https://iam.api.cloud.yandex.net/iam/v1/tokens", "http://localhost:8080/t"):
        ServiceAccountKeyCredentials(AuthorizedKey.from_json(key_json), token_url=url)


def test_settings_unreadable_or_invalid_key_file(tmp_path: Path, clock: FakeClock) -> None:
    def build(path: str) -> Credentials | None:
        return credentials_from_settings(
            api_key=None,
            iam_token=None,
            service_account_key_file=path,
            service_account_key_json=None,
            token_url="https://iam.example.invalid/",
            clock=clock,
        )

    with pytest.raises(ConfigError) as exc_info:
        build(str(tmp_path / "missing.json"))
    assert exc_info.value.key == "speechkit.service_account_key_file"
    assert "cannot read" in exc_info.value.problem
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "x"}')
    with pytest.raises(ConfigError) as exc_info:
        build(str(bad))
    assert exc_info.value.key == "speechkit.service_account_key_file"
    assert "'service_account_id'" in exc_info.value.problem
    if os.geteuid() != 0:  # root reads anything
        bad.chmod(0)
        with pytest.raises(ConfigError, match="cannot read"):
            build(str(bad))


# ---- redaction ---------------------------------------------------------------------------


async def test_secrets_never_in_repr_str_describe_or_logs(
    key_doc: dict[str, Any], pem: str, iam: FakeIam, clock: FakeClock
) -> None:
    pem_body = pem.splitlines()[1]  # a line of actual key material
    with structlog.testing.capture_logs() as logs:
        key = AuthorizedKey.from_mapping(key_doc)
        sa = ServiceAccountKeyCredentials(key, token_url=iam.url, clock=clock)
        await sa.metadata()
        iam.script = [500]
        clock.advance(3601)
        await sa.metadata()  # failure path, old token kept
        await sa.refresh()  # forced path
        clock.advance(6)
        iam.script = [401]
        assert await sa.refresh() is False
        with pytest.raises(RecognitionRejected) as exc_info:
            await sa.metadata()  # no token left, backing off: the 401 again
        await sa.aclose()
    api = ApiKeyCredentials(API_KEY)
    static = StaticIamToken(STATIC_TOKEN)
    texts = [repr(x) for x in (key, sa, api, static, sa._token)]
    texts += [str(x) for x in (key, sa, api, static)]
    texts += [c.describe() for c in (sa, api, static)]
    texts += [str(exc_info.value), repr(exc_info.value), repr(logs)]
    blob = "\n".join(texts)
    secrets = [API_KEY, STATIC_TOKEN, pem_body, "BEGIN PRIVATE KEY", *iam.jwts, *iam.tokens]
    for secret in secrets:
        assert secret not in blob
    assert (
        len(iam.tokens) >= 2 and len(iam.jwts) >= 3 and logs
    )  # the flows above really ran and logged
    assert "aje…" in sa.describe() and "IAM token" in sa.describe()
    assert "sha256:" in api.describe()


async def test_rendered_log_output_has_no_secrets(
    key_doc: dict[str, Any], iam: FakeIam, clock: FakeClock
) -> None:
    """Through the project's real logging pipeline (JSON renderer), not just captured dicts."""
    import io

    from ivr_bridge.logs import configure_logging

    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    try:
        sa = ServiceAccountKeyCredentials(
            AuthorizedKey.from_mapping(key_doc), token_url=iam.url, clock=clock
        )
        await sa.metadata()
        clock.advance(3601)
        iam.script = [503]
        await sa.metadata()
        await sa.aclose()
    finally:
        structlog.reset_defaults()
    text = out.getvalue()
    assert "iam_token_obtained" in text and "iam_token_refresh_failed_keeping_old" in text
    for secret in [*iam.tokens, *iam.jwts, key_doc["private_key"].splitlines()[2]]:
        assert secret not in text
