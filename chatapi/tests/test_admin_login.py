"""The admin's sign-in form and RATE_LIMIT_ADMIN_LOGIN: over the failures
allowed per address or per user name, 429 (JSON, Retry-After) and no
password check."""

from collections.abc import Callable, Iterator
from typing import Any

from django.contrib.auth.models import User
from django.contrib.auth.signals import user_login_failed
from django.contrib.sessions.models import Session
from django.test import Client

import pytest
from pytest_django import Settings

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("advance_clock")]

PASSWORD = "s3cret-pass"
ADDRESS = "203.0.113.7"


@pytest.fixture(autouse=True)
def _limit(settings: Settings) -> None:
    settings.RATE_LIMIT_ADMIN_LOGIN = "3/hour"


@pytest.fixture
def staff() -> User:
    return User.objects.create_superuser("staff", "staff@example.com", PASSWORD)


@pytest.fixture
def password_checks() -> Iterator[list[str]]:
    """The user names of the failed password checks, as they happen."""
    checked: list[str] = []

    def record(sender: Any, credentials: dict[str, Any], **kwargs: Any) -> None:
        checked.append(credentials["username"])

    user_login_failed.connect(record)
    yield checked
    user_login_failed.disconnect(record)


def sign_in(username: str, password: str, address: str = ADDRESS) -> Any:
    return Client(REMOTE_ADDR=address).post(
        "/admin/login/",
        {"username": username, "password": password, "next": "/admin/"},
    )


def fail(times: int, username: str = "staff", address: str = ADDRESS) -> list[int]:
    return [sign_in(username, "wrong", address).status_code for _ in range(times)]


def assert_throttled(response: Any) -> None:
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "throttled"
    assert response["Retry-After"] == "3600"


@pytest.mark.usefixtures("staff")
def test_over_the_limit_even_the_right_password_is_not_checked(
    password_checks: list[str],
) -> None:
    assert fail(3) == [200, 200, 200]
    assert password_checks == ["staff"] * 3

    response = sign_in("staff", PASSWORD)

    assert_throttled(response)
    assert Session.objects.count() == 0
    assert fail(1) == [429]
    assert password_checks == ["staff"] * 3


@pytest.mark.usefixtures("staff")
def test_address_is_limited_whatever_user_name_it_tries() -> None:
    for name in ["a", "b", "c"]:
        fail(1, username=name)

    assert_throttled(sign_in("staff", PASSWORD))


@pytest.mark.usefixtures("staff")
def test_user_name_is_limited_whatever_address_tries_it() -> None:
    for n in range(3):
        fail(1, address=f"198.51.100.{n}")

    assert_throttled(sign_in("staff", PASSWORD, address="192.0.2.1"))
    assert sign_in("other", "wrong", address="192.0.2.1").status_code == 200


@pytest.mark.usefixtures("staff")
def test_next_window_lets_the_staff_member_in(
    advance_clock: Callable[[float], None],
) -> None:
    fail(3)

    advance_clock(3600)

    response = sign_in("staff", PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


@pytest.mark.usefixtures("staff")
def test_successful_sign_ins_count_nothing() -> None:
    for _ in range(5):
        assert sign_in("staff", PASSWORD).status_code == 302

    assert fail(4) == [200, 200, 200, 429]


@pytest.mark.usefixtures("staff")
def test_the_form_itself_is_never_limited() -> None:
    fail(3)

    assert Client(REMOTE_ADDR=ADDRESS).get("/admin/login/").status_code == 200


@pytest.mark.usefixtures("staff")
def test_off_never_limits(settings: Settings) -> None:
    settings.RATE_LIMIT_ADMIN_LOGIN = "off"

    assert fail(5) == [200] * 5
    assert sign_in("staff", PASSWORD).status_code == 302
