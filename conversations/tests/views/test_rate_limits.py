"""Per-user rate limits: RATE_LIMIT_CHAT for POST chat, RATE_LIMIT_READ for
the two reads; 429 with Retry-After and the JSON envelope."""

import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from django.core.cache import caches
from django.urls import reverse

import pytest
from pytest_django import Settings
from rest_framework.test import APIClient, APIRequestFactory

from better_auth.authentication import ApiUser
from better_auth.models import BetterAuthSession
from better_auth.tests.factories import BetterAuthSessionFactory
from conversations.models import Message
from conversations.throttles import UserRateThrottle
from conversations.views import ChatView

if TYPE_CHECKING:
    from rest_framework.response import _MonkeyPatchedResponse as TestResponse

pytestmark = pytest.mark.django_db


class Clock:
    """The throttle's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 999_980.0  # 20 s into a minute (999_960 = 16_666 * 60)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(UserRateThrottle, "timer", clock)
    return clock


def client_for(session: BetterAuthSession) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session.token}")
    return client


def chat(session: BetterAuthSession) -> "TestResponse":
    return client_for(session).post(
        reverse("conversations:chat", kwargs={"user_id": session.user_id}),
        {"message": "hello"},
        format="json",
    )


def latest(session: BetterAuthSession) -> "TestResponse":
    return client_for(session).get(
        reverse(
            "conversations:conversation-latest", kwargs={"user_id": session.user_id}
        )
    )


def messages(session: BetterAuthSession) -> "TestResponse":
    return client_for(session).get(
        reverse(
            "conversations:message-list",
            kwargs={"user_id": session.user_id, "conversation_id": uuid.uuid4()},
        )
    )


def assert_throttled(response: "TestResponse", retry_after: int) -> None:
    assert response.status_code == 429
    assert response.json() == {
        "detail": f"Request was throttled. Expected available in {retry_after} "
        f"second{'s' if retry_after != 1 else ''}.",
        "code": "throttled",
    }
    assert response.headers["Retry-After"] == str(retry_after)


def test_chat_over_the_limit_is_429_with_retry_after_and_stores_nothing(
    settings: Settings, clock: Clock
) -> None:
    settings.RATE_LIMIT_CHAT = "2/minute"
    session = BetterAuthSessionFactory.create()

    statuses = [chat(session).status_code for _ in range(2)]
    refused = chat(session)

    assert statuses == [200, 200]
    assert_throttled(refused, retry_after=40)
    assert Message.objects.count() == 4


def test_chat_is_allowed_again_in_the_next_window(
    settings: Settings, clock: Clock
) -> None:
    settings.RATE_LIMIT_CHAT = "1/minute"
    session = BetterAuthSessionFactory.create()
    chat(session)
    assert chat(session).status_code == 429

    clock.now += 40

    assert chat(session).status_code == 200


def test_limits_are_per_user(settings: Settings, clock: Clock) -> None:
    settings.RATE_LIMIT_CHAT = "1/minute"
    alice, bob = BetterAuthSessionFactory.create_batch(2)

    chat(alice)

    assert chat(alice).status_code == 429
    assert chat(bob).status_code == 200


def test_two_sessions_of_one_user_share_the_limit(
    settings: Settings, clock: Clock
) -> None:
    settings.RATE_LIMIT_CHAT = "1/minute"
    laptop = BetterAuthSessionFactory.create()
    phone = BetterAuthSessionFactory.create(user=laptop.user)

    chat(laptop)

    assert chat(phone).status_code == 429


def test_reads_have_their_own_looser_limit(settings: Settings, clock: Clock) -> None:
    settings.RATE_LIMIT_CHAT = "1/minute"
    settings.RATE_LIMIT_READ = "3/minute"
    session = BetterAuthSessionFactory.create()

    chat(session)
    reads = [latest(session).status_code, messages(session).status_code]
    reads.append(latest(session).status_code)
    over = messages(session)

    assert chat(session).status_code == 429
    assert reads == [200, 404, 200]  # both reads count against one limit
    assert_throttled(over, retry_after=40)


def test_off_means_no_limit(settings: Settings, clock: Clock) -> None:
    settings.RATE_LIMIT_READ = "off"

    session = BetterAuthSessionFactory.create()

    assert {latest(session).status_code for _ in range(5)} == {200}


def test_unauthenticated_requests_are_refused_before_counting(
    settings: Settings, clock: Clock
) -> None:
    settings.RATE_LIMIT_READ = "1/minute"
    session = BetterAuthSessionFactory.create()
    url = reverse(
        "conversations:conversation-latest", kwargs={"user_id": session.user_id}
    )

    anonymous = [APIClient().get(url).status_code for _ in range(3)]

    assert anonymous == [401, 401, 401]
    assert latest(session).status_code == 200


# --- The counter -------------------------------------------------------------


def allow_in_threads(count: int) -> list[bool]:
    """`count` chat requests of one user, checked by as many threads at once."""
    request = APIRequestFactory().post("/")
    request.user = ApiUser(id="user-in-threads", email="", name="")  # type: ignore[assignment]
    view = ChatView()
    start = threading.Barrier(count)
    results: list[bool] = []

    def check() -> None:
        start.wait()
        results.append(UserRateThrottle().allow_request(request, view))

    threads = [threading.Thread(target=check) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_parallel_requests_never_exceed_the_limit(settings: Settings) -> None:
    settings.RATE_LIMIT_CHAT = "10/minute"

    results = allow_in_threads(30)

    assert results.count(True) == 10


def redis_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture
def redis_cache(
    settings: Settings, unavailable: Callable[..., NoReturn]
) -> Iterator[Any]:
    if not redis_reachable():
        unavailable(
            "Redis not reachable at 127.0.0.1:6379",
            required_by="CHATAPI_REQUIRE_REDIS",
        )
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/0",
            "KEY_PREFIX": f"test-{uuid.uuid4().hex}",
        }
    }
    # The throttle's cache is django.core.cache.cache, which follows
    # settings.CACHES; nothing to swap by hand.
    cache = caches["default"]
    yield cache
    cache.clear()


def test_redis_counter_is_shared_and_atomic(
    settings: Settings, redis_cache: Any
) -> None:
    settings.RATE_LIMIT_CHAT = "10/minute"

    results = allow_in_threads(30)

    assert results.count(True) == 10
    # The count lives in Redis, where every worker and server reads it.
    keys = redis_cache._cache.get_client().keys(f"{redis_cache.key_prefix}*")
    assert len(keys) == 1
    assert int(redis_cache._cache.get_client().get(keys[0])) == 30


def test_unreachable_redis_lets_requests_through_and_warns(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",  # discard port: nothing listens
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    settings.RATE_LIMIT_READ = "1/minute"
    session = BetterAuthSessionFactory.create()
    with caplog.at_level(logging.WARNING, logger="conversations.throttles"):
        statuses = [latest(session).status_code for _ in range(2)]

    assert statuses == [200, 200]
    assert "Rate limit not applied" in caplog.text
