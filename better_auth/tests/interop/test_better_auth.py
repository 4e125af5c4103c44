"""The API against the real `better-auth` npm package (interop/better-auth/).

Users sign up, in and out through Better Auth's own HTTP handler, on the
test database; the API is then called with each credential form Better
Auth hands a frontend. Where it makes sense, Better Auth's own view of the
same credential (its /get-session) is checked too, so both sides agree.
"""

import datetime as dt
import json
import time
from typing import TYPE_CHECKING

from django.db import connection
from django.urls import reverse
from django.utils import timezone

import jwt
import pytest
from pytest_django import DjangoAssertNumQueries, Settings
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from better_auth.authentication import (
    ApiUser,
    BetterAuthSessionAuthentication,
    Credential,
)
from better_auth.jwt import BetterAuthJWTAuthentication, jwks_cache_clear
from better_auth.models import BetterAuthSession
from better_auth.tests.interop.node import (
    PASSWORD,
    BetterAuthClient,
    BetterAuthServer,
    SignedIn,
)
from conversations.models import Conversation

if TYPE_CHECKING:
    from rest_framework.response import _MonkeyPatchedResponse as TestResponse

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

INVALID_SESSION = {
    "detail": "Invalid or expired session.",
    "code": "authentication_failed",
}
INVALID_TOKEN = {"detail": "Invalid or expired token.", "code": "authentication_failed"}


def bearer_client(value: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {value}")
    return client


def cookie_client(name: str, value: str, *, origin: str | None = None) -> APIClient:
    """The Cookie header a browser sends back, byte for byte."""
    client = APIClient()
    extra = {"HTTP_COOKIE": f"{name}={value}"}
    if origin is not None:
        extra["HTTP_ORIGIN"] = origin
    client.credentials(**extra)
    return client


def chat(client: APIClient, user_id: str) -> "TestResponse":
    return client.post(
        reverse("conversations:chat", args=[user_id]),
        {"message": "hello from Better Auth"},
        format="json",
    )


def latest(client: APIClient, user_id: str) -> "TestResponse":
    return client.get(reverse("conversations:conversation-latest", args=[user_id]))


def assert_opens_the_api(client: APIClient, user_id: str) -> None:
    """POST chat and GET conversations both answer 200 for `user_id`."""
    sent = chat(client, user_id)
    assert sent.status_code == 200, sent.json()
    got = latest(client, user_id)
    assert got.status_code == 200, got.json()
    assert got.json()["conversation_id"] == sent.json()["conversation_id"]
    conversation = Conversation.objects.get(pk=sent.json()["conversation_id"])
    assert conversation.owner_id == user_id


def assert_refused(client: APIClient, user_id: str, body: dict[str, str]) -> None:
    for response in (chat(client, user_id), latest(client, user_id)):
        assert response.status_code == 401
        assert response.json() == body
        assert response["WWW-Authenticate"] == "Bearer"


def better_auth_session_user(
    better_auth: BetterAuthClient, bearer: str | None = None, cookie: str | None = None
) -> str | None:
    """The user id Better Auth itself sees for a credential, or None."""
    reply = better_auth.get_session(bearer=bearer, cookie=cookie)
    assert reply.status == 200, reply.body
    return None if reply.body is None else reply.body["user"]["id"]


# Session credentials that Better Auth hands out


def test_raw_session_token_opens_the_api(signed_in: SignedIn) -> None:
    assert "." not in signed_in.token

    assert_opens_the_api(bearer_client(signed_in.token), signed_in.user_id)


def test_set_auth_token_header_opens_the_api(
    better_auth: BetterAuthClient, signed_in: SignedIn
) -> None:
    assert signed_in.set_auth_token.startswith(f"{signed_in.token}.")
    assert better_auth_session_user(better_auth, signed_in.set_auth_token) == (
        signed_in.user_id
    )

    assert_opens_the_api(bearer_client(signed_in.set_auth_token), signed_in.user_id)


def test_url_encoded_cookie_value_as_bearer_opens_the_api(
    better_auth: BetterAuthClient, signed_in: SignedIn
) -> None:
    assert "%" in signed_in.cookie_value
    assert better_auth_session_user(better_auth, signed_in.cookie_value) == (
        signed_in.user_id
    )

    assert_opens_the_api(bearer_client(signed_in.cookie_value), signed_in.user_id)


def test_session_token_from_sign_in_opens_the_api(
    better_auth: BetterAuthClient, signed_in: SignedIn, email: str
) -> None:
    again = better_auth.sign_in(email=email, password=PASSWORD)

    assert again.token != signed_in.token
    assert again.user_id == signed_in.user_id
    assert_opens_the_api(bearer_client(again.set_auth_token), again.user_id)
    assert_opens_the_api(bearer_client(signed_in.token), signed_in.user_id)


def test_the_request_user_is_better_auths_user(
    better_auth: BetterAuthClient, email: str
) -> None:
    signed_in = better_auth.sign_up(email=email, password=PASSWORD, name="Zoë Ünïcode")
    request = Request(
        APIRequestFactory().get(
            "/", HTTP_AUTHORIZATION=f"Bearer {signed_in.set_auth_token}"
        )
    )

    result = BetterAuthSessionAuthentication().authenticate(request)

    assert result is not None
    user, credential = result
    assert user == ApiUser(id=signed_in.user_id, email=email, name="Zoë Ünïcode")
    session = BetterAuthSession.objects.get(token=signed_in.token)
    assert credential == Credential("bearer", session.id)


def test_session_cookie_as_better_auth_set_it_opens_the_api(
    settings: Settings, better_auth: BetterAuthClient, signed_in: SignedIn
) -> None:
    settings.FRONTEND_ORIGINS = [better_auth.base_url]
    assert signed_in.cookie_name == "better-auth.session_token"
    cookie = f"{signed_in.cookie_name}={signed_in.cookie_value}"
    assert better_auth_session_user(better_auth, cookie=cookie) == signed_in.user_id

    client = cookie_client(
        signed_in.cookie_name, signed_in.cookie_value, origin=better_auth.base_url
    )

    assert_opens_the_api(client, signed_in.user_id)


def test_secure_session_cookie_as_better_auth_set_it_opens_the_api(
    settings: Settings, secure_better_auth: BetterAuthClient, email: str
) -> None:
    settings.FRONTEND_ORIGINS = [secure_better_auth.base_url]
    signed_in = secure_better_auth.sign_up(email=email, password=PASSWORD, name="Sec")
    assert signed_in.cookie_name == "__Secure-better-auth.session_token"

    client = cookie_client(
        signed_in.cookie_name,
        signed_in.cookie_value,
        origin=secure_better_auth.base_url,
    )

    assert_opens_the_api(client, signed_in.user_id)


def test_plain_cookie_value_under_the_secure_name_opens_the_api(
    signed_in: SignedIn,
) -> None:
    client = cookie_client("__Secure-better-auth.session_token", signed_in.cookie_value)

    assert_opens_the_api(client, signed_in.user_id)


def test_cookie_post_from_an_untrusted_origin_is_refused(
    settings: Settings, better_auth: BetterAuthClient, signed_in: SignedIn
) -> None:
    settings.FRONTEND_ORIGINS = [better_auth.base_url]
    client = cookie_client(
        signed_in.cookie_name, signed_in.cookie_value, origin="https://evil.example"
    )

    response = chat(client, signed_in.user_id)

    assert response.status_code == 403
    assert response.json()["code"] == "untrusted_origin"


# Sessions Better Auth no longer honours


def test_session_signed_out_through_better_auth_is_refused(
    better_auth: BetterAuthClient, signed_in: SignedIn
) -> None:
    assert_opens_the_api(bearer_client(signed_in.token), signed_in.user_id)

    reply = better_auth.sign_out(signed_in.set_auth_token)

    assert reply.status == 200, reply.body
    assert better_auth_session_user(better_auth, signed_in.set_auth_token) is None
    assert_refused(bearer_client(signed_in.token), signed_in.user_id, INVALID_SESSION)
    assert_refused(
        bearer_client(signed_in.set_auth_token), signed_in.user_id, INVALID_SESSION
    )
    assert_refused(
        cookie_client(signed_in.cookie_name, signed_in.cookie_value),
        signed_in.user_id,
        INVALID_SESSION,
    )


def test_session_past_its_expiry_is_refused(
    better_auth: BetterAuthClient, signed_in: SignedIn
) -> None:
    past = timezone.now() - dt.timedelta(seconds=1)
    updated = BetterAuthSession.objects.filter(token=signed_in.token).update(
        expires_at=past
    )
    assert updated == 1

    assert_refused(bearer_client(signed_in.token), signed_in.user_id, INVALID_SESSION)
    assert_refused(
        bearer_client(signed_in.set_auth_token), signed_in.user_id, INVALID_SESSION
    )
    assert_refused(
        cookie_client(signed_in.cookie_name, signed_in.cookie_value),
        signed_in.user_id,
        INVALID_SESSION,
    )
    assert better_auth_session_user(better_auth, signed_in.set_auth_token) is None


# Another frontend's secret


def test_tokens_signed_with_another_secret_are_refused(
    better_auth: BetterAuthClient, other_better_auth: BetterAuthClient, email: str
) -> None:
    signed_in = other_better_auth.sign_up(email=email, password=PASSWORD, name="O")
    # Better Auth with our secret refuses them too.
    assert better_auth_session_user(better_auth, signed_in.set_auth_token) is None

    for client in (
        bearer_client(signed_in.set_auth_token),
        bearer_client(signed_in.cookie_value),
        cookie_client(signed_in.cookie_name, signed_in.cookie_value),
        cookie_client(f"__Secure-{signed_in.cookie_name}", signed_in.cookie_value),
    ):
        assert_refused(client, signed_in.user_id, INVALID_SESSION)


def test_raw_token_carries_no_signature_so_any_secret_issues_it(
    better_auth: BetterAuthClient, other_better_auth: BetterAuthClient, email: str
) -> None:
    """A raw token is the session row's own: Better Auth's bearer plugin
    accepts it whoever signed the cookie, and so does the API, unless
    signatures are required."""
    signed_in = other_better_auth.sign_up(email=email, password=PASSWORD, name="O")

    assert better_auth_session_user(better_auth, signed_in.token) == signed_in.user_id
    assert_opens_the_api(bearer_client(signed_in.token), signed_in.user_id)


def test_required_signature_refuses_raw_tokens_from_better_auth(
    settings: Settings, signed_in: SignedIn
) -> None:
    settings.BETTER_AUTH_REQUIRE_SIGNATURE = True

    assert_refused(
        bearer_client(signed_in.token),
        signed_in.user_id,
        {
            "detail": "A signed session token is required.",
            "code": "authentication_failed",
        },
    )
    assert_opens_the_api(bearer_client(signed_in.set_auth_token), signed_in.user_id)


# Stateless mode: the JWT plugin


def jwt_mode_from_url(settings: Settings, keys_from: BetterAuthClient) -> None:
    settings.BETTER_AUTH_JWKS_URL = keys_from.jwks_url
    settings.BETTER_AUTH_JWT_ISSUER = keys_from.base_url
    settings.BETTER_AUTH_JWT_AUDIENCE = keys_from.base_url


def test_jwt_from_the_token_endpoint_opens_the_api(
    settings: Settings, better_auth: BetterAuthClient, signed_in: SignedIn
) -> None:
    jwt_mode_from_url(settings, better_auth)
    token = better_auth.jwt(signed_in.set_auth_token)
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})

    assert header["alg"] == "EdDSA"
    assert claims["sub"] == signed_in.user_id
    assert claims["iss"] == claims["aud"] == better_auth.base_url
    assert_opens_the_api(bearer_client(token), signed_in.user_id)


def test_jwt_from_the_set_auth_jwt_header_opens_the_api(
    settings: Settings, better_auth: BetterAuthClient, signed_in: SignedIn
) -> None:
    jwt_mode_from_url(settings, better_auth)
    reply = better_auth.get_session(bearer=signed_in.set_auth_token)
    token = reply.headers["set-auth-jwt"]

    assert_opens_the_api(bearer_client(token), signed_in.user_id)


def test_jwt_gives_the_request_user_from_its_claims(
    settings: Settings,
    better_auth: BetterAuthClient,
    signed_in: SignedIn,
    email: str,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    jwt_mode_from_url(settings, better_auth)
    token = better_auth.jwt(signed_in.token)
    request = Request(
        APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {token}")
    )
    authentication = BetterAuthJWTAuthentication()
    authentication.authenticate(request)  # warms the key cache

    with django_assert_num_queries(0):
        result = authentication.authenticate(request)

    assert result == (
        ApiUser(id=signed_in.user_id, email=email, name="Ann Interop"),
        Credential("jwt"),
    )


def test_jwt_verified_with_keys_from_the_jwks_table_opens_the_api(
    settings: Settings, better_auth: BetterAuthClient, signed_in: SignedIn
) -> None:
    token = better_auth.jwt(signed_in.token)  # the plugin stores its key
    settings.BETTER_AUTH_JWKS_TABLE = "jwks"
    settings.BETTER_AUTH_JWT_ISSUER = better_auth.base_url
    settings.BETTER_AUTH_JWT_AUDIENCE = better_auth.base_url

    assert_opens_the_api(bearer_client(token), signed_in.user_id)


@pytest.mark.parametrize(
    ("instance", "alg", "table"),
    [("es256_jwt", "ES256", "jwks_es256"), ("rs256_jwt", "RS256", "jwks_rs256")],
)
def test_jwt_with_other_plugin_algorithms_opens_the_api(
    settings: Settings,
    better_auth_server: BetterAuthServer,
    email: str,
    instance: str,
    alg: str,
    table: str,
) -> None:
    """keyPairConfig.alg ES256 / RS256, keys from the endpoint or the table."""
    better_auth = better_auth_server.client(instance)
    signed_in = better_auth.sign_up(email=email, password=PASSWORD, name="Alg")
    token = better_auth.jwt(signed_in.token)
    assert jwt.get_unverified_header(token)["alg"] == alg

    jwt_mode_from_url(settings, better_auth)
    assert_opens_the_api(bearer_client(token), signed_in.user_id)

    settings.BETTER_AUTH_JWKS_URL = ""
    settings.BETTER_AUTH_JWKS_TABLE = table
    assert_opens_the_api(bearer_client(token), signed_in.user_id)


def retire_key(table: str, kid: str, *, days_ago: int | None) -> None:
    """Sets the key's expiresAt, as the plugin's rotation does (None: live)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{table}" SET "expiresAt" = '  # noqa: S608
            "now() - make_interval(days => %s) WHERE id = %s",
            [days_ago, kid],
        )


def test_table_mode_trusts_a_retired_key_as_long_as_better_auth_publishes_it(
    settings: Settings, other_better_auth: BetterAuthClient, email: str
) -> None:
    """The plugin's JWKS endpoint publishes a key until its expiresAt plus
    its grace period (default 30 days); the table mode trusts it as long."""
    signed_in = other_better_auth.sign_up(email=email, password=PASSWORD, name="R")
    token = other_better_auth.jwt(signed_in.token)
    kid = jwt.get_unverified_header(token)["kid"]
    settings.BETTER_AUTH_JWKS_TABLE = "jwks_other"
    settings.BETTER_AUTH_JWT_ISSUER = other_better_auth.base_url
    settings.BETTER_AUTH_JWT_AUDIENCE = other_better_auth.base_url

    def published() -> bool:
        reply = other_better_auth.request("GET", "/jwks")
        return kid in {key["kid"] for key in reply.body["keys"]}

    try:
        retire_key("jwks_other", kid, days_ago=29)
        assert published()
        assert_opens_the_api(bearer_client(token), signed_in.user_id)

        retire_key("jwks_other", kid, days_ago=31)
        jwks_cache_clear()
        assert not published()
        assert_refused(bearer_client(token), signed_in.user_id, INVALID_TOKEN)
    finally:
        retire_key("jwks_other", kid, days_ago=None)


def test_session_tokens_still_open_the_api_in_jwt_mode(
    settings: Settings, better_auth: BetterAuthClient, signed_in: SignedIn
) -> None:
    jwt_mode_from_url(settings, better_auth)

    assert_opens_the_api(bearer_client(signed_in.token), signed_in.user_id)
    assert_opens_the_api(bearer_client(signed_in.set_auth_token), signed_in.user_id)


def test_tampered_jwt_is_refused(
    settings: Settings, better_auth: BetterAuthClient, signed_in: SignedIn, email: str
) -> None:
    jwt_mode_from_url(settings, better_auth)
    token = better_auth.jwt(signed_in.token)
    someone = better_auth.sign_up(
        email=f"other-{email}", password=PASSWORD, name="Someone"
    )
    header, payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    forged_payload = jwt.utils.base64url_encode(
        json.dumps({**claims, "sub": someone.user_id}).encode()
    ).decode()
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]

    assert_refused(
        bearer_client(f"{header}.{forged_payload}.{signature}"),
        someone.user_id,
        INVALID_TOKEN,
    )
    assert_refused(
        bearer_client(f"{header}.{payload}.{flipped}"), signed_in.user_id, INVALID_TOKEN
    )


def test_expired_jwt_is_refused(
    settings: Settings, short_jwt_better_auth: BetterAuthClient, email: str
) -> None:
    jwt_mode_from_url(settings, short_jwt_better_auth)
    signed_in = short_jwt_better_auth.sign_up(email=email, password=PASSWORD, name="S")
    token = short_jwt_better_auth.jwt(signed_in.token)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    client = bearer_client(token)
    assert latest(client, signed_in.user_id).status_code == 200

    time.sleep(max(0.0, expires - time.time()) + 0.1)

    assert_refused(client, signed_in.user_id, INVALID_TOKEN)


def test_jwt_for_another_audience_is_refused(
    settings: Settings, better_auth: BetterAuthClient, signed_in: SignedIn
) -> None:
    jwt_mode_from_url(settings, better_auth)
    settings.BETTER_AUTH_JWT_AUDIENCE = "https://another-api.example.com"

    assert_refused(
        bearer_client(better_auth.jwt(signed_in.token)),
        signed_in.user_id,
        INVALID_TOKEN,
    )


def test_jwt_signed_with_another_frontends_key_is_refused(
    settings: Settings,
    better_auth: BetterAuthClient,
    other_better_auth: BetterAuthClient,
    email: str,
) -> None:
    """Only the key differs: issuer and audience are the other frontend's."""
    signed_in = other_better_auth.sign_up(email=email, password=PASSWORD, name="O")
    token = other_better_auth.jwt(signed_in.token)
    settings.BETTER_AUTH_JWKS_URL = better_auth.jwks_url
    settings.BETTER_AUTH_JWT_ISSUER = other_better_auth.base_url
    settings.BETTER_AUTH_JWT_AUDIENCE = other_better_auth.base_url

    assert_refused(bearer_client(token), signed_in.user_id, INVALID_TOKEN)
