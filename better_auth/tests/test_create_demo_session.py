import datetime as dt
import re
from collections.abc import Iterator
from io import StringIO

from django.core.management import CommandError, call_command
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

import pytest
from pytest_django import Settings
from rest_framework.test import APIClient

from better_auth.models import BetterAuthSession, BetterAuthUser

# The command runs in autocommit, as under manage.py. Rows of Better Auth's
# tables survive the flush after such tests, hence the cleanup fixture.
pytestmark = pytest.mark.django_db(transaction=True)

TOKEN_IN_CURL = re.compile(r"Authorization: Bearer (?P<token>[A-Za-z0-9]+)'")


@pytest.fixture(autouse=True)
def _no_demo_user() -> Iterator[None]:
    BetterAuthSession.objects.filter(user_id="demo-user").delete()
    BetterAuthUser.objects.filter(id="demo-user").delete()
    yield
    BetterAuthSession.objects.filter(user_id="demo-user").delete()
    BetterAuthUser.objects.filter(id="demo-user").delete()


def run_command(*args: str) -> str:
    out = StringIO()
    call_command("create_demo_session", *args, stdout=out)
    return out.getvalue()


def printed_token(output: str) -> str:
    match = TOKEN_IN_CURL.search(output)
    assert match is not None, output
    return match["token"]


def test_create_demo_session_refuses_without_debug(settings: Settings) -> None:
    settings.DEBUG = False

    with pytest.raises(CommandError, match="DJANGO_DEBUG"):
        run_command()

    assert not BetterAuthUser.objects.filter(id="demo-user").exists()


def test_create_demo_session_creates_user_and_week_long_session(
    settings: Settings,
) -> None:
    settings.DEBUG = True

    run_command()

    user = BetterAuthUser.objects.get(id="demo-user")
    assert user.email == "demo@example.com"
    session = BetterAuthSession.objects.get(user=user)
    lifetime = session.expires_at - timezone.now()
    assert dt.timedelta(days=7) - dt.timedelta(minutes=1) < lifetime
    assert lifetime <= dt.timedelta(days=7)


def test_create_demo_session_prints_curl_with_token_and_chat_url(
    settings: Settings,
) -> None:
    settings.DEBUG = True

    output = run_command()

    session = BetterAuthSession.objects.get(user_id="demo-user")
    assert f"Authorization: Bearer {session.token}" in output
    assert "curl " in output
    assert "http://127.0.0.1:8000/api/v1/users/demo-user/chat" in output


def test_create_demo_session_twice_reuses_user_and_session(settings: Settings) -> None:
    settings.DEBUG = True

    first = printed_token(run_command())
    second = printed_token(run_command())

    assert first == second
    assert BetterAuthUser.objects.filter(id="demo-user").count() == 1
    assert BetterAuthSession.objects.filter(user_id="demo-user").count() == 1


def test_create_demo_session_rejects_zero_days(settings: Settings) -> None:
    settings.DEBUG = True

    with pytest.raises(CommandError, match="--days"):
        run_command("--days", "0")

    assert not BetterAuthSession.objects.filter(user_id="demo-user").exists()


def test_create_demo_session_honours_base_url(settings: Settings) -> None:
    settings.DEBUG = True

    output = run_command("--base-url", "https://chat.example.com/")

    assert "https://chat.example.com/api/v1/users/demo-user/chat " in output
    assert "127.0.0.1" not in output


def test_create_demo_session_token_authenticates_chat(settings: Settings) -> None:
    settings.DEBUG = True
    token = printed_token(run_command())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    response = client.post(
        reverse("conversations:chat", args=["demo-user"]),
        {"message": "add buy milk"},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["response"] == "Added “buy milk” to your tasks."
    assert isinstance(body["conversation_id"], str)


@pytest.mark.django_db
def test_create_demo_session_works_inside_a_transaction(settings: Settings) -> None:
    settings.DEBUG = True

    with transaction.atomic():
        output = run_command()

    assert "Authorization: Bearer " in output
