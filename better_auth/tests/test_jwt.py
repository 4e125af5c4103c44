"""Stateless JWT mode (better_auth.jwt) with keys made here.

The JWKS endpoint is a real HTTP server on 127.0.0.1; the table mode reads
a real table. Only the cache's clock and the wall clock key expiry is read
against are moved, instead of waiting.
"""

import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.utils import base64url_encode
from pytest_django import DjangoAssertNumQueries, Settings
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from better_auth import jwt as jwt_mode
from better_auth.authentication import ApiUser, Credential
from better_auth.jwt import (
    MAX_JWKS_BYTES,
    MAX_JWT_LENGTH,
    REFETCH_MIN_SECONDS,
    RETRY_AFTER_FAILURE_SECONDS,
    BetterAuthJWTAuthentication,
    JWKSUnavailable,
    jwks_cache_clear,
    jwt_header,
)
from better_auth.tests.factories import (
    BetterAuthSessionFactory,
    better_auth_date,
    signed_token,
)
from conversations.models import Conversation

pytestmark = pytest.mark.django_db

ISSUER = "https://app.example.com"
AUDIENCE = "https://app.example.com"
USER_ID = "Kq8dJ2mX7pR4tV9wZ1bN6cF3hL5sY0aE"
INVALID_TOKEN = {"detail": "Invalid or expired token.", "code": "authentication_failed"}
TABLE = "jwks_unit_test"
# Whom a token of SigningKey.sign() authenticates, and how.
ANN = (ApiUser(id=USER_ID, email="ann@example.com", name="Ann"), Credential("jwt"))


@dataclass
class SigningKey:
    alg: str
    kid: str
    private: Any
    public_jwk: dict[str, Any]

    def sign(self, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iat": now,
            "exp": now + 900,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": USER_ID,
            "id": USER_ID,
            "email": "ann@example.com",
            "name": "Ann",
            "emailVerified": False,
            **claims,
        }
        # A timedelta is relative to now, when the token is signed (not when
        # the tests are collected, which can be minutes earlier).
        payload = {
            name: now + int(value.total_seconds())
            if isinstance(value, dt.timedelta)
            else value
            for name, value in payload.items()
            if value is not None
        }
        return jwt.encode(payload, self.private, self.alg, headers={"kid": self.kid})


def make_key(alg: str = "EdDSA") -> SigningKey:
    """A fresh key pair, published as Better Auth's JWKS endpoint does."""
    public_jwk: dict[str, Any]
    if alg == "EdDSA":
        private: Any = ed25519.Ed25519PrivateKey.generate()
        public_jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg in ("ES256", "ES512"):
        curve = ec.SECP256R1() if alg == "ES256" else ec.SECP521R1()
        private = ec.generate_private_key(curve)
        public_jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    kid = uuid.uuid4().hex
    return SigningKey(alg, kid, private, {**public_jwk, "alg": alg, "kid": kid})


@dataclass
class JWKSServer:
    """A JWKS endpoint on 127.0.0.1 whose keys and health tests change."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    requests: int = 0
    url: str = ""
    # Answer 302 to this path instead of the keys.
    redirect_to: str | None = None
    # Seconds between the bytes of the answer: a trickling endpoint.
    byte_delay: float = 0.0

    def publish(self, *keys: SigningKey) -> None:
        self.keys = [key.public_jwk for key in keys]


@pytest.fixture
def jwks_server() -> Iterator[JWKSServer]:
    with serve_jwks() as state:
        yield state


@contextlib.contextmanager
def serve_jwks(tls: ssl.SSLContext | None = None) -> Iterator[JWKSServer]:
    """A JWKS endpoint on 127.0.0.1, over TLS with `tls`."""
    state = JWKSServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests += 1
            if state.redirect_to is not None and self.path != state.redirect_to:
                self.send_response(302)
                self.send_header("Location", state.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps({"keys": state.keys}).encode()
            if state.byte_delay:
                self.trickle(body)
                return
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def trickle(self, body: bytes) -> None:
            """The whole answer, status line first, a byte at a time."""
            head = (
                f"HTTP/1.0 {state.status} OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            try:
                for byte in head.encode() + body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(state.byte_delay)
            except OSError:
                pass  # the client gave up

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "http" if tls is None else "https"
    state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/api/auth/jwks"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """The key cache's clock, fresh cache before and after each test."""
    clock = Clock()
    monkeypatch.setattr(jwt_mode, "_monotonic", clock)
    jwks_cache_clear()
    yield clock
    jwks_cache_clear()


@pytest.fixture
def wall_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The wall clock key expiry is read against, starting at the real time."""
    clock = Clock(now=time.time())
    monkeypatch.setattr(jwt_mode, "_time", clock)
    return clock


@pytest.fixture
def key() -> SigningKey:
    return make_key("EdDSA")


@pytest.fixture
def url_mode(settings: Settings, jwks_server: JWKSServer, key: SigningKey) -> None:
    """JWT mode on, reading `key` from the JWKS endpoint."""
    jwks_server.publish(key)
    settings.BETTER_AUTH_JWKS_URL = jwks_server.url
    settings.BETTER_AUTH_JWT_ISSUER = ISSUER
    settings.BETTER_AUTH_JWT_AUDIENCE = AUDIENCE


def bearer_request(value: str) -> Request:
    django_request = APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {value}")
    return Request(django_request)


def authenticate(value: str) -> tuple[ApiUser, Credential] | None:
    return BetterAuthJWTAuthentication().authenticate(bearer_request(value))


def assert_refused(value: str) -> None:
    with pytest.raises(AuthenticationFailed, match=r"^Invalid or expired token\.$"):
        authenticate(value)


def jwt_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


# jwt_header: what counts as a JWT


def test_jwt_header_decodes_a_jwt(key: SigningKey) -> None:
    assert jwt_header(key.sign()) == {"alg": "EdDSA", "kid": key.kid, "typ": "JWT"}


@pytest.mark.parametrize(
    "value",
    [
        "Xq3wM9vTz1LkP8sRb2NcY7hJd4FgA6eU",  # raw session token
        "Xq3wM9vTz1LkP8sRb2NcY7hJd4FgA6eU.A+9V0m7z4oy9n4iZa/d4mHK=",  # signed
        "Xq3wM9vTz1LkP8sRb2NcY7hJd4FgA6eU.A%2B9V0m7z4oy9n4iZa%2Fd4mHK%3D",
        "a.b.c",  # three segments, header not JSON
        "eyJmb28iOiJiYXIifQ.eyJzdWIiOiJ4In0.c2ln",  # JSON header without alg
        "WyJhbGciXQ.eyJzdWIiOiJ4In0.c2ln",  # header a JSON list
        "eyJhbGciOiJFZERTQSJ9..c2ln",  # empty payload segment
        "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln.more",
    ],
)
def test_jwt_header_is_none_for_anything_else(value: str) -> None:
    assert jwt_header(value) is None


def nested_header_token(depth: int) -> str:
    """A JWT-shaped value whose header nests `depth` JSON arrays."""
    header = '{"alg":"EdDSA","kid":"k","x":' + "[" * depth + "]" * depth + "}"
    segment = base64url_encode(header.encode()).decode()
    return f"{segment}.eyJzdWIiOiJ4In0.c2ln"


def test_jwt_header_is_none_for_a_header_nested_past_the_recursion_limit() -> None:
    token = nested_header_token(5000)
    assert len(token) < MAX_JWT_LENGTH

    assert jwt_header(token) is None


@pytest.mark.usefixtures("url_mode")
def test_a_deeply_nested_jwt_header_is_401_not_500() -> None:
    client = jwt_client(nested_header_token(5000))

    response = client.get(reverse("conversations:conversation-latest", args=[USER_ID]))

    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.usefixtures("url_mode")
def test_any_error_of_the_decoder_is_a_refusal(
    key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the decoder raises beyond PyJWTError (a future PyJWT, an
    input it does not foresee) is 401, not 500."""

    def decode(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(jwt_mode.jwt, "decode", decode)

    assert_refused(key.sign())


# Mode off, and values left to the session class


def test_authenticate_is_none_when_jwt_mode_is_off(key: SigningKey) -> None:
    assert authenticate(key.sign()) is None


@pytest.mark.usefixtures("url_mode")
def test_authenticate_is_none_for_a_session_token(jwks_server: JWKSServer) -> None:
    session = BetterAuthSessionFactory.create()

    assert authenticate(session.token) is None
    assert authenticate(signed_token(session)) is None
    assert jwks_server.requests == 0


@pytest.mark.usefixtures("url_mode")
def test_session_tokens_still_open_the_api_in_jwt_mode() -> None:
    session = BetterAuthSessionFactory.create()
    url = reverse("conversations:conversation-latest", args=[session.user_id])

    response = jwt_client(signed_token(session)).get(url)

    assert response.status_code == 200


@pytest.mark.usefixtures("url_mode")
def test_authenticate_is_none_without_a_bearer_header() -> None:
    request = Request(APIRequestFactory().get("/"))

    assert BetterAuthJWTAuthentication().authenticate(request) is None


# Valid tokens


@pytest.mark.usefixtures("url_mode")
def test_authenticate_returns_the_tokens_user_and_a_jwt_credential(
    key: SigningKey,
) -> None:
    result = authenticate(key.sign())

    assert result == (
        ApiUser(id=USER_ID, email="ann@example.com", name="Ann"),
        Credential("jwt"),
    )


@pytest.mark.usefixtures("url_mode")
def test_authenticate_without_email_or_name_claims_gives_empty_strings(
    key: SigningKey,
) -> None:
    result = authenticate(key.sign(email=None, name=None))

    assert result is not None
    assert result[0] == ApiUser(id=USER_ID, email="", name="")


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "ES512", "RS256", "PS256"])
def test_authenticate_accepts_each_default_algorithm(
    settings: Settings, jwks_server: JWKSServer, alg: str
) -> None:
    signing = make_key(alg)
    jwks_server.publish(make_key("EdDSA"), signing)
    settings.BETTER_AUTH_JWKS_URL = jwks_server.url
    settings.BETTER_AUTH_JWT_ISSUER = ISSUER
    settings.BETTER_AUTH_JWT_AUDIENCE = AUDIENCE

    result = authenticate(signing.sign())

    assert result is not None
    assert result[0].id == USER_ID


@pytest.mark.usefixtures("url_mode")
def test_a_jwt_opens_the_api(key: SigningKey) -> None:
    client = jwt_client(key.sign())

    chat = client.post(
        reverse("conversations:chat", args=[USER_ID]),
        {"message": "hello"},
        format="json",
    )
    latest = client.get(reverse("conversations:conversation-latest", args=[USER_ID]))

    assert chat.status_code == 200
    assert Conversation.objects.get().owner_id == USER_ID
    assert latest.status_code == 200
    assert latest.json()["conversation_id"] == chat.json()["conversation_id"]


@pytest.mark.usefixtures("url_mode")
def test_a_jwt_opens_only_its_own_users_paths(key: SigningKey) -> None:
    client = jwt_client(key.sign())

    response = client.get(
        reverse("conversations:conversation-latest", args=["someone-else"])
    )

    assert response.status_code == 404


@pytest.mark.usefixtures("url_mode")
def test_a_warm_cache_costs_no_query_and_no_fetch(
    key: SigningKey,
    jwks_server: JWKSServer,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    authenticate(key.sign())

    with django_assert_num_queries(0):
        result = authenticate(key.sign())

    assert result == ANN
    assert jwks_server.requests == 1


# Refused tokens


@pytest.mark.usefixtures("url_mode")
@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"exp": dt.timedelta(seconds=-1)}, id="expired"),
        pytest.param({"exp": None}, id="no-exp"),
        pytest.param({"iss": "https://evil.example.com"}, id="other-iss"),
        pytest.param({"iss": None}, id="no-iss"),
        pytest.param({"aud": "https://other.example.com"}, id="other-aud"),
        pytest.param({"aud": None}, id="no-aud"),
        pytest.param({"nbf": dt.timedelta(seconds=60)}, id="not-yet-valid"),
        pytest.param({"sub": None}, id="no-sub"),
        pytest.param({"sub": ""}, id="empty-sub"),
    ],
)
def test_authenticate_refuses_bad_claims(
    key: SigningKey, claims: dict[str, Any]
) -> None:
    assert_refused(key.sign(**claims))


@pytest.mark.usefixtures("url_mode")
def test_authenticate_refuses_a_tampered_payload(key: SigningKey) -> None:
    header, _, signature = key.sign().split(".")
    forged = base64url_encode(
        json.dumps({"sub": "someone-else", "exp": 9999999999}).encode()
    ).decode()

    assert_refused(f"{header}.{forged}.{signature}")


@pytest.mark.usefixtures("url_mode")
def test_authenticate_refuses_a_token_signed_by_another_key(key: SigningKey) -> None:
    impostor = make_key("EdDSA")
    impostor.kid = key.kid

    assert_refused(impostor.sign())


@pytest.mark.usefixtures("url_mode")
def test_authenticate_refuses_alg_none(key: SigningKey) -> None:
    unsigned = jwt.encode(
        {"sub": USER_ID, "iss": ISSUER, "aud": AUDIENCE, "exp": 9999999999},
        "",
        algorithm="none",
        headers={"kid": key.kid},
    )

    assert jwt_header(unsigned) is not None
    assert_refused(unsigned)


@pytest.mark.usefixtures("url_mode")
def test_authenticate_refuses_hs256_even_when_configured(
    settings: Settings, key: SigningKey
) -> None:
    """HS256 keyed with the public key's bytes (algorithm confusion)."""
    settings.BETTER_AUTH_JWT_ALGORITHMS = [
        *settings.BETTER_AUTH_JWT_ALGORITHMS,
        "HS256",
    ]
    secret = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    claims = {"sub": USER_ID, "iss": ISSUER, "aud": AUDIENCE, "exp": 9999999999}
    signing_input = ".".join(
        base64url_encode(json.dumps(part).encode()).decode()
        for part in (header, claims)
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{base64url_encode(signature).decode()}"

    assert_refused(token)


@pytest.mark.usefixtures("url_mode")
def test_authenticate_refuses_an_algorithm_not_configured(
    settings: Settings, key: SigningKey
) -> None:
    settings.BETTER_AUTH_JWT_ALGORITHMS = ["ES256"]

    assert_refused(key.sign())


def test_authenticate_refuses_an_algorithm_the_key_is_not_for(
    settings: Settings, jwks_server: JWKSServer
) -> None:
    """An RS256 key cannot verify a PS256 token, nor an EC key an EdDSA one."""
    rsa_key = make_key("RS256")
    ec_key = make_key("ES256")
    jwks_server.publish(rsa_key, ec_key)
    settings.BETTER_AUTH_JWKS_URL = jwks_server.url
    settings.BETTER_AUTH_JWT_ISSUER = ISSUER
    settings.BETTER_AUTH_JWT_AUDIENCE = AUDIENCE
    pss = jwt.encode(
        {"sub": USER_ID, "iss": ISSUER, "aud": AUDIENCE, "exp": 9999999999},
        rsa_key.private,
        algorithm="PS256",
        headers={"kid": rsa_key.kid},
    )
    ed = make_key("EdDSA")
    ed.kid = ec_key.kid

    assert_refused(pss)
    assert_refused(ed.sign())


@pytest.mark.usefixtures("url_mode")
def test_authenticate_refuses_a_token_without_kid(key: SigningKey) -> None:
    token = jwt.encode(
        {"sub": USER_ID, "iss": ISSUER, "aud": AUDIENCE, "exp": 9999999999},
        key.private,
        algorithm="EdDSA",
    )

    assert_refused(token)


@pytest.mark.usefixtures("url_mode")
def test_a_refused_jwt_is_401_with_www_authenticate(key: SigningKey) -> None:
    client = jwt_client(key.sign(exp=int(time.time()) - 1))

    response = client.get(reverse("conversations:conversation-latest", args=[USER_ID]))

    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.usefixtures("url_mode")
def test_a_refused_jwt_is_not_logged(
    key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    token = key.sign(aud="https://other.example.com")

    with caplog.at_level(logging.DEBUG, logger="better_auth.jwt"):
        assert_refused(token)

    assert caplog.records
    assert token not in caplog.text
    assert token.split(".")[2] not in caplog.text


# Key rotation: unknown kid


@pytest.mark.usefixtures("url_mode")
def test_an_unknown_kid_fetches_the_keys_again(
    key: SigningKey, jwks_server: JWKSServer, clock: Clock
) -> None:
    authenticate(key.sign())
    rotated = make_key("EdDSA")
    jwks_server.publish(key, rotated)
    clock.advance(REFETCH_MIN_SECONDS)

    result = authenticate(rotated.sign())

    assert result == ANN
    assert jwks_server.requests == 2


@pytest.mark.usefixtures("url_mode")
def test_unknown_kids_refetch_at_most_once_per_interval(
    key: SigningKey, jwks_server: JWKSServer, clock: Clock
) -> None:
    authenticate(key.sign())
    clock.advance(REFETCH_MIN_SECONDS)

    for _ in range(20):
        stranger = make_key("EdDSA")
        assert_refused(stranger.sign())
        clock.advance(1)

    assert jwks_server.requests == 2
    clock.advance(REFETCH_MIN_SECONDS)
    assert_refused(make_key("EdDSA").sign())
    assert jwks_server.requests == 3


@pytest.mark.usefixtures("url_mode")
def test_keys_are_fetched_again_after_the_cache_ttl(
    settings: Settings, key: SigningKey, jwks_server: JWKSServer, clock: Clock
) -> None:
    settings.BETTER_AUTH_JWKS_CACHE_SECONDS = 60
    authenticate(key.sign())
    clock.advance(59)
    authenticate(key.sign())
    assert jwks_server.requests == 1

    jwks_server.publish()  # the key was withdrawn
    clock.advance(1)

    assert_refused(key.sign())
    assert jwks_server.requests == 2


# The JWKS endpoint down


@pytest.mark.usefixtures("url_mode")
def test_jwks_down_without_cached_keys_is_503_jwks_unavailable(
    key: SigningKey, jwks_server: JWKSServer
) -> None:
    jwks_server.status = 500

    response = jwt_client(key.sign()).get(
        reverse("conversations:conversation-latest", args=[USER_ID])
    )

    assert response.status_code == 503
    assert response.json() == {
        "detail": "The keys to verify the token are unavailable; try again later.",
        "code": "jwks_unavailable",
    }
    assert response["Retry-After"] == str(int(RETRY_AFTER_FAILURE_SECONDS))


def test_jwks_unreachable_is_503(
    settings: Settings, key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    # A port nothing listens on: bound, then closed.
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as server:
        port = server.server_address[1]
    settings.BETTER_AUTH_JWKS_URL = f"http://127.0.0.1:{port}/api/auth/jwks"
    settings.BETTER_AUTH_JWT_ISSUER = ISSUER
    settings.BETTER_AUTH_JWT_AUDIENCE = AUDIENCE

    with pytest.raises(JWKSUnavailable):
        authenticate(key.sign())

    assert "Could not load the JWKS" in caplog.text
    assert f"127.0.0.1:{port}" in caplog.text


@pytest.mark.usefixtures("url_mode")
def test_jwks_down_retries_only_after_a_pause(
    key: SigningKey, jwks_server: JWKSServer, clock: Clock
) -> None:
    jwks_server.status = 503
    for _ in range(5):
        with pytest.raises(JWKSUnavailable):
            authenticate(key.sign())
    assert jwks_server.requests == 1

    jwks_server.status = 200
    clock.advance(RETRY_AFTER_FAILURE_SECONDS)

    assert authenticate(key.sign()) == ANN
    assert jwks_server.requests == 2


@pytest.mark.usefixtures("url_mode")
def test_jwks_down_after_the_ttl_keeps_the_cached_keys(
    settings: Settings, key: SigningKey, jwks_server: JWKSServer, clock: Clock
) -> None:
    settings.BETTER_AUTH_JWKS_CACHE_SECONDS = 60
    authenticate(key.sign())
    jwks_server.status = 500
    clock.advance(61)

    result = authenticate(key.sign())

    assert result == ANN
    assert jwks_server.requests == 2


@pytest.mark.usefixtures("url_mode")
def test_jwks_down_longer_than_the_max_staleness_is_503(
    settings: Settings, key: SigningKey, jwks_server: JWKSServer, clock: Clock
) -> None:
    """A key the frontend withdrew must not outlive its endpoint's outage."""
    settings.BETTER_AUTH_JWKS_CACHE_SECONDS = 60
    settings.BETTER_AUTH_JWKS_MAX_STALE_SECONDS = 100
    authenticate(key.sign())
    jwks_server.status = 500
    clock.advance(159)
    assert authenticate(key.sign()) == ANN

    clock.advance(1)

    with pytest.raises(JWKSUnavailable):
        authenticate(key.sign())
    jwks_server.status = 200
    clock.advance(RETRY_AFTER_FAILURE_SECONDS)
    assert authenticate(key.sign()) == ANN


@pytest.mark.usefixtures("url_mode")
def test_a_jwks_redirect_is_not_followed(
    key: SigningKey, jwks_server: JWKSServer, caplog: pytest.LogCaptureFixture
) -> None:
    jwks_server.redirect_to = "/elsewhere/jwks"

    with pytest.raises(JWKSUnavailable):
        authenticate(key.sign())

    assert jwks_server.requests == 1
    assert "HTTP 302" in caplog.text


@pytest.mark.usefixtures("url_mode")
def test_a_trickling_jwks_endpoint_is_cut_at_the_deadline(
    key: SigningKey, jwks_server: JWKSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each byte comes well within any per-read timeout, the whole answer
    in seconds: the deadline is for the whole fetch, headers included."""
    monkeypatch.setattr(jwt_mode, "FETCH_DEADLINE_SECONDS", 0.5)
    jwks_server.byte_delay = 0.03  # several seconds for the whole answer
    started = time.monotonic()

    with pytest.raises(JWKSUnavailable):
        authenticate(key.sign())

    assert time.monotonic() - started < 1.5


@dataclass
class TLSFiles:
    server: ssl.SSLContext
    ca_file: str


def self_signed_ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return certificate, key


@pytest.fixture
def tls_files(tmp_path: Path) -> TLSFiles:
    """A test CA, and a server certificate it issued for 127.0.0.1."""
    ca, ca_key = self_signed_ca("JWKS test CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jwks")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (tmp_path / "server.pem").write_bytes(
        certificate.public_bytes(pem)
        + key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(pem))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "server.pem")
    return TLSFiles(server=server, ca_file=str(tmp_path / "ca.pem"))


@pytest.mark.parametrize("trusted", [True, False])
def test_a_jwks_over_https_needs_a_certificate_the_system_trusts(
    settings: Settings,
    key: SigningKey,
    tls_files: TLSFiles,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    trusted: bool,
) -> None:
    """The system's trust store decides: here OpenSSL's SSL_CERT_FILE, set to
    the test CA or to another one."""
    other_ca, _ = self_signed_ca("another CA")
    other_file = Path(tls_files.ca_file).with_name("other.pem")
    other_file.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    monkeypatch.setenv(
        "SSL_CERT_FILE", tls_files.ca_file if trusted else str(other_file)
    )
    with serve_jwks(tls_files.server) as server:
        server.publish(key)
        settings.BETTER_AUTH_JWKS_URL = server.url
        settings.BETTER_AUTH_JWT_ISSUER = ISSUER
        settings.BETTER_AUTH_JWT_AUDIENCE = AUDIENCE

        if trusted:
            assert authenticate(key.sign()) == ANN
        else:
            with pytest.raises(JWKSUnavailable):
                authenticate(key.sign())
            assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


@pytest.mark.usefixtures("url_mode")
def test_a_jwks_that_is_not_a_key_set_is_503(
    key: SigningKey, jwks_server: JWKSServer
) -> None:
    jwks_server.keys = "not a list"  # type: ignore[assignment]

    with pytest.raises(JWKSUnavailable):
        authenticate(key.sign())


@pytest.mark.usefixtures("url_mode")
def test_a_jwks_larger_than_the_limit_is_503(
    key: SigningKey, jwks_server: JWKSServer, caplog: pytest.LogCaptureFixture
) -> None:
    padding = {"kid": "padding", "kty": "oct", "x": "A" * MAX_JWKS_BYTES}
    jwks_server.keys = [key.public_jwk, padding]

    with pytest.raises(JWKSUnavailable):
        authenticate(key.sign())

    assert f"larger than {MAX_JWKS_BYTES} bytes" in caplog.text


def test_a_jwks_url_that_is_not_http_is_503(
    settings: Settings, key: SigningKey, tmp_path: Any
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [key.public_jwk]}))
    settings.BETTER_AUTH_JWKS_URL = path.as_uri()
    settings.BETTER_AUTH_JWT_ISSUER = ISSUER
    settings.BETTER_AUTH_JWT_AUDIENCE = AUDIENCE

    with pytest.raises(JWKSUnavailable):
        authenticate(key.sign())


# Table mode: Better Auth's jwks table


@pytest.fixture
def jwks_table(settings: Settings) -> str:
    """A table shaped like the JWT plugin's `jwks`, and JWT mode reading it.

    Its dates are typed as Better Auth 1.7's migrations type them: `date` on
    SQLite (which the driver's converters read as a date), `timestamptz` on
    PostgreSQL (better-auth/dist/db/get-migration.mjs).
    """
    date = "timestamptz" if connection.vendor == "postgresql" else "date"
    with connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TABLE "{TABLE}" (id TEXT PRIMARY KEY, "publicKey" TEXT NOT NULL,'
            f' "privateKey" TEXT NOT NULL, "createdAt" {date} NOT NULL,'
            f' "expiresAt" {date} NULL, alg TEXT NULL, crv TEXT NULL)'
        )
    settings.BETTER_AUTH_JWKS_TABLE = TABLE
    settings.BETTER_AUTH_JWT_ISSUER = ISSUER
    settings.BETTER_AUTH_JWT_AUDIENCE = AUDIENCE
    return TABLE


def store_key(
    table: str, key: SigningKey, *, expires_at: dt.datetime | str | None = None
) -> None:
    """A row as the plugin writes it: publicKey has neither kid nor alg."""
    public = {n: v for n, v in key.public_jwk.items() if n not in ("kid", "alg")}
    if isinstance(expires_at, dt.datetime):
        expires_at = better_auth_date(expires_at)
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{table}" (id, "publicKey", "privateKey", "createdAt",'  # noqa: S608
            ' "expiresAt", alg) VALUES (%s, %s, %s, %s, %s, %s)',
            [
                key.kid,
                json.dumps(public),
                '{"encrypted": "..."}',
                better_auth_date(dt.datetime.now(dt.UTC)),
                expires_at,
                key.alg,
            ],
        )


def test_table_mode_verifies_with_the_stored_key(
    jwks_table: str, key: SigningKey
) -> None:
    store_key(jwks_table, key)

    result = authenticate(key.sign())

    assert result is not None
    assert result[0].id == USER_ID


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_table_mode_infers_the_algorithm_from_the_key(
    jwks_table: str, alg: str
) -> None:
    signing = make_key(alg)
    store_key(jwks_table, signing)

    assert authenticate(signing.sign()) == ANN


def test_table_mode_caches_the_keys(
    jwks_table: str,
    key: SigningKey,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    store_key(jwks_table, key)
    with CaptureQueriesContext(connection) as first:
        authenticate(key.sign())
    reads = [q["sql"] for q in first.captured_queries if "SELECT" in q["sql"]]
    assert reads == [
        f'SELECT id, "publicKey", CAST("expiresAt" AS TEXT) FROM "{jwks_table}"'  # noqa: S608
    ]

    with django_assert_num_queries(0):
        result = authenticate(key.sign())

    assert result == ANN


def test_table_mode_finds_a_new_key_by_its_kid(
    jwks_table: str, key: SigningKey, clock: Clock
) -> None:
    store_key(jwks_table, key)
    authenticate(key.sign())
    rotated = make_key("EdDSA")
    store_key(jwks_table, rotated)
    clock.advance(REFETCH_MIN_SECONDS)

    assert authenticate(rotated.sign()) == ANN


def ago(**delta: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(**delta)


def test_table_mode_refuses_a_key_past_its_expiry_and_the_grace_period(
    jwks_table: str, key: SigningKey
) -> None:
    """The plugin's default grace period is 30 days: its JWKS endpoint no
    longer publishes the key, and the table mode no longer trusts it."""
    store_key(jwks_table, key, expires_at=ago(days=30, minutes=1))

    assert_refused(key.sign())


def test_table_mode_accepts_a_retired_key_within_the_grace_period(
    jwks_table: str, key: SigningKey
) -> None:
    store_key(jwks_table, key, expires_at=ago(days=29, hours=23))

    assert authenticate(key.sign()) == ANN


def test_table_mode_grace_period_is_the_setting(
    settings: Settings, jwks_table: str, key: SigningKey
) -> None:
    settings.BETTER_AUTH_JWKS_GRACE_SECONDS = 60
    kept = make_key("EdDSA")
    store_key(jwks_table, key, expires_at=ago(seconds=61))
    store_key(jwks_table, kept, expires_at=ago(seconds=50))

    assert_refused(key.sign())
    assert authenticate(kept.sign()) == ANN


def test_table_mode_a_cached_key_stops_verifying_at_its_end(
    settings: Settings,
    jwks_table: str,
    key: SigningKey,
    wall_clock: Clock,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    """The end is checked on each use, not only when the keys are read."""
    settings.BETTER_AUTH_JWKS_GRACE_SECONDS = 60
    store_key(jwks_table, key, expires_at=ago(seconds=30))
    assert authenticate(key.sign()) == ANN

    wall_clock.advance(31)

    with django_assert_num_queries(0):
        assert_refused(key.sign())


def test_table_mode_without_expiry_keeps_the_key(
    jwks_table: str, key: SigningKey, wall_clock: Clock
) -> None:
    store_key(jwks_table, key, expires_at=None)
    wall_clock.advance(10 * 365 * 86400)

    assert authenticate(key.sign()) == ANN


def test_table_mode_refuses_a_key_whose_expiry_is_unreadable(
    jwks_table: str, key: SigningKey
) -> None:
    """Fails closed. SQLite only: PostgreSQL's timestamptz holds no such text."""
    if connection.vendor != "sqlite":
        pytest.skip("only SQLite stores a date as any text")
    store_key(jwks_table, key, expires_at="next tuesday")

    assert_refused(key.sign())


def test_table_mode_refuses_a_key_not_in_the_table(
    jwks_table: str, key: SigningKey
) -> None:
    store_key(jwks_table, make_key("EdDSA"))

    assert_refused(key.sign())


def test_table_mode_without_the_table_is_503(
    settings: Settings, key: SigningKey
) -> None:
    settings.BETTER_AUTH_JWKS_TABLE = "no_such_jwks_table"
    settings.BETTER_AUTH_JWT_ISSUER = ISSUER
    settings.BETTER_AUTH_JWT_AUDIENCE = AUDIENCE

    response = jwt_client(key.sign()).get(
        reverse("conversations:conversation-latest", args=[USER_ID])
    )

    assert response.status_code == 503
    assert response.json()["code"] == "jwks_unavailable"


def test_changing_the_source_forgets_the_cached_keys(
    settings: Settings, jwks_server: JWKSServer, jwks_table: str, key: SigningKey
) -> None:
    store_key(jwks_table, key)
    assert authenticate(key.sign()) == ANN

    jwks_server.publish()
    settings.BETTER_AUTH_JWKS_URL = jwks_server.url

    assert_refused(key.sign())
