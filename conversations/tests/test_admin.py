"""The first support admin: conversations newest first, searchable,
messages in order, read-only; its static files served with debug off."""

import datetime as dt
import uuid

from django.http import FileResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone

import pytest
from pytest_django import Settings

from conversations.models import Conversation
from conversations.tests.factories import ConversationFactory, MessageFactory


def test_admin_login_page_renders_html(client: Client) -> None:
    response = client.get("/admin/login/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"<form" in response.content


@pytest.mark.django_db
def test_admin_conversation_changelist_opens_for_superuser(
    admin_client: Client,
) -> None:
    conversation = ConversationFactory.create()

    response = admin_client.get(reverse("admin:conversations_conversation_changelist"))

    assert response.status_code == 200
    assert str(conversation.id) in response.text
    assert conversation.owner_id in response.text


@pytest.mark.django_db
def test_admin_conversation_change_page_shows_messages_in_sequence_order(
    admin_client: Client,
) -> None:
    conversation = ConversationFactory.create()
    for sequence in (3, 1, 2):
        MessageFactory.create(
            conversation=conversation,
            sequence=sequence,
            id=uuid.UUID(int=10 - sequence),
            content=f"content-of-message-{sequence}",
        )

    response = admin_client.get(
        reverse("admin:conversations_conversation_change", args=[conversation.pk])
    )

    assert response.status_code == 200
    positions = [
        response.text.index(f"content-of-message-{sequence}") for sequence in (1, 2, 3)
    ]
    assert positions == sorted(positions)


@pytest.mark.django_db
def test_admin_conversation_search_by_owner_id_finds_only_theirs(
    admin_client: Client,
) -> None:
    mine = ConversationFactory.create()
    other = ConversationFactory.create()

    response = admin_client.get(
        reverse("admin:conversations_conversation_changelist"), {"q": mine.owner_id}
    )

    assert response.status_code == 200
    assert str(mine.id) in response.text
    assert str(other.id) not in response.text


@pytest.mark.django_db
def test_admin_conversation_search_by_conversation_id_finds_it(
    admin_client: Client,
) -> None:
    wanted = ConversationFactory.create()
    other = ConversationFactory.create()

    response = admin_client.get(
        reverse("admin:conversations_conversation_changelist"), {"q": str(wanted.id)}
    )

    assert response.status_code == 200
    assert str(wanted.id) in response.text
    assert str(other.id) not in response.text


@pytest.mark.django_db
@pytest.mark.parametrize(
    "term",
    ["' OR 1=1 --", "%", "_", "\\", "x" * 5000, "\x00", "00000000-0000", "   "],
    ids=["sql", "percent", "underscore", "backslash", "long", "nul", "uuid-ish", "ws"],
)
def test_admin_conversation_search_garbage_term_does_not_fail(
    admin_client: Client, term: str
) -> None:
    ConversationFactory.create()

    response = admin_client.get(
        reverse("admin:conversations_conversation_changelist"), {"q": term}
    )

    assert response.status_code == 200
    assert Conversation.objects.count() == 1


def test_admin_static_file_is_served_with_debug_off(
    client: Client, settings: Settings
) -> None:
    assert settings.DEBUG is False

    response = client.get("/static/admin/css/base.css")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert isinstance(response, FileResponse)
    assert b".module" in b"".join(response.streaming_content)


@pytest.mark.django_db
def test_admin_conversation_changelist_lists_newest_first(
    admin_client: Client,
) -> None:
    now = timezone.now()
    ages = {"older": 2, "newest": 0, "oldest": 5}
    conversations = {
        name: ConversationFactory.create(
            created_at=now - dt.timedelta(days=days),
            updated_at=now - dt.timedelta(days=days),
        )
        for name, days in ages.items()
    }

    response = admin_client.get(reverse("admin:conversations_conversation_changelist"))

    assert response.status_code == 200
    positions = {
        name: response.text.index(str(conversation.id))
        for name, conversation in conversations.items()
    }
    assert sorted(positions, key=positions.__getitem__) == ["newest", "older", "oldest"]


@pytest.mark.django_db
def test_admin_conversation_history_cannot_be_added_changed_or_deleted(
    admin_client: Client,
) -> None:
    conversation = MessageFactory.create().conversation
    owner_id = conversation.owner_id

    add = admin_client.get(reverse("admin:conversations_conversation_add"))
    change = admin_client.post(
        reverse("admin:conversations_conversation_change", args=[conversation.pk]),
        {"owner_id": "someone-else"},
    )
    delete = admin_client.post(
        reverse("admin:conversations_conversation_delete", args=[conversation.pk]),
        {"post": "yes"},
    )

    assert (add.status_code, change.status_code, delete.status_code) == (403,) * 3
    assert Conversation.objects.get(pk=conversation.pk).owner_id == owner_id
    assert conversation.messages.count() == 1
