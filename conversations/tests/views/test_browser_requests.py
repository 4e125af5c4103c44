"""Calls from the frontend in a browser: CORS for FRONTEND_ORIGINS, and
cookie-authenticated writes only from a trusted origin."""

from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
from pytest_django import Settings
from rest_framework.test import APIClient

from better_auth.models import BetterAuthSession
from better_auth.tests.factories import BetterAuthSessionFactory, signed_token
from conversations.models import Conversation, Message
from conversations.tests.paths import chat_url, latest_url

if TYPE_CHECKING:
    from rest_framework.response import _MonkeyPatchedResponse as TestResponse

pytestmark = pytest.mark.django_db

FRONTEND = "https://app.example.com"  # FRONTEND_ORIGINS in test settings
UNTRUSTED = {
    "detail": "Requests authenticated by cookie must come from a trusted origin.",
    "code": "untrusted_origin",
}


def cookie_client(session: BetterAuthSession, name: str) -> APIClient:
    client = APIClient()
    client.cookies[name] = quote(signed_token(session), safe="")
    return client


def post_chat(
    client: APIClient, session: BetterAuthSession, **headers: str
) -> "TestResponse":
    return client.post(
        chat_url(session.user_id), {"message": "hi"}, format="json", headers=headers
    )


COOKIES = [
    pytest.param("better-auth.session_token", id="cookie"),
    pytest.param("__Secure-better-auth.session_token", id="secure-cookie"),
]


# --- Cookie-authenticated writes -------------------------------------------


@pytest.mark.parametrize("cookie", COOKIES)
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": FRONTEND}, id="frontend-origin"),
        pytest.param({"Origin": "http://testserver"}, id="own-origin"),
        pytest.param({"Referer": f"{FRONTEND}/chat?x=1"}, id="frontend-referer"),
        pytest.param({}, id="no-origin-not-a-browser"),
    ],
)
def test_cookie_post_from_trusted_origin_is_accepted(
    cookie: str, headers: dict[str, str]
) -> None:
    session = BetterAuthSessionFactory.create()

    response = post_chat(cookie_client(session, cookie), session, **headers)

    assert response.status_code == 200
    assert Message.objects.filter(conversation__owner_id=session.user_id).count() == 2


@pytest.mark.parametrize("cookie", COOKIES)
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "https://evil.example"}, id="other-origin"),
        pytest.param({"Origin": "null"}, id="opaque-origin"),
        pytest.param({"Origin": "http://app.example.com"}, id="frontend-over-http"),
        pytest.param({"Origin": "https://app.example.com.evil.example"}, id="suffix"),
        pytest.param({"Referer": "https://evil.example/page"}, id="other-referer"),
        pytest.param({"Referer": "not a url"}, id="garbage-referer"),
        pytest.param(
            {"Origin": "https://evil.example", "Referer": f"{FRONTEND}/"},
            id="origin-wins-over-referer",
        ),
    ],
)
def test_cookie_post_from_untrusted_origin_is_refused_and_stores_nothing(
    cookie: str, headers: dict[str, str]
) -> None:
    session = BetterAuthSessionFactory.create()

    response = post_chat(cookie_client(session, cookie), session, **headers)

    assert response.status_code == 403
    assert response.json() == UNTRUSTED
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()


def test_bearer_post_is_not_bound_to_an_origin() -> None:
    session = BetterAuthSessionFactory.create()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session.token}")

    response = post_chat(client, session, Origin="https://evil.example")

    assert response.status_code == 200


def test_cookie_read_from_another_origin_is_answered() -> None:
    # Reads change nothing; CORS keeps another site from reading the answer.
    session = BetterAuthSessionFactory.create()
    client = cookie_client(session, "better-auth.session_token")

    response = client.get(
        latest_url(session.user_id), headers={"Origin": "https://evil.example"}
    )

    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_trusted_origins_come_from_settings(settings: Settings) -> None:
    settings.FRONTEND_ORIGINS = ["https://other.example"]
    session = BetterAuthSessionFactory.create()
    client = cookie_client(session, "better-auth.session_token")

    refused = post_chat(client, session, Origin=FRONTEND)
    accepted = post_chat(client, session, Origin="https://other.example")

    assert (refused.status_code, accepted.status_code) == (403, 200)


# --- CORS -------------------------------------------------------------------


Preflight = Callable[[str], "TestResponse"]


@pytest.fixture
def preflight() -> Preflight:
    def send(origin: str) -> "TestResponse":
        return APIClient().options(
            chat_url("any-user"),
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": (
                    "authorization, content-type, idempotency-key, x-request-id"
                ),
            },
        )

    return send


def test_preflight_from_the_frontend_allows_credentials_and_headers(
    preflight: Preflight,
) -> None:
    response = preflight(FRONTEND)

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == FRONTEND
    assert response.headers["access-control-allow-credentials"] == "true"
    allowed = response.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "idempotency-key", "x-request-id"} <= {
        h.strip() for h in allowed.split(",")
    }
    assert "POST" in response.headers["access-control-allow-methods"]


def test_preflight_from_another_origin_gets_no_cors_grant(
    preflight: Preflight,
) -> None:
    response = preflight("https://evil.example")

    assert "access-control-allow-origin" not in response.headers


def test_frontend_may_read_answers_and_retry_after() -> None:
    session = BetterAuthSessionFactory.create()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session.token}")

    response = client.get(latest_url(session.user_id), headers={"Origin": FRONTEND})

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == FRONTEND
    assert response.headers["access-control-allow-credentials"] == "true"
    exposed = response.headers["access-control-expose-headers"].lower()
    assert {"retry-after", "idempotent-replayed", "x-request-id"} <= {
        h.strip() for h in exposed.split(",")
    }


def test_errors_carry_cors_headers_so_the_frontend_can_read_them() -> None:
    response = APIClient().get(latest_url("someone"), headers={"Origin": FRONTEND})

    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == FRONTEND


def test_admin_is_not_opened_to_cross_origin_calls() -> None:
    response = APIClient().get("/admin/login/", headers={"Origin": FRONTEND})

    assert "access-control-allow-origin" not in response.headers
