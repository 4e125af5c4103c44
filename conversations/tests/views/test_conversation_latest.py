import datetime as dt

from django.utils import timezone

import pytest
from pytest_django import DjangoAssertNumQueries
from rest_framework.test import APIClient

from better_auth.models import BetterAuthSession
from better_auth.tests.factories import BetterAuthSessionFactory
from conversations.models import Conversation
from conversations.tests.factories import (
    ConversationFactory,
    conversation_with_messages,
)
from conversations.tests.paths import latest_url

pytestmark = pytest.mark.django_db

NOT_FOUND = b'{"detail":"Not found.","code":"not_found"}'
NO_CONVERSATION = {
    "conversation_id": None,
    "title": None,
    "created_at": None,
    "updated_at": None,
    "message_count": 0,
}


def parse_timestamp(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value)
    assert parsed.utcoffset() == dt.timedelta(0), value
    assert value.endswith(("Z", "+00:00")), value
    return parsed


def test_conversation_latest_without_conversation_returns_nulls(
    api: APIClient, session: BetterAuthSession
) -> None:
    response = api.get(latest_url(session.user_id))

    assert response.status_code == 200
    assert response.json() == NO_CONVERSATION


def test_conversation_latest_ignores_other_users_conversations(
    api: APIClient, session: BetterAuthSession
) -> None:
    ConversationFactory.create()
    ConversationFactory.create(owner_id=BetterAuthSessionFactory.create().user_id)

    response = api.get(latest_url(session.user_id))

    assert response.status_code == 200
    assert response.json() == NO_CONVERSATION


def test_conversation_latest_returns_most_recently_updated_not_newest_created(
    api: APIClient, session: BetterAuthSession
) -> None:
    now = timezone.now()
    owner_id = session.user_id
    updated_last = ConversationFactory.create(
        owner_id=owner_id,
        created_at=now - dt.timedelta(days=3),
        updated_at=now - dt.timedelta(minutes=1),
    )
    ConversationFactory.create(
        owner_id=owner_id,
        created_at=now - dt.timedelta(hours=1),
        updated_at=now - dt.timedelta(minutes=30),
    )
    ConversationFactory.create(
        owner_id=owner_id,
        created_at=now - dt.timedelta(days=5),
        updated_at=now - dt.timedelta(days=4),
    )
    # Another user's conversation, updated later than all of them.
    ConversationFactory.create(created_at=now, updated_at=now)

    response = api.get(latest_url(owner_id))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "conversation_id",
        "title",
        "created_at",
        "updated_at",
        "message_count",
    }
    assert body["conversation_id"] == str(updated_last.id)
    assert parse_timestamp(body["created_at"]) == updated_last.created_at
    assert parse_timestamp(body["updated_at"]) == updated_last.updated_at


def test_conversation_latest_timestamps_are_iso_8601_in_utc(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation = ConversationFactory.create(owner_id=session.user_id)

    body = api.get(latest_url(session.user_id)).json()

    assert parse_timestamp(body["created_at"]) == conversation.created_at
    assert parse_timestamp(body["updated_at"]) == conversation.updated_at


def test_conversation_latest_with_trailing_slash_is_served_without_redirect(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation = ConversationFactory.create(owner_id=session.user_id)
    canonical = latest_url(session.user_id)
    assert not canonical.endswith("/")

    response = api.get(f"{canonical}/")

    assert response.status_code == 200
    assert "Location" not in response
    assert response.json()["conversation_id"] == str(conversation.id)


@pytest.mark.parametrize(
    "other_user_has_conversations", [True, False], ids=["with", "without"]
)
def test_conversation_latest_other_users_path_is_not_found(
    api: APIClient, other_user_has_conversations: bool
) -> None:
    other = BetterAuthSessionFactory.create()
    if other_user_has_conversations:
        ConversationFactory.create_batch(2, owner_id=other.user_id)

    response = api.get(latest_url(other.user_id))

    assert response.status_code == 404
    assert response.content == NOT_FOUND


def test_conversation_latest_unknown_users_path_is_not_found(api: APIClient) -> None:
    response = api.get(latest_url("no-such-user"))

    assert response.status_code == 404
    assert response.content == NOT_FOUND


@pytest.mark.parametrize("count", [1, 50])
def test_conversation_latest_uses_two_queries_whatever_the_count(
    api: APIClient,
    session: BetterAuthSession,
    django_assert_num_queries: DjangoAssertNumQueries,
    count: int,
) -> None:
    past = timezone.now() - dt.timedelta(days=1)
    ConversationFactory.create_batch(
        count - 1, owner_id=session.user_id, updated_at=past
    )
    latest = ConversationFactory.create(owner_id=session.user_id)

    # One query authenticates the session, one selects the conversation.
    with django_assert_num_queries(2):
        response = api.get(latest_url(session.user_id))

    assert response.status_code == 200
    assert response.json()["conversation_id"] == str(latest.id)


def test_conversation_latest_carries_title_and_message_count(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation = conversation_with_messages(session.user_id, 3)
    Conversation.objects.filter(pk=conversation.pk).update(title="Groceries")

    body = api.get(latest_url(session.user_id)).json()

    assert body["conversation_id"] == str(conversation.id)
    assert body["title"] == "Groceries"
    assert body["message_count"] == 3
