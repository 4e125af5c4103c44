import base64
import datetime as dt
import hashlib
import hmac
from urllib.parse import quote

from django.contrib.auth import get_user_model
from django.utils import timezone

import pytest
from pytest_django import DjangoAssertNumQueries, Settings
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from better_auth.authentication import (
    ApiUser,
    BetterAuthSessionAuthentication,
    Credential,
    sign_token,
    verified_token,
)
from better_auth.models import BetterAuthSession, BetterAuthUser
from better_auth.tests.factories import (
    BetterAuthSessionFactory,
    BetterAuthUserFactory,
    expire_as_better_auth_writes_it,
)

TOKEN = "Xq3wM9vTz1LkP8sRb2NcY7hJd4FgA6eU"


def expected_signature(token: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), token.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def flip_first_char(value: str) -> str:
    return ("B" if value[0] == "A" else "A") + value[1:]


# sign_token / verified_token


def test_sign_token_is_token_dot_standard_padded_base64_hmac(
    settings: Settings,
) -> None:
    signed = sign_token(TOKEN)

    token, _, signature = signed.rpartition(".")
    assert token == TOKEN
    assert signature == expected_signature(TOKEN, settings.BETTER_AUTH_SECRET)
    # 32-byte digest: 44 characters of standard base64, one `=` of padding.
    assert len(signature) == 44
    assert signature.endswith("=")


def test_sign_token_uses_the_configured_secret(settings: Settings) -> None:
    settings.BETTER_AUTH_SECRET = "another-secret"

    assert sign_token(TOKEN) == f"{TOKEN}.{expected_signature(TOKEN, 'another-secret')}"


@pytest.mark.parametrize(
    "token", [TOKEN, "a", "with-dash_and_underscore", "a.b", "x" * 1024]
)
def test_verified_token_round_trips_sign_token(token: str) -> None:
    assert verified_token(sign_token(token)) == token


def test_verified_token_accepts_a_signature_made_independently(
    settings: Settings,
) -> None:
    signed = f"{TOKEN}.{expected_signature(TOKEN, settings.BETTER_AUTH_SECRET)}"

    assert verified_token(signed) == TOKEN


def test_verified_token_signed_with_other_secret_is_none(settings: Settings) -> None:
    configured = settings.BETTER_AUTH_SECRET
    settings.BETTER_AUTH_SECRET = "the-frontend-uses-another-secret"
    signed = sign_token(TOKEN)
    settings.BETTER_AUTH_SECRET = configured

    assert verified_token(signed) is None


def test_verified_token_with_signature_of_other_token_is_none() -> None:
    signature = sign_token("other-token").rpartition(".")[2]

    assert verified_token(f"{TOKEN}.{signature}") is None


def test_verified_token_tampered_token_is_none() -> None:
    signature = sign_token(TOKEN).rpartition(".")[2]

    assert verified_token(f"{flip_first_char(TOKEN)}.{signature}") is None


def test_verified_token_tampered_signature_is_none() -> None:
    signature = sign_token(TOKEN).rpartition(".")[2]

    assert verified_token(f"{TOKEN}.{flip_first_char(signature)}") is None


def test_verified_token_truncated_signature_is_none() -> None:
    signature = sign_token(TOKEN).rpartition(".")[2]

    assert verified_token(f"{TOKEN}.{signature[:-5]}") is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        ".",
        "..",
        TOKEN,  # no dot at all
        f".{expected_signature(TOKEN, 'x')}",  # empty token
        f"{TOKEN}.",  # empty signature
    ],
)
def test_verified_token_without_both_parts_is_none(value: str) -> None:
    assert verified_token(value) is None


@pytest.mark.parametrize(
    "signature",
    [
        "!!!!not-base64!!!!",
        "abc",
        "=====",
        "a b c d",
        "%2B%2F%3D",
        "Zm9v\x00YmFy",
    ],
)
def test_verified_token_garbage_base64_is_none(signature: str) -> None:
    assert verified_token(f"{TOKEN}.{signature}") is None


def test_verified_token_non_ascii_token_is_none_even_when_signed() -> None:
    token = "tökén-日本"

    assert verified_token(sign_token(token)) is None


def test_verified_token_non_ascii_signature_is_none() -> None:
    assert verified_token(f"{TOKEN}.ßignätüre日本=") is None


@pytest.mark.parametrize("token", ["tok\x00en", "tok\nen", "tok\x7fen"])
def test_verified_token_control_char_in_token_is_none(token: str) -> None:
    assert verified_token(sign_token(token)) is None


def test_verified_token_overlong_token_is_none_even_when_signed() -> None:
    assert verified_token(sign_token("x" * 1025)) is None


def test_verified_token_accepts_unpadded_and_url_safe_signature() -> None:
    """Documented leniency: a copied value may lose `=` or be URL-safe."""
    signature = sign_token(TOKEN).rpartition(".")[2]
    url_safe = signature.rstrip("=").replace("+", "-").replace("/", "_")

    assert verified_token(f"{TOKEN}.{signature.rstrip('=')}") == TOKEN
    assert verified_token(f"{TOKEN}.{url_safe}") == TOKEN


# BetterAuthSessionAuthentication.authenticate_token


@pytest.mark.django_db
def test_authenticate_token_returns_api_user_and_session_id_in_one_query(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    user = BetterAuthUserFactory.create(name="Ada Lovelace", email="ada@example.com")
    session = BetterAuthSessionFactory.create(user=user)

    with django_assert_num_queries(1):
        result = BetterAuthSessionAuthentication().authenticate_token(session.token)

    assert result == (
        ApiUser(id=user.id, email="ada@example.com", name="Ada Lovelace"),
        session.id,
    )


@pytest.mark.django_db
def test_authenticate_token_picks_the_sessions_own_user() -> None:
    BetterAuthSessionFactory.create_batch(3)
    session = BetterAuthSessionFactory.create()

    api_user, session_id = BetterAuthSessionAuthentication().authenticate_token(
        session.token
    )

    assert api_user.id == session.user_id
    assert session_id == session.id


@pytest.mark.django_db
def test_authenticate_token_writes_no_django_user() -> None:
    session = BetterAuthSessionFactory.create()
    User = get_user_model()

    api_user, _ = BetterAuthSessionAuthentication().authenticate_token(session.token)

    assert not isinstance(api_user, User)
    assert User.objects.count() == 0


@pytest.mark.django_db
def test_authenticate_token_unknown_token_fails_in_one_query(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    BetterAuthSessionFactory.create()

    with (
        django_assert_num_queries(1),
        pytest.raises(AuthenticationFailed, match="Invalid or expired session"),
    ):
        BetterAuthSessionAuthentication().authenticate_token("no-such-token")


@pytest.mark.django_db
def test_authenticate_token_expired_session_fails() -> None:
    session = BetterAuthSessionFactory.create(expired=True)

    with pytest.raises(AuthenticationFailed, match="Invalid or expired session"):
        BetterAuthSessionAuthentication().authenticate_token(session.token)


@pytest.mark.django_db
def test_authenticate_token_session_expiring_now_fails() -> None:
    session = BetterAuthSessionFactory.create(expires_at=timezone.now())

    with pytest.raises(AuthenticationFailed):
        BetterAuthSessionAuthentication().authenticate_token(session.token)


@pytest.mark.django_db
def test_authenticate_token_session_expiring_soon_succeeds() -> None:
    session = BetterAuthSessionFactory.create(
        expires_at=timezone.now() + dt.timedelta(seconds=60)
    )

    api_user, _ = BetterAuthSessionAuthentication().authenticate_token(session.token)

    assert api_user.id == session.user_id


@pytest.mark.django_db
def test_authenticate_token_session_expired_today_as_better_auth_writes_it_fails(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    """`2026-12-06T00:00:00.000Z` is expired at any later time that day.

    On SQLite the dates are text, and compared as text "T" sorts after the
    space of Django's `2026-12-06 10:00:00`: compared as time, not as text.
    Midnight UTC today is always past and always on today's date.
    """
    session = BetterAuthSessionFactory.create()
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    expire_as_better_auth_writes_it(session, midnight)

    with (
        django_assert_num_queries(1),
        pytest.raises(AuthenticationFailed, match="Invalid or expired session"),
    ):
        BetterAuthSessionAuthentication().authenticate_token(session.token)


@pytest.mark.django_db
@pytest.mark.parametrize("delta", [dt.timedelta(seconds=2), dt.timedelta(days=3)])
def test_authenticate_token_unexpired_as_better_auth_writes_it_succeeds(
    delta: dt.timedelta,
) -> None:
    session = BetterAuthSessionFactory.create()
    expire_as_better_auth_writes_it(session, timezone.now() + delta)

    api_user, _ = BetterAuthSessionAuthentication().authenticate_token(session.token)

    assert api_user.id == session.user_id


@pytest.mark.django_db
def test_authenticate_token_expired_yesterday_as_better_auth_writes_it_fails() -> None:
    session = BetterAuthSessionFactory.create()
    expire_as_better_auth_writes_it(session, timezone.now() - dt.timedelta(days=1))

    with pytest.raises(AuthenticationFailed):
        BetterAuthSessionAuthentication().authenticate_token(session.token)


@pytest.mark.django_db
def test_authenticate_token_session_of_deleted_user_fails() -> None:
    session = BetterAuthSessionFactory.create()
    BetterAuthUser.objects.filter(pk=session.user_id).delete()
    assert BetterAuthSession.objects.filter(pk=session.pk).exists()

    with pytest.raises(AuthenticationFailed):
        BetterAuthSessionAuthentication().authenticate_token(session.token)


# ApiUser


def test_api_user_is_authenticated_and_not_anonymous() -> None:
    user = ApiUser(id="u1", email="u1@example.com", name="U One")

    assert user.is_authenticated is True
    assert user.is_anonymous is False
    assert str(user) == "u1"


def test_api_user_is_immutable() -> None:
    user = ApiUser(id="u1", email="u1@example.com", name="U One")

    with pytest.raises(AttributeError):
        user.id = "u2"  # type: ignore[misc]


# BetterAuthSessionAuthentication.authenticate: what counts as "no credentials"


def drf_request(headers: dict[str, str] | None = None) -> Request:
    return Request(APIRequestFactory().get("/", headers=headers))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Token abc"},
        {"Cookie": "sessionid=abc; csrftoken=def"},
    ],
)
def test_authenticate_without_our_credentials_returns_none(
    headers: dict[str, str], django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    with django_assert_num_queries(0):
        assert (
            BetterAuthSessionAuthentication().authenticate(drf_request(headers)) is None
        )


def test_authenticate_header_is_bearer() -> None:
    assert BetterAuthSessionAuthentication().authenticate_header(drf_request()) == (
        "Bearer"
    )


@pytest.mark.django_db
def test_authenticate_reads_bearer_header() -> None:
    session = BetterAuthSessionFactory.create()

    result = BetterAuthSessionAuthentication().authenticate(
        drf_request({"Authorization": f"Bearer {session.token}"})
    )

    assert result is not None
    assert result[0].id == session.user_id
    assert result[1] == Credential("bearer", session.id)
    assert not result[1].via_cookie


@pytest.mark.django_db
def test_authenticate_marks_a_cookie_credential() -> None:
    session = BetterAuthSessionFactory.create()
    cookie = quote(sign_token(session.token), safe="")

    result = BetterAuthSessionAuthentication().authenticate(
        drf_request({"Cookie": f"better-auth.session_token={cookie}"})
    )

    assert result is not None
    assert result[1] == Credential("cookie", session.id)
    assert result[1].via_cookie
