"""Authentication over HTTP (CONTRACT §3): which credentials open the API and
how everything else is refused."""

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote

from django.contrib.auth import get_user_model
from django.utils import timezone

import pytest
from pytest_django import DjangoAssertNumQueries, Settings
from rest_framework.test import APIClient

from agent.tests.fakes import RecordingAgent
from better_auth.authentication import sign_token
from better_auth.models import BetterAuthSession, BetterAuthUser
from better_auth.tests.factories import (
    COOKIE,
    SECURE_COOKIE,
    BetterAuthSessionFactory,
    Headers,
    bad_signature,
    bearer,
    cookie,
    encoded,
    signed_token,
)
from conversations.models import Conversation, Message, ToolCall
from conversations.tests.paths import chat_url, latest_url

if TYPE_CHECKING:
    from rest_framework.response import _MonkeyPatchedResponse as TestResponse

pytestmark = pytest.mark.django_db

NO_CONVERSATION = {
    "conversation_id": None,
    "title": None,
    "created_at": None,
    "updated_at": None,
    "message_count": 0,
}
NOT_FOUND = {"detail": "Not found.", "code": "not_found"}
NOT_PROVIDED = {
    "detail": "Authentication credentials were not provided.",
    "code": "not_authenticated",
}
INVALID_SESSION = {
    "detail": "Invalid or expired session.",
    "code": "authentication_failed",
}
MALFORMED = {
    "detail": "Malformed Authorization header.",
    "code": "authentication_failed",
}
SIGNATURE_REQUIRED = {
    "detail": "A signed session token is required.",
    "code": "authentication_failed",
}
# One of each way a session reaches the API; names resolve when called.
CREDENTIAL_FORMS = [
    pytest.param(lambda s: bearer(s.token), id="bearer-raw"),
    pytest.param(lambda s: bearer(signed_token(s)), id="bearer-signed"),
    pytest.param(lambda s: cookie(encoded(signed_token(s))), id="cookie"),
]


@pytest.fixture
def recording_agent(settings: Settings) -> Iterator[type[RecordingAgent]]:
    settings.AGENT_BACKEND = "agent.tests.fakes.RecordingAgent"
    RecordingAgent.reset()
    yield RecordingAgent
    RecordingAgent.reset()


def signed_with(token: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), token.encode(), hashlib.sha256).digest()
    return f"{token}.{base64.b64encode(digest).decode()}"


def get_latest(user_id: str, headers: Headers) -> "TestResponse":
    return APIClient().get(latest_url(user_id), headers=headers)


def assert_unauthorized(response: "TestResponse", body: dict[str, str]) -> None:
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json() == body


# Accepted credentials


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param(lambda s: bearer(s.token), id="bearer-raw"),
        pytest.param(
            lambda s: {"Authorization": f"bearer {s.token}"}, id="bearer-lowercase"
        ),
        pytest.param(lambda s: bearer(signed_token(s)), id="bearer-signed"),
        pytest.param(
            lambda s: bearer(quote(signed_token(s))), id="bearer-signed-url-encoded"
        ),
        pytest.param(
            lambda s: bearer(encoded(signed_token(s))),
            id="bearer-signed-fully-url-encoded",
        ),
        pytest.param(
            lambda s: cookie(encoded(signed_token(s))), id="cookie-url-encoded"
        ),
        pytest.param(lambda s: cookie(signed_token(s)), id="cookie-not-encoded"),
        pytest.param(
            lambda s: cookie(encoded(signed_token(s)), SECURE_COOKIE),
            id="secure-cookie",
        ),
        pytest.param(
            lambda s: {
                "Cookie": f"csrftoken=abc; {COOKIE}={encoded(signed_token(s))}; x=1"
            },
            id="cookie-among-others",
        ),
        pytest.param(
            lambda s: {
                "Authorization": "Basic dXNlcjpwYXNz",
                **cookie(encoded(signed_token(s))),
            },
            id="other-scheme-falls-back-to-cookie",
        ),
    ],
)
def test_auth_accepts_credentials(
    session: BetterAuthSession,
    credentials: Callable[[BetterAuthSession], Headers],
) -> None:
    response = get_latest(session.user_id, credentials(session))

    assert response.status_code == 200
    assert response.json() == NO_CONVERSATION


def test_auth_cookie_set_through_client_cookie_jar(session: BetterAuthSession) -> None:
    client = APIClient()
    client.cookies[COOKIE] = encoded(signed_token(session))

    response = client.get(latest_url(session.user_id))

    assert response.status_code == 200
    assert response.json() == NO_CONVERSATION


def test_auth_request_user_is_the_sessions_user(session: BetterAuthSession) -> None:
    other = BetterAuthSessionFactory.create()

    response = get_latest(other.user_id, bearer(session.token))

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


@pytest.mark.parametrize("name", ["todo.session_token", "__Secure-todo.session_token"])
def test_auth_custom_cookie_prefix_is_accepted(
    settings: Settings, session: BetterAuthSession, name: str
) -> None:
    settings.BETTER_AUTH_COOKIE_PREFIX = "todo"

    response = get_latest(session.user_id, cookie(encoded(signed_token(session)), name))

    assert response.status_code == 200
    assert response.json() == NO_CONVERSATION


@pytest.mark.parametrize("name", [COOKIE, SECURE_COOKIE])
def test_auth_custom_cookie_prefix_ignores_default_cookie(
    settings: Settings, session: BetterAuthSession, name: str
) -> None:
    settings.BETTER_AUTH_COOKIE_PREFIX = "todo"

    response = get_latest(session.user_id, cookie(encoded(signed_token(session)), name))

    assert_unauthorized(response, NOT_PROVIDED)


def test_auth_bearer_wins_over_cookie(session: BetterAuthSession) -> None:
    other = BetterAuthSessionFactory.create()
    headers = {**bearer(session.token), **cookie(encoded(signed_token(other)))}

    own = get_latest(session.user_id, headers)
    cookies_user = get_latest(other.user_id, headers)

    assert own.status_code == 200
    assert own.json() == NO_CONVERSATION
    assert cookies_user.status_code == 404
    assert cookies_user.json() == NOT_FOUND


def test_auth_invalid_bearer_is_not_rescued_by_valid_cookie(
    session: BetterAuthSession,
) -> None:
    headers = {**bearer("no-such-token"), **cookie(encoded(signed_token(session)))}

    response = get_latest(session.user_id, headers)

    assert_unauthorized(response, INVALID_SESSION)


def test_auth_secure_cookie_wins_over_plain_cookie(session: BetterAuthSession) -> None:
    other = BetterAuthSessionFactory.create()
    headers = {
        "Cookie": (
            f"{COOKIE}={encoded(signed_token(other))}; "
            f"{SECURE_COOKIE}={encoded(signed_token(session))}"
        )
    }

    response = get_latest(session.user_id, headers)

    assert response.status_code == 200


def test_auth_require_signature_refuses_raw_bearer(
    settings: Settings, session: BetterAuthSession
) -> None:
    settings.BETTER_AUTH_REQUIRE_SIGNATURE = True

    response = get_latest(session.user_id, bearer(session.token))

    assert_unauthorized(response, SIGNATURE_REQUIRED)


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param(lambda s: bearer(signed_token(s)), id="bearer-signed"),
        pytest.param(
            lambda s: bearer(quote(signed_token(s))), id="bearer-signed-url-encoded"
        ),
        pytest.param(lambda s: cookie(encoded(signed_token(s))), id="cookie"),
    ],
)
def test_auth_require_signature_accepts_signed(
    settings: Settings,
    session: BetterAuthSession,
    credentials: Callable[[BetterAuthSession], Headers],
) -> None:
    settings.BETTER_AUTH_REQUIRE_SIGNATURE = True

    response = get_latest(session.user_id, credentials(session))

    assert response.status_code == 200
    assert response.json() == NO_CONVERSATION


# Refused credentials


@pytest.mark.parametrize(
    ("credentials", "body"),
    [
        pytest.param(lambda s: {}, NOT_PROVIDED, id="none"),
        pytest.param(
            lambda s: {"Authorization": "Basic dXNlcjpwYXNz"},
            NOT_PROVIDED,
            id="basic-scheme",
        ),
        pytest.param(
            lambda s: {"Authorization": f"Token {s.token}"},
            NOT_PROVIDED,
            id="token-scheme",
        ),
        pytest.param(
            lambda s: {"Cookie": f"sessionid={s.token}"},
            NOT_PROVIDED,
            id="django-session-cookie",
        ),
        pytest.param(
            lambda s: {"Cookie": f"better-auth.session_data={s.token}"},
            NOT_PROVIDED,
            id="other-better-auth-cookie",
        ),
        pytest.param(
            lambda s: {"Authorization": "Bearer"}, MALFORMED, id="bearer-no-token"
        ),
        pytest.param(
            lambda s: {"Authorization": "Bearer   "}, MALFORMED, id="bearer-blank"
        ),
        pytest.param(
            lambda s: {"Authorization": f"Bearer {s.token} extra"},
            MALFORMED,
            id="bearer-three-parts",
        ),
        pytest.param(
            lambda s: bearer("no-such-token"), INVALID_SESSION, id="unknown-raw"
        ),
        pytest.param(
            lambda s: bearer(sign_token("no-such-token")),
            INVALID_SESSION,
            id="unknown-signed",
        ),
        pytest.param(
            lambda s: bearer(bad_signature(s)), INVALID_SESSION, id="bearer-bad-sig"
        ),
        pytest.param(
            lambda s: bearer(signed_with(s.token, "another-secret")),
            INVALID_SESSION,
            id="bearer-other-secret",
        ),
        pytest.param(
            lambda s: bearer(f"{s.token}."), INVALID_SESSION, id="bearer-empty-sig"
        ),
        pytest.param(
            lambda s: bearer(f".{signed_token(s).rpartition('.')[2]}"),
            INVALID_SESSION,
            id="bearer-empty-token",
        ),
        pytest.param(lambda s: bearer("."), INVALID_SESSION, id="bearer-dot"),
        pytest.param(lambda s: bearer("abc.def"), INVALID_SESSION, id="dot-junk"),
        pytest.param(
            lambda s: bearer(f"{s.token}.!!!not-base64!!!"),
            INVALID_SESSION,
            id="dot-not-base64",
        ),
        pytest.param(
            lambda s: bearer(f"{signed_token(s)}.junk"),
            INVALID_SESSION,
            id="signed-plus-junk",
        ),
        pytest.param(
            lambda s: cookie(s.token), INVALID_SESSION, id="cookie-raw-unsigned"
        ),
        pytest.param(
            lambda s: cookie(encoded(bad_signature(s))),
            INVALID_SESSION,
            id="cookie-bad-sig",
        ),
        pytest.param(
            lambda s: cookie(encoded(signed_with(s.token, "another-secret"))),
            INVALID_SESSION,
            id="cookie-other-secret",
        ),
        pytest.param(
            lambda s: cookie(encoded(bad_signature(s)), SECURE_COOKIE),
            INVALID_SESSION,
            id="secure-cookie-bad-sig",
        ),
        pytest.param(lambda s: cookie(""), INVALID_SESSION, id="cookie-empty"),
        pytest.param(
            lambda s: cookie("", SECURE_COOKIE),
            INVALID_SESSION,
            id="secure-cookie-empty",
        ),
    ],
)
def test_auth_refuses_credentials(
    session: BetterAuthSession,
    credentials: Callable[[BetterAuthSession], Headers],
    body: dict[str, str],
) -> None:
    response = get_latest(session.user_id, credentials(session))

    assert_unauthorized(response, body)


@pytest.mark.parametrize("credentials", CREDENTIAL_FORMS)
def test_auth_refuses_expired_session(
    credentials: Callable[[BetterAuthSession], Headers],
) -> None:
    expired = BetterAuthSessionFactory.create(expired=True)

    response = get_latest(expired.user_id, credentials(expired))

    assert_unauthorized(response, INVALID_SESSION)


@pytest.mark.parametrize(
    ("expires_in", "status"),
    [
        pytest.param(dt.timedelta(seconds=-1), 401, id="1s-ago"),
        pytest.param(dt.timedelta(seconds=60), 200, id="in-60s"),
    ],
)
def test_auth_expiry_boundary(expires_in: dt.timedelta, status: int) -> None:
    session = BetterAuthSessionFactory.create(expires_at=timezone.now() + expires_in)

    response = get_latest(session.user_id, bearer(session.token))

    assert response.status_code == status


@pytest.mark.parametrize("credentials", CREDENTIAL_FORMS)
def test_auth_refuses_session_whose_user_is_deleted(
    session: BetterAuthSession,
    credentials: Callable[[BetterAuthSession], Headers],
) -> None:
    # The session table has no foreign key (db_constraint=False), as a
    # Better Auth database may lag: the session row outlives its user.
    BetterAuthUser.objects.filter(pk=session.user_id).delete()
    assert BetterAuthSession.objects.filter(pk=session.pk).exists()

    response = get_latest(session.user_id, credentials(session))

    assert_unauthorized(response, INVALID_SESSION)


@pytest.mark.parametrize(
    ("authorization", "body"),
    [
        pytest.param("Bearer " + "x" * 5000, INVALID_SESSION, id="long-raw"),
        pytest.param("Bearer " + "x" * 1025, INVALID_SESSION, id="just-too-long"),
        # Header values reach Django as latin-1 decoded text.
        pytest.param("Bearer tök", MALFORMED, id="latin-1"),
        pytest.param(
            "Bearer " + "tökén日本".encode().decode("latin-1"), MALFORMED, id="utf-8"
        ),
        pytest.param("Bearer tok\x00en", INVALID_SESSION, id="nul"),
        pytest.param("Bearer tok\x01en", INVALID_SESSION, id="control"),
        pytest.param("Bearer tok\x7fen", INVALID_SESSION, id="del"),
        pytest.param("Bearer tok%00en", INVALID_SESSION, id="encoded-nul"),
        pytest.param("Bearer tok%0Aen", INVALID_SESSION, id="encoded-newline"),
        pytest.param("Bearer tok%C3%A9", INVALID_SESSION, id="encoded-non-ascii"),
        pytest.param("Bearer tok%FFen", INVALID_SESSION, id="encoded-invalid-utf8"),
        pytest.param("Bearer tok\x00en.c2ln", INVALID_SESSION, id="nul-signed"),
    ],
)
def test_auth_refuses_implausible_token_without_querying(
    django_assert_num_queries: DjangoAssertNumQueries,
    authorization: str,
    body: dict[str, str],
) -> None:
    with django_assert_num_queries(0):
        response = get_latest("someone", {"Authorization": authorization})

    assert_unauthorized(response, body)


@pytest.mark.parametrize("where", ["bearer", "cookie"])
def test_auth_refuses_long_token_even_when_signed(
    django_assert_num_queries: DjangoAssertNumQueries, where: str
) -> None:
    signed = sign_token("x" * 5000)
    headers = bearer(signed) if where == "bearer" else cookie(encoded(signed))

    with django_assert_num_queries(0):
        response = get_latest("someone", headers)

    assert_unauthorized(response, INVALID_SESSION)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("x" * 5000, id="long"),
        pytest.param(encoded("tök.én"), id="encoded-non-ascii"),
        pytest.param("tok%00en.c2ln", id="encoded-nul"),
        pytest.param("%FF%FE.%FF", id="invalid-utf8"),
    ],
)
def test_auth_refuses_junk_cookie_without_querying(
    django_assert_num_queries: DjangoAssertNumQueries, value: str
) -> None:
    with django_assert_num_queries(0):
        response = get_latest("someone", cookie(value))

    assert_unauthorized(response, INVALID_SESSION)


# Queries and writes


@pytest.mark.parametrize("credentials", CREDENTIAL_FORMS)
def test_auth_costs_one_query(
    session: BetterAuthSession,
    django_assert_num_queries: DjangoAssertNumQueries,
    credentials: Callable[[BetterAuthSession], Headers],
) -> None:
    headers = credentials(session)

    # One query to authenticate, one to look for the latest conversation.
    with django_assert_num_queries(2):
        response = get_latest(session.user_id, headers)

    assert response.status_code == 200


def test_auth_unknown_token_costs_one_query(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    with django_assert_num_queries(1):
        response = get_latest("someone", bearer("no-such-token"))

    assert_unauthorized(response, INVALID_SESSION)


def test_auth_writes_no_django_user(session: BetterAuthSession) -> None:
    response = get_latest(session.user_id, bearer(session.token))

    assert response.status_code == 200
    assert get_user_model().objects.count() == 0


def test_auth_signed_bearer_opens_chat(
    session: BetterAuthSession, recording_agent: type[RecordingAgent]
) -> None:
    response = APIClient().post(
        chat_url(session.user_id),
        {"message": "add buy milk"},
        format="json",
        headers=bearer(signed_token(session)),
    )

    assert response.status_code == 200
    assert response.json()["response"] == "echo: add buy milk"
    assert [call.user_id for call in recording_agent.calls] == [session.user_id]
    assert Conversation.objects.get().owner_id == session.user_id


@pytest.mark.parametrize(
    ("credentials", "body"),
    [
        pytest.param(lambda s: {}, NOT_PROVIDED, id="none"),
        pytest.param(lambda s: bearer("no-such-token"), INVALID_SESSION, id="unknown"),
        pytest.param(
            lambda s: bearer(bad_signature(s)), INVALID_SESSION, id="bad-signature"
        ),
        pytest.param(lambda s: cookie(s.token), INVALID_SESSION, id="cookie-unsigned"),
        pytest.param(
            lambda s: {"Authorization": "Bearer a b"}, MALFORMED, id="3-parts"
        ),
    ],
)
def test_auth_refused_chat_writes_nothing(
    session: BetterAuthSession,
    recording_agent: type[RecordingAgent],
    credentials: Callable[[BetterAuthSession], Headers],
    body: dict[str, str],
) -> None:
    conversation_count = Conversation.objects.count()
    message_count = Message.objects.count()
    tool_call_count = ToolCall.objects.count()

    response = APIClient().post(
        chat_url(session.user_id),
        {"message": "add buy milk"},
        format="json",
        headers=credentials(session),
    )

    assert_unauthorized(response, body)
    assert Conversation.objects.count() == conversation_count
    assert Message.objects.count() == message_count
    assert ToolCall.objects.count() == tool_call_count
    assert recording_agent.calls == []


def test_auth_refused_chat_for_expired_session_writes_nothing(
    recording_agent: type[RecordingAgent],
) -> None:
    expired = BetterAuthSessionFactory.create(expired=True)

    response = APIClient().post(
        chat_url(expired.user_id),
        {"message": "add buy milk"},
        format="json",
        headers=bearer(signed_token(expired)),
    )

    assert_unauthorized(response, INVALID_SESSION)
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()
    assert recording_agent.calls == []


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded"]
)
def test_auth_cookie_chat_from_html_form_content_type_writes_nothing(
    session: BetterAuthSession,
    recording_agent: type[RecordingAgent],
    content_type: str,
) -> None:
    """README: only JSON is parsed, so a cross-site form cannot use the cookie."""
    response = APIClient().post(
        chat_url(session.user_id),
        "message=add+buy+milk",
        content_type=content_type,
        headers=cookie(encoded(signed_token(session))),
    )

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()
    assert recording_agent.calls == []
