"""Failed authentications per client address (RATE_LIMIT_AUTH_FAILURES):
over the limit, a request with credentials gets 429 with Retry-After and no
database lookup; requests that authenticate count nothing and cost no
extra statement."""

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.db import connection
from django.test.utils import CaptureQueriesContext

import pytest
from pytest_django import DjangoAssertNumQueries, Settings
from rest_framework.test import APIClient

from better_auth.models import BetterAuthSession
from better_auth.tests.factories import (
    BetterAuthSessionFactory,
    bad_signature,
    bearer,
    cookie,
    encoded,
)
from conversations.tests.paths import latest_url

if TYPE_CHECKING:
    from rest_framework.response import _MonkeyPatchedResponse as TestResponse

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("advance_clock")]

ATTACKER = "203.0.113.7"
OTHER = "198.51.100.9"
THROTTLED = {
    "detail": "Too many failed authentications from this address. "
    "Expected available in 3600 seconds.",
    "code": "throttled",
}


@pytest.fixture(autouse=True)
def _limit(settings: Settings) -> None:
    settings.RATE_LIMIT_AUTH_FAILURES = "3/hour"


def get(
    session: BetterAuthSession,
    headers: dict[str, str],
    address: str = ATTACKER,
    forwarded_for: str | None = None,
) -> "TestResponse":
    client = APIClient(REMOTE_ADDR=address)
    if forwarded_for is not None:
        headers = {**headers, "X-Forwarded-For": forwarded_for}
    return client.get(latest_url(session.user_id), headers=headers)


def fail(session: BetterAuthSession, times: int) -> list[int]:
    """`times` requests with a made-up token; their statuses."""
    return [get(session, bearer(f"not-a-token-{n}")).status_code for n in range(times)]


def assert_throttled(response: "TestResponse") -> None:
    assert response.status_code == 429
    assert response.json() == THROTTLED
    assert response.headers["Retry-After"] == "3600"
    assert "WWW-Authenticate" not in response.headers


def test_address_over_its_failures_gets_429_without_a_query(
    session: BetterAuthSession, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    assert fail(session, 3) == [401, 401, 401]

    with django_assert_num_queries(0):
        response = get(session, bearer("yet-another-token"))

    assert_throttled(response)


def test_over_the_limit_even_a_valid_session_waits(
    session: BetterAuthSession,
) -> None:
    """The limit is the address's: a valid token from it waits too."""
    fail(session, 3)

    assert_throttled(get(session, bearer(session.token)))


def test_next_window_lets_the_address_try_again(
    session: BetterAuthSession, advance_clock: Callable[[float], None]
) -> None:
    fail(session, 3)
    assert get(session, bearer(session.token)).status_code == 429

    advance_clock(3600)

    assert get(session, bearer(session.token)).status_code == 200


def test_other_addresses_are_not_limited(session: BetterAuthSession) -> None:
    fail(session, 3)

    assert get(session, bearer(session.token), address=OTHER).status_code == 200
    assert get(session, bearer("wrong"), address=OTHER).status_code == 401


@pytest.mark.parametrize(
    "credential",
    [
        pytest.param(lambda s: bearer(f"{s.token}.x"), id="bad-signed-bearer"),
        pytest.param(lambda s: bearer("a b c"), id="malformed-header"),
        pytest.param(lambda s: cookie(encoded(bad_signature(s))), id="bad-cookie"),
        pytest.param(lambda s: cookie("unsigned"), id="unsigned-cookie"),
    ],
)
def test_every_kind_of_failed_credential_counts(
    session: BetterAuthSession,
    credential: Callable[[BetterAuthSession], dict[str, str]],
) -> None:
    statuses = [get(session, credential(session)).status_code for _ in range(4)]

    assert statuses == [401, 401, 401, 429]


def test_failed_jwts_count(session: BetterAuthSession, settings: Settings) -> None:
    settings.BETTER_AUTH_JWKS_URL = "https://app.example.com/api/auth/jwks"
    settings.BETTER_AUTH_JWT_ISSUER = settings.BETTER_AUTH_JWT_AUDIENCE = "x"
    # A JWT signed with HS256: refused before any key is looked up.
    token = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsifQ.eyJzdWIiOiJ4In0.c2ln"

    statuses = [get(session, bearer(token)).status_code for _ in range(4)]

    assert statuses == [401, 401, 401, 429]


def test_successes_and_missing_credentials_count_nothing(
    session: BetterAuthSession,
) -> None:
    for _ in range(5):
        assert get(session, bearer(session.token)).status_code == 200
        assert get(session, {}).status_code == 401

    assert fail(session, 4) == [401, 401, 401, 429]


def test_authenticated_request_costs_no_extra_statement(
    session: BetterAuthSession, settings: Settings
) -> None:
    """The same statements with the limit on as with it off."""
    settings.RATE_LIMIT_AUTH_FAILURES = "off"
    with CaptureQueriesContext(connection) as off:
        assert get(session, bearer(session.token)).status_code == 200
    settings.RATE_LIMIT_AUTH_FAILURES = "3/hour"

    with CaptureQueriesContext(connection) as on:
        assert get(session, bearer(session.token)).status_code == 200

    assert len(on.captured_queries) == len(off.captured_queries)


def test_off_never_limits(session: BetterAuthSession, settings: Settings) -> None:
    settings.RATE_LIMIT_AUTH_FAILURES = "off"

    assert fail(session, 5) == [401] * 5


def test_forwarded_for_is_ignored_without_trusted_proxies(
    session: BetterAuthSession,
) -> None:
    """DJANGO_NUM_PROXIES=0: a client cannot pose as many by writing
    X-Forwarded-For."""
    for n in range(3):
        get(session, bearer("wrong"), forwarded_for=f"10.0.0.{n}")

    response = get(session, bearer("wrong"), forwarded_for="10.0.0.99")

    assert_throttled(response)


def test_behind_a_trusted_proxy_the_forwarded_address_counts(
    session: BetterAuthSession, settings: Settings
) -> None:
    """DJANGO_NUM_PROXIES=1: the proxy's entry, the last, is the client;
    what the client wrote before it is not."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = "10.1.1.1"
    for n in range(3):
        get(
            session,
            bearer("wrong"),
            address=proxy,
            forwarded_for=f"192.0.2.{n}, {ATTACKER}",
        )

    attacker = get(session, bearer("wrong"), address=proxy, forwarded_for=ATTACKER)
    neighbour = get(session, bearer(session.token), address=proxy, forwarded_for=OTHER)

    assert_throttled(attacker)
    assert neighbour.status_code == 200


def test_failures_with_different_tokens_from_one_address_add_up() -> None:
    """Failures are the address's, not the token's: three users each
    mistyping once from one address use up its limit together."""
    sessions = BetterAuthSessionFactory.create_batch(3)
    for each in sessions:
        assert get(each, bearer(each.token + "x")).status_code == 401

    assert get(sessions[0], bearer(sessions[0].token)).status_code == 429
