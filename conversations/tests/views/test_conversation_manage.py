"""Managing conversations (CONTRACT §8): titles, the list and its cursor,
one conversation read, renamed and deleted, and deleting them all."""

import base64
import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from django.utils import timezone

import pytest
from pytest_django import Settings
from rest_framework.test import APIClient

from agent.tests.fakes import ProbeAgent, RecordingAgent
from better_auth.models import BetterAuthSession
from better_auth.tests.factories import BetterAuthSessionFactory
from conversations.models import (
    Conversation,
    Message,
    ToolCall,
    conversation_title_from_message,
)
from conversations.selectors import ConversationCursor, cursor_encode
from conversations.services import conversations_delete
from conversations.tests.factories import (
    ConversationFactory,
    ToolCallFactory,
    conversation_with_messages,
)
from conversations.tests.paths import (
    chat_url,
    conversation_url,
    latest_url,
    list_url,
    messages_url,
)

pytestmark = pytest.mark.django_db

NOT_FOUND = b'{"detail":"Not found.","code":"not_found"}'
CONVERSATION_KEYS = {
    "conversation_id",
    "title",
    "created_at",
    "updated_at",
    "message_count",
}
RECORDING = "agent.tests.fakes.RecordingAgent"
ErrorCheck = Callable[[Any, int, str], dict[str, Any]]


@pytest.fixture(autouse=True)
def _fakes(settings: Settings) -> Iterator[None]:
    settings.AGENT_BACKEND = RECORDING
    RecordingAgent.reset()
    ProbeAgent.reset()
    yield
    RecordingAgent.reset()
    ProbeAgent.reset()


def send(api: APIClient, user_id: str, message: str, conversation: Any = None) -> Any:
    body: dict[str, Any] = {"message": message}
    if conversation is not None:
        body["conversation_id"] = str(conversation)
    return api.post(chat_url(user_id), body, format="json")


def state() -> list[tuple[Any, ...]]:
    """Every conversation as stored, and the row counts of the other tables."""
    return [
        *Conversation.objects.order_by("pk").values_list(
            "pk",
            "owner_id",
            "title",
            "title_set_by_user",
            "last_sequence",
            "updated_at",
        ),
        (Message.objects.count(), ToolCall.objects.count()),
    ]


def conversations_at(owner_id: str, *minutes_ago: int) -> list[Conversation]:
    now = timezone.now()
    return [
        ConversationFactory.create(
            owner_id=owner_id, updated_at=now - dt.timedelta(minutes=minutes)
        )
        for minutes in minutes_ago
    ]


def walk(api: APIClient, user_id: str, limit: int) -> list[dict[str, Any]]:
    """Every page of the list, following next_cursor."""
    pages = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        response = api.get(list_url(user_id), params)
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        pages.append(body)
        if not body["has_more"]:
            assert body["next_cursor"] is None
            return pages
        params["cursor"] = body["next_cursor"]


# --- Titles ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "title"),
    [
        ("add buy milk", "add buy milk"),
        ("  add \t buy\n\nmilk  ", "add buy milk"),
        ("x" * 80, "x" * 80),
        ("x" * 81, "x" * 80 + "…"),
        (" ".join(["word"] * 40), " ".join(["word"] * 16) + "…"),
        ("é" * 79 + "  \u00a0 ", "é" * 79),
        ("\u3000日本語のメッセージ\u3000", "日本語のメッセージ"),
    ],
    ids=["short", "white-space", "80", "81", "cut-at-space", "unicode-space", "cjk"],
)
def test_conversation_title_from_message(content: str, title: str) -> None:
    assert conversation_title_from_message(content) == title
    assert len(conversation_title_from_message(content)) <= 81


def test_chat_new_conversation_is_titled_from_its_first_message(
    api: APIClient, session: BetterAuthSession
) -> None:
    first = "  Plan   the\tweek: " + "groceries, " * 10
    conversation_id = send(api, session.user_id, first).json()["conversation_id"]
    send(api, session.user_id, "something else entirely", conversation_id)

    body = api.get(conversation_url(session.user_id, conversation_id)).json()

    assert body["title"] == conversation_title_from_message(first)
    assert body["title"].startswith("Plan the week: groceries, groceries,")
    assert body["title"].endswith("…")
    assert body["message_count"] == 4
    assert Conversation.objects.get().title_set_by_user is False


def test_chat_message_keeps_a_title_the_user_set(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation_id = send(api, session.user_id, "first").json()["conversation_id"]
    url = conversation_url(session.user_id, conversation_id)
    assert api.patch(url, {"title": "Mine"}, format="json").status_code == 200

    send(api, session.user_id, "second", conversation_id)

    assert api.get(url).json()["title"] == "Mine"
    assert Conversation.objects.get().title_set_by_user is True


# --- The list -------------------------------------------------------------


def test_conversation_list_shape_and_order(
    api: APIClient, session: BetterAuthSession
) -> None:
    older, newest, middle = conversations_at(session.user_id, 30, 1, 10)
    conversation_with_messages(BetterAuthSessionFactory.create().user_id, 2)
    ToolCallFactory.create()  # someone else's, updated just now

    response = api.get(list_url(session.user_id))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"conversations", "has_more", "next_cursor"}
    assert body["has_more"] is False
    assert body["next_cursor"] is None
    assert [c["conversation_id"] for c in body["conversations"]] == [
        str(newest.id),
        str(middle.id),
        str(older.id),
    ]
    assert all(set(c) == CONVERSATION_KEYS for c in body["conversations"])


def test_conversation_list_item_is_the_conversation_object(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation = conversation_with_messages(session.user_id, 5)
    Conversation.objects.filter(pk=conversation.pk).update(title="Week plan")

    [item] = api.get(list_url(session.user_id)).json()["conversations"]

    assert item == api.get(conversation_url(session.user_id, conversation.id)).json()
    assert item["title"] == "Week plan"
    assert item["message_count"] == 5


def test_conversation_list_ties_on_updated_at_put_the_higher_id_first(
    api: APIClient, session: BetterAuthSession
) -> None:
    same = timezone.now()
    ids = [uuid.UUID(int=n) for n in (5, 9, 1, 7)]
    for conversation_id in ids:
        ConversationFactory.create(
            id=conversation_id, owner_id=session.user_id, updated_at=same
        )

    pages = walk(api, session.user_id, limit=1)

    shown = [c["conversation_id"] for page in pages for c in page["conversations"]]
    assert shown == [str(i) for i in sorted(ids, reverse=True)]


@pytest.mark.parametrize("limit", [1, 3, 7, 100])
def test_conversation_list_pages_show_every_conversation_exactly_once(
    api: APIClient, session: BetterAuthSession, limit: int
) -> None:
    # Ties included: groups of three share an updated_at.
    base = timezone.now()
    expected = []
    for number in range(22):
        conversation = ConversationFactory.create(
            owner_id=session.user_id,
            updated_at=base - dt.timedelta(seconds=number // 3),
        )
        expected.append(conversation)
    expected.sort(key=lambda c: (c.updated_at, c.id), reverse=True)

    pages = walk(api, session.user_id, limit=limit)

    shown = [c["conversation_id"] for page in pages for c in page["conversations"]]
    assert shown == [str(c.id) for c in expected]
    assert all(len(page["conversations"]) == limit for page in pages[:-1])
    assert all(page["has_more"] for page in pages[:-1])


def test_conversation_list_default_limit_is_20(
    api: APIClient, session: BetterAuthSession
) -> None:
    ConversationFactory.create_batch(21, owner_id=session.user_id)

    body = api.get(list_url(session.user_id)).json()

    assert len(body["conversations"]) == 20
    assert body["has_more"] is True
    assert isinstance(body["next_cursor"], str)


def test_conversation_list_last_page_exactly_full_has_no_more(
    api: APIClient, session: BetterAuthSession
) -> None:
    ConversationFactory.create_batch(4, owner_id=session.user_id)

    body = api.get(list_url(session.user_id), {"limit": 4}).json()

    assert len(body["conversations"]) == 4
    assert body["has_more"] is False
    assert body["next_cursor"] is None


def test_conversation_list_empty(api: APIClient, session: BetterAuthSession) -> None:
    ConversationFactory.create()

    response = api.get(list_url(session.user_id))

    assert response.json() == {
        "conversations": [],
        "has_more": False,
        "next_cursor": None,
    }


def test_conversation_list_cursor_never_shows_another_users_conversations(
    api: APIClient, session: BetterAuthSession
) -> None:
    other = BetterAuthSessionFactory.create()
    theirs = conversations_at(other.user_id, 1, 2, 3, 4)
    mine = conversations_at(session.user_id, 5, 6)
    their_api = APIClient()
    their_api.credentials(HTTP_AUTHORIZATION=f"Bearer {other.token}")
    their_cursor = their_api.get(list_url(other.user_id), {"limit": 1}).json()[
        "next_cursor"
    ]

    body = api.get(list_url(session.user_id), {"cursor": their_cursor}).json()

    # Their cursor is only a position: my conversations older than it.
    assert [c["conversation_id"] for c in body["conversations"]] == [
        str(c.id) for c in mine
    ]
    assert not {str(c.id) for c in theirs} & {
        c["conversation_id"] for c in body["conversations"]
    }


def test_conversation_list_cursor_is_opaque_text(
    api: APIClient, session: BetterAuthSession
) -> None:
    ConversationFactory.create_batch(2, owner_id=session.user_id)

    cursor = api.get(list_url(session.user_id), {"limit": 1}).json()["next_cursor"]

    assert cursor.isascii()
    assert set(cursor) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    assert (
        session.user_id
        not in base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    )


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


VALID_ID = "0" * 32
BAD_CURSORS = [
    pytest.param("", id="blank"),
    pytest.param(" ", id="space"),
    pytest.param("not-a-cursor", id="text"),
    pytest.param("%%%", id="symbols"),
    pytest.param("é", id="non-ascii"),
    pytest.param("A" * 101, id="long"),
    pytest.param(_b64("1:12:" + "z" * 32), id="bad-id"),
    pytest.param(_b64(f"2:12:{VALID_ID}"), id="unknown-version"),
    pytest.param(_b64(f"1:x:{VALID_ID}"), id="bad-time"),
    pytest.param(_b64(f"1:{10**18 * 9}:{VALID_ID}"), id="time-out-of-range"),
    pytest.param(_b64(f"1:12:{VALID_ID}") + "==", id="padded"),
    pytest.param(_b64(f"1:12:{VALID_ID}") + "\n", id="newline"),
    pytest.param(_b64("1:12:" + VALID_ID + ":owner"), id="extra-part"),
    pytest.param(base64.b64encode(b"\xff\xfe\x00").decode(), id="binary"),
]


@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_conversation_list_malformed_cursor_is_400_invalid_cursor(
    api: APIClient, session: BetterAuthSession, assert_error: ErrorCheck, cursor: str
) -> None:
    ConversationFactory.create_batch(2, owner_id=session.user_id)
    before = state()

    response = api.get(list_url(session.user_id), {"cursor": cursor})

    body = assert_error(response, 400, "invalid_cursor")
    assert list(body["errors"]) == ["cursor"]
    assert state() == before


def test_conversation_list_cursor_with_nul_is_400(
    api: APIClient, session: BetterAuthSession, assert_error: ErrorCheck
) -> None:
    response = api.get(f"{list_url(session.user_id)}?cursor=%00")

    assert_error(response, 400, "invalid_cursor")


def test_conversation_list_a_well_formed_cursor_is_only_a_position(
    api: APIClient, session: BetterAuthSession
) -> None:
    """A cursor a client built anyway is just a position in their own list."""
    older, newer = conversations_at(session.user_id, 10, 1)
    cursor = cursor_encode(ConversationCursor(newer.updated_at, newer.id))

    body = api.get(list_url(session.user_id), {"cursor": cursor}).json()

    assert [c["conversation_id"] for c in body["conversations"]] == [str(older.id)]


@pytest.mark.parametrize("limit", ["0", "101", "-1", "x", "", "1.5"])
def test_conversation_list_bad_limit_is_400(
    api: APIClient, session: BetterAuthSession, limit: str
) -> None:
    response = api.get(list_url(session.user_id), {"limit": limit})

    assert response.status_code == 400
    body = response.json()
    assert list(body["errors"]) == ["limit"]


@pytest.mark.parametrize("limit", ["1", "100"])
def test_conversation_list_limit_bounds_are_accepted(
    api: APIClient, session: BetterAuthSession, limit: str
) -> None:
    assert api.get(list_url(session.user_id), {"limit": limit}).status_code == 200


# --- One conversation -----------------------------------------------------


def test_conversation_get_returns_the_object(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation = conversation_with_messages(session.user_id, 3)
    conversation.refresh_from_db()

    response = api.get(conversation_url(session.user_id, conversation.id))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == CONVERSATION_KEYS
    assert body["conversation_id"] == str(conversation.id)
    assert body["message_count"] == 3
    assert dt.datetime.fromisoformat(body["updated_at"]) == conversation.updated_at
    assert dt.datetime.fromisoformat(body["created_at"]) == conversation.created_at


@pytest.mark.parametrize("suffix", ["", "/"])
def test_conversation_detail_paths_take_an_optional_slash(
    api: APIClient, session: BetterAuthSession, suffix: str
) -> None:
    conversation = ConversationFactory.create(owner_id=session.user_id)

    detail = api.get(conversation_url(session.user_id, conversation.id) + suffix)
    listed = api.get(list_url(session.user_id) + suffix)

    assert (detail.status_code, listed.status_code) == (200, 200)


# --- Rename ---------------------------------------------------------------


def test_conversation_rename_trims_and_keeps_updated_at_and_order(
    api: APIClient, session: BetterAuthSession
) -> None:
    renamed, latest = conversations_at(session.user_id, 60, 1)
    order_before = [
        c["conversation_id"]
        for c in api.get(list_url(session.user_id)).json()["conversations"]
    ]

    response = api.patch(
        conversation_url(session.user_id, renamed.id),
        {"title": "  Groceries \n", "ignored": 1},
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert set(body) == CONVERSATION_KEYS
    assert body["title"] == "Groceries"
    assert dt.datetime.fromisoformat(body["updated_at"]) == renamed.updated_at
    stored = Conversation.objects.get(pk=renamed.pk)
    assert (stored.title, stored.title_set_by_user) == ("Groceries", True)
    assert stored.updated_at == renamed.updated_at
    order_after = [
        c["conversation_id"]
        for c in api.get(list_url(session.user_id)).json()["conversations"]
    ]
    assert order_after == order_before
    assert api.get(latest_url(session.user_id)).json()["conversation_id"] == str(
        latest.id
    )


def test_conversation_rename_accepts_200_characters_after_trimming(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation = ConversationFactory.create(owner_id=session.user_id)
    title = "é" * 200

    response = api.patch(
        conversation_url(session.user_id, conversation.id),
        {"title": f"   {title}  "},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["title"] == title


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({}, "required", id="missing"),
        pytest.param({"title": ""}, "blank", id="empty"),
        pytest.param({"title": " \t\n\u3000"}, "blank", id="white-space"),
        pytest.param({"title": "x" * 201}, "max_length", id="201"),
        pytest.param({"title": None}, "null", id="null"),
        pytest.param({"title": 12}, "invalid", id="number"),
        pytest.param({"title": ["a"]}, "invalid", id="list"),
        pytest.param({"title": "a\x00b"}, "null_characters_not_allowed", id="nul"),
        pytest.param(["title"], "invalid", id="not-an-object"),
    ],
)
def test_conversation_rename_bad_title_is_400_and_changes_nothing(
    api: APIClient,
    session: BetterAuthSession,
    assert_error: ErrorCheck,
    body: Any,
    code: str,
) -> None:
    conversation = conversation_with_messages(session.user_id, 2)
    Conversation.objects.filter(pk=conversation.pk).update(title="Kept")
    before = state()

    response = api.patch(
        conversation_url(session.user_id, conversation.id), body, format="json"
    )

    assert_error(response, 400, code)
    assert state() == before


def test_conversation_rename_body_not_json_is_400(
    api: APIClient, session: BetterAuthSession, assert_error: ErrorCheck
) -> None:
    conversation = ConversationFactory.create(owner_id=session.user_id)
    before = state()

    response = api.patch(
        conversation_url(session.user_id, conversation.id),
        "{",
        content_type="application/json",
    )

    assert_error(response, 400, "parse_error")
    assert state() == before


# --- Delete one -----------------------------------------------------------


def test_conversation_delete_removes_it_everywhere(
    api: APIClient, session: BetterAuthSession
) -> None:
    doomed = conversation_with_messages(session.user_id, 4)
    answer = Message.objects.get(conversation=doomed, sequence=2)
    ToolCallFactory.create_batch(2, message=answer)
    kept = conversation_with_messages(session.user_id, 2)
    ToolCallFactory.create(message=Message.objects.get(conversation=kept, sequence=2))
    theirs = conversation_with_messages(BetterAuthSessionFactory.create().user_id, 2)

    response = api.delete(conversation_url(session.user_id, doomed.id))

    assert response.status_code == 204
    assert response.content == b""
    assert not Conversation.objects.filter(pk=doomed.pk).exists()
    assert not Message.objects.filter(conversation_id=doomed.pk).exists()
    assert not ToolCall.objects.filter(message__conversation_id=doomed.pk).exists()
    assert Message.objects.filter(conversation__in=[kept, theirs]).count() == 4
    assert ToolCall.objects.count() == 1
    listed = api.get(list_url(session.user_id)).json()["conversations"]
    assert [c["conversation_id"] for c in listed] == [str(kept.id)]
    assert api.get(latest_url(session.user_id)).json()["conversation_id"] == str(
        kept.id
    )
    assert api.get(conversation_url(session.user_id, doomed.id)).content == NOT_FOUND
    assert api.get(messages_url(session.user_id, doomed.id)).content == NOT_FOUND


def test_conversation_delete_again_is_404(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation = ConversationFactory.create(owner_id=session.user_id)
    url = conversation_url(session.user_id, conversation.id)
    assert api.delete(url).status_code == 204

    response = api.delete(url)

    assert response.status_code == 404
    assert response.content == NOT_FOUND


def test_chat_to_a_deleted_conversation_is_404_and_stores_nothing(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation = conversation_with_messages(session.user_id, 2)
    api.delete(conversation_url(session.user_id, conversation.id))
    before = state()

    response = send(api, session.user_id, "hello?", conversation.id)

    assert response.status_code == 404
    assert response.content == NOT_FOUND
    assert state() == before
    assert RecordingAgent.calls == []


@pytest.mark.django_db(transaction=True)
def test_chat_reply_for_a_conversation_deleted_meanwhile_is_dropped(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> None:
    """The agent answers after the user deleted the conversation: nothing of
    the reply is stored, and the chat request answers 404."""
    settings.AGENT_BACKEND = "agent.tests.fakes.ProbeAgent"
    conversation = conversation_with_messages(session.user_id, 2)
    kept = conversation_with_messages(session.user_id, 2)
    ProbeAgent.probe = lambda: conversations_delete(
        owner_id=session.user_id, conversation_id=conversation.id
    )

    response = send(api, session.user_id, "hello", conversation.id)

    assert ProbeAgent.outcome == [1]
    assert response.status_code == 404
    assert response.content == NOT_FOUND
    assert not Message.objects.exclude(conversation=kept).exists()
    assert not ToolCall.objects.exists()
    assert Conversation.objects.get().pk == kept.pk


# --- Delete all -----------------------------------------------------------


def test_conversations_delete_all_counts_and_spares_other_users(
    api: APIClient, session: BetterAuthSession
) -> None:
    for _ in range(3):
        conversation = conversation_with_messages(session.user_id, 2)
        ToolCallFactory.create(
            message=Message.objects.get(conversation=conversation, sequence=2)
        )
    theirs = conversation_with_messages(BetterAuthSessionFactory.create().user_id, 2)
    ToolCallFactory.create(message=Message.objects.get(conversation=theirs, sequence=2))

    response = api.delete(latest_url(session.user_id))

    assert response.status_code == 200
    assert response.json() == {"deleted": 3}
    assert list(Conversation.objects.values_list("pk", flat=True)) == [theirs.pk]
    assert Message.objects.count() == 2
    assert ToolCall.objects.count() == 1
    assert api.get(list_url(session.user_id)).json()["conversations"] == []
    assert api.get(latest_url(session.user_id)).json()["conversation_id"] is None


def test_conversations_delete_all_without_any_is_0(
    api: APIClient, session: BetterAuthSession
) -> None:
    ConversationFactory.create()

    response = api.delete(latest_url(session.user_id))

    assert response.status_code == 200
    assert response.json() == {"deleted": 0}
    assert Conversation.objects.count() == 1
