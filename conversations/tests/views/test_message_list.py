import datetime as dt
import json
import uuid
from typing import Any

import pytest
from pytest_django import DjangoAssertNumQueries, Settings
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from better_auth.models import BetterAuthSession
from better_auth.tests.factories import BetterAuthSessionFactory
from conversations.models import Conversation, Message, ToolCall
from conversations.selectors import MESSAGE_OVERHEAD_BYTES, PAGE_OVERHEAD_BYTES
from conversations.serializers import MessageOutputSerializer
from conversations.tests.factories import (
    ConversationFactory,
    MessageFactory,
    ToolCallFactory,
)
from conversations.tests.paths import chat_url, messages_url
from conversations.views import datetime_out

pytestmark = pytest.mark.django_db

NOT_FOUND = b'{"detail":"Not found.","code":"not_found"}'
MESSAGE_KEYS = {"id", "conversation_id", "role", "content", "created_at", "tool_calls"}


def conversation_with_messages(
    owner_id: str, count: int
) -> tuple[Conversation, list[Message]]:
    """A conversation of `count` messages, alternating user and assistant."""
    conversation = ConversationFactory.create(owner_id=owner_id)
    messages = [
        MessageFactory.build(
            conversation=conversation,
            sequence=sequence,
            role=Message.Role.USER if sequence % 2 else Message.Role.ASSISTANT,
        )
        for sequence in range(1, count + 1)
    ]
    Message.objects.bulk_create(messages)
    Conversation.objects.filter(pk=conversation.pk).update(last_sequence=count)
    return conversation, messages


def ids(messages: list[Message]) -> list[str]:
    return [str(message.id) for message in messages]


def page_ids(body: dict[str, Any]) -> list[str]:
    return [message["id"] for message in body["messages"]]


def assert_invalid_parameter(response: Any, name: str) -> None:
    """A 400 in the validation envelope, naming only `name`."""
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"detail", "code", "errors"}
    assert isinstance(body["detail"], str)
    assert isinstance(body["code"], str)
    assert list(body["errors"]) == [name]


def test_message_list_returns_exact_shape_oldest_first(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation = ConversationFactory.create(owner_id=session.user_id)
    question = MessageFactory.create(
        conversation=conversation, role=Message.Role.USER, content="add buy milk"
    )
    answer = MessageFactory.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        content="Added 'buy milk'.",
    )

    response = api.get(messages_url(session.user_id, conversation.id))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"conversation_id", "messages", "has_more", "next_before"}
    assert body["conversation_id"] == str(conversation.id)
    assert body["has_more"] is False
    assert body["next_before"] is None
    assert [set(message) for message in body["messages"]] == [MESSAGE_KEYS] * 2
    assert [
        (m["id"], m["conversation_id"], m["role"], m["content"])
        for m in body["messages"]
    ] == [
        (str(question.id), str(conversation.id), "user", "add buy milk"),
        (str(answer.id), str(conversation.id), "assistant", "Added 'buy milk'."),
    ]
    for message, stored in zip(body["messages"], [question, answer], strict=True):
        created_at = dt.datetime.fromisoformat(message["created_at"])
        assert created_at.utcoffset() == dt.timedelta(0)
        assert message["created_at"].endswith(("Z", "+00:00"))
        assert created_at == stored.created_at


def test_message_list_orders_by_sequence_when_timestamps_tie(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation = ConversationFactory.create(owner_id=session.user_id)
    same_time = dt.datetime(2026, 2, 9, 12, 0, tzinfo=dt.UTC)
    # Inserted out of order, with ids that sort opposite to the sequence.
    for sequence in (3, 1, 5, 2, 4):
        MessageFactory.create(
            conversation=conversation,
            id=uuid.UUID(int=100 - sequence),
            sequence=sequence,
            content=f"message {sequence}",
            created_at=same_time,
        )

    response = api.get(messages_url(session.user_id, conversation.id))

    assert response.status_code == 200
    assert [m["content"] for m in response.json()["messages"]] == [
        f"message {sequence}" for sequence in range(1, 6)
    ]


def test_message_list_default_page_holds_a_conversation_of_100(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation, messages = conversation_with_messages(session.user_id, 100)

    response = api.get(messages_url(session.user_id, conversation.id))

    assert response.status_code == 200
    body = response.json()
    assert page_ids(body) == ids(messages)
    assert body["has_more"] is False
    assert body["next_before"] is None


def test_message_list_default_page_of_101_returns_newest_100(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation, messages = conversation_with_messages(session.user_id, 101)

    response = api.get(messages_url(session.user_id, conversation.id))

    assert response.status_code == 200
    body = response.json()
    assert page_ids(body) == ids(messages[1:])
    assert body["has_more"] is True
    assert body["next_before"] == str(messages[1].id)


def test_message_list_following_next_before_returns_every_message_once(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation, messages = conversation_with_messages(session.user_id, 250)
    url = messages_url(session.user_id, conversation.id)
    pages: list[list[str]] = []
    has_more_flags: list[bool] = []
    params: dict[str, Any] = {"limit": 60}

    while True:
        response = api.get(url, params)
        assert response.status_code == 200
        body = response.json()
        pages.append(page_ids(body))
        has_more_flags.append(body["has_more"])
        if not body["has_more"]:
            assert body["next_before"] is None
            break
        assert body["next_before"] == body["messages"][0]["id"]
        params["before"] = body["next_before"]

    assert [len(page) for page in pages] == [60, 60, 60, 60, 10]
    assert has_more_flags == [True, True, True, True, False]
    assert [id_ for page in reversed(pages) for id_ in page] == ids(messages)


@pytest.mark.parametrize("limit", [1, 500])
def test_message_list_limit_at_bounds_is_accepted(
    api: APIClient, session: BetterAuthSession, limit: int
) -> None:
    conversation, messages = conversation_with_messages(session.user_id, 3)

    response = api.get(messages_url(session.user_id, conversation.id), {"limit": limit})

    assert response.status_code == 200
    body = response.json()
    assert page_ids(body) == ids(messages[-limit:])
    assert body["has_more"] is (limit < 3)


@pytest.mark.parametrize(
    "limit",
    [
        "0",
        "501",
        "-1",
        "abc",
        "",
        "1e3",
        "1.5",
    ],
)
def test_message_list_invalid_limit_is_bad_request(
    api: APIClient, session: BetterAuthSession, limit: str
) -> None:
    conversation, _ = conversation_with_messages(session.user_id, 3)

    response = api.get(
        f"{messages_url(session.user_id, conversation.id)}?limit={limit}"
    )

    assert_invalid_parameter(response, "limit")


@pytest.mark.parametrize("before", ["not-a-uuid", "123", "1" * 40, ""])
def test_message_list_before_not_a_uuid_is_bad_request(
    api: APIClient, session: BetterAuthSession, before: str
) -> None:
    conversation, _ = conversation_with_messages(session.user_id, 3)

    response = api.get(
        messages_url(session.user_id, conversation.id), {"before": before}
    )

    assert_invalid_parameter(response, "before")


def test_message_list_before_from_another_conversation_is_bad_request(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation, _ = conversation_with_messages(session.user_id, 3)
    _, elsewhere = conversation_with_messages(session.user_id, 3)

    response = api.get(
        messages_url(session.user_id, conversation.id),
        {"before": str(elsewhere[-1].id)},
    )

    assert_invalid_parameter(response, "before")


def test_message_list_before_unknown_message_is_bad_request(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation, _ = conversation_with_messages(session.user_id, 3)

    response = api.get(
        messages_url(session.user_id, conversation.id), {"before": str(uuid.uuid4())}
    )

    assert_invalid_parameter(response, "before")


def test_message_list_before_oldest_message_returns_empty_page(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation, messages = conversation_with_messages(session.user_id, 3)

    response = api.get(
        messages_url(session.user_id, conversation.id), {"before": str(messages[0].id)}
    )

    assert response.status_code == 200
    assert response.json() == {
        "conversation_id": str(conversation.id),
        "messages": [],
        "has_more": False,
        "next_before": None,
    }


def test_message_list_repeated_limit_does_not_fail(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation, _ = conversation_with_messages(session.user_id, 10)

    response = api.get(
        f"{messages_url(session.user_id, conversation.id)}?limit=5&limit=6"
    )

    assert response.status_code == 200
    assert len(response.json()["messages"]) in {5, 6}


def test_message_list_with_trailing_slash_is_served_without_redirect(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation, messages = conversation_with_messages(session.user_id, 2)

    response = api.get(f"{messages_url(session.user_id, conversation.id)}/")

    assert response.status_code == 200
    assert page_ids(response.json()) == ids(messages)


def test_message_list_of_empty_conversation_is_empty(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation = ConversationFactory.create(owner_id=session.user_id)

    response = api.get(messages_url(session.user_id, conversation.id))

    assert response.status_code == 200
    assert response.json() == {
        "conversation_id": str(conversation.id),
        "messages": [],
        "has_more": False,
        "next_before": None,
    }


@pytest.mark.parametrize(
    ("conversation_owner", "path_user"),
    [("other", "self"), ("other", "other"), ("self", "other")],
    ids=["their-conversation", "their-path", "own-conversation-their-path"],
)
def test_message_list_of_someone_else_is_not_found(
    api: APIClient, session: BetterAuthSession, conversation_owner: str, path_user: str
) -> None:
    users = {
        "self": session.user_id,
        "other": BetterAuthSessionFactory.create().user_id,
    }
    conversation, _ = conversation_with_messages(users[conversation_owner], 3)

    response = api.get(messages_url(users[path_user], conversation.id))

    assert response.status_code == 404
    assert response.content == NOT_FOUND


@pytest.mark.parametrize(
    "conversation_id",
    ["8d0f6c2e-3b7a-4e59-a1c4-5f2e9b7d3a60", "not-a-uuid", "123", "%00", "x" * 300],
)
def test_message_list_unknown_or_malformed_conversation_is_not_found(
    api: APIClient, session: BetterAuthSession, conversation_id: str
) -> None:
    conversation_with_messages(session.user_id, 3)

    response = api.get(messages_url(session.user_id, conversation_id))

    assert response.status_code == 404
    assert response.content == NOT_FOUND


@pytest.mark.postgresql
def test_message_list_query_count_does_not_depend_on_length_or_before(
    api: APIClient,
    session: BetterAuthSession,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    short, short_messages = conversation_with_messages(session.user_id, 10)
    long, long_messages = conversation_with_messages(session.user_id, 300)
    requests = [
        (short, {}),
        (short, {"before": str(short_messages[5].id)}),
        (long, {}),
        (long, {"before": str(long_messages[250].id)}),
    ]

    for conversation, params in requests:
        # One query authenticates; one finds the conversation, the `before`
        # message's sequence and the page.
        with django_assert_num_queries(2):
            response = api.get(messages_url(session.user_id, conversation.id), params)
        assert response.status_code == 200


def test_message_list_renders_what_the_documented_serializer_renders(
    api: APIClient, session: BetterAuthSession
) -> None:
    """The view builds plain dicts for speed; the OpenAPI schema documents
    MessageOutputSerializer: both must give the same JSON."""
    conversation, _ = conversation_with_messages(session.user_id, 5)

    response = api.get(messages_url(session.user_id, conversation.id))

    stored = Message.objects.filter(conversation=conversation).order_by("sequence")
    expected = MessageOutputSerializer(stored, many=True).data
    assert response.status_code == 200
    assert response.json()["messages"] == json.loads(json.dumps(expected))


# --- Tool calls in the history (CONTRACT §8) -------------------------------


def test_message_list_carries_each_messages_tool_calls_in_order(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation, messages = conversation_with_messages(session.user_id, 4)
    # Created out of order: the agent's order is `position`.
    second = ToolCallFactory.create(
        message=messages[1],
        position=1,
        tool_name="list_tasks",
        parameters={"filter": {"done": False}, "é": [1, 2.5, None]},
        result=None,
        status=ToolCall.Status.ERROR,
    )
    first = ToolCallFactory.create(message=messages[1], position=0)
    other = ToolCallFactory.create(message=messages[3], position=0)
    ToolCallFactory.create()  # another conversation's

    body = api.get(messages_url(session.user_id, conversation.id)).json()

    calls = [m["tool_calls"] for m in body["messages"]]
    assert calls[0] == calls[2] == []
    assert calls[1] == [
        {
            "id": str(first.id),
            "tool_name": "add_task",
            "parameters": {"title": "buy milk"},
            "result": {"task_id": "1"},
            "status": "success",
        },
        {
            "id": str(second.id),
            "tool_name": "list_tasks",
            "parameters": {"filter": {"done": False}, "é": [1, 2.5, None]},
            "result": None,
            "status": "error",
        },
    ]
    assert [c["id"] for c in calls[3]] == [str(other.id)]


def test_message_list_tool_calls_are_those_of_the_chat_reply(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.RecordingAgent"
    reply = api.post(
        chat_url(session.user_id), {"message": "add buy milk"}, format="json"
    ).json()

    body = api.get(messages_url(session.user_id, reply["conversation_id"])).json()

    question, answer = body["messages"]
    assert question["tool_calls"] == []
    assert answer["id"] == reply["assistant_message_id"]
    assert answer["tool_calls"] == reply["tool_calls"]
    assert len(answer["tool_calls"]) == 2


# --- The byte bound (CONTRACT §2) ------------------------------------------


def big_conversation(owner_id: str, count: int, size: int) -> list[Message]:
    """`count` messages of `size` characters that JSON escapes (quotes,
    newlines, non-ASCII), the assistant's with a tool call."""
    conversation = ConversationFactory.create(owner_id=owner_id)
    unit = 'é"\n\x01'
    messages = [
        MessageFactory.build(
            conversation=conversation,
            sequence=sequence,
            role=Message.Role.USER if sequence % 2 else Message.Role.ASSISTANT,
            content=(unit * size)[:size],
        )
        for sequence in range(1, count + 1)
    ]
    Message.objects.bulk_create(messages)
    Conversation.objects.filter(pk=conversation.pk).update(last_sequence=count)
    for message in messages[1::2]:
        ToolCallFactory.create(message=message, parameters={"text": "\n" * 50})
    return messages


@pytest.mark.parametrize("max_bytes", [4096, 20_000, 65_536])
def test_message_list_page_stops_before_the_byte_bound_newest_kept(
    api: APIClient, session: BetterAuthSession, settings: Settings, max_bytes: int
) -> None:
    settings.MESSAGES_PAGE_MAX_BYTES = max_bytes
    messages = big_conversation(session.user_id, 40, 1000)
    conversation_id = messages[0].conversation_id

    response = api.get(messages_url(session.user_id, conversation_id))

    body = response.json()
    assert len(response.content) <= max_bytes
    count = len(body["messages"])
    assert 1 <= count < 40
    assert page_ids(body) == ids(messages[-count:])
    assert body["has_more"] is True
    assert body["next_before"] == str(messages[-count].id)
    # The bound cut it, not much short of it: one more message passes it
    # (the costs are upper bounds, so "much" is a fifth).
    settings.MESSAGES_PAGE_MAX_BYTES = 10**9
    one_more = api.get(
        messages_url(session.user_id, conversation_id), {"limit": count + 1}
    )
    assert len(one_more.json()["messages"]) == count + 1
    assert len(one_more.content) > max_bytes * 0.8


def test_message_list_walking_a_byte_bound_history_returns_every_message_once(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> None:
    settings.MESSAGES_PAGE_MAX_BYTES = 10_000
    messages = big_conversation(session.user_id, 30, 1500)
    url = messages_url(session.user_id, messages[0].conversation_id)

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        response = api.get(url, params)
        assert len(response.content) <= 10_000
        body = response.json()
        seen = page_ids(body) + seen
        if not body["has_more"]:
            break
        params["before"] = body["next_before"]

    assert seen == ids(messages)


def test_message_list_page_holds_one_message_larger_than_the_bound(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> None:
    settings.MESSAGES_PAGE_MAX_BYTES = 1024
    messages = big_conversation(session.user_id, 3, 3000)

    body = api.get(messages_url(session.user_id, messages[0].conversation_id)).json()

    assert page_ids(body) == [str(messages[-1].id)]
    assert body["has_more"] is True
    assert body["next_before"] == str(messages[-1].id)


def test_message_list_page_within_the_bound_is_the_whole_limit(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> None:
    settings.MESSAGES_PAGE_MAX_BYTES = 1_048_576
    messages = big_conversation(session.user_id, 12, 1000)

    body = api.get(
        messages_url(session.user_id, messages[0].conversation_id), {"limit": 12}
    ).json()

    assert page_ids(body) == ids(messages)
    assert body["has_more"] is False


def test_message_list_overheads_bound_the_longest_message_and_page() -> None:
    """MESSAGE_OVERHEAD_BYTES and PAGE_OVERHEAD_BYTES are at least what the
    keys and values other than content and tool calls take."""
    longest = datetime_out(dt.datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=dt.UTC))
    message = {
        "id": str(uuid.uuid4()),
        "conversation_id": str(uuid.uuid4()),
        "role": "assistant",
        "content": "",
        "created_at": longest,
        "tool_calls": [],
    }
    page = {
        "conversation_id": str(uuid.uuid4()),
        "messages": [],
        "has_more": False,
        "next_before": str(uuid.uuid4()),
    }

    def size(value: Any) -> int:
        return len(JSONRenderer().render(value))

    # The empty content and tool calls ("" and []) count in the message's cost;
    # the comma between messages does not.
    assert size(message) - 4 + 1 <= MESSAGE_OVERHEAD_BYTES
    assert size(page) <= PAGE_OVERHEAD_BYTES
    assert MESSAGE_OVERHEAD_BYTES - (size(message) - 4 + 1) < 32


def test_message_list_default_bound_is_at_least_1_mb(settings: Settings) -> None:
    assert settings.MESSAGES_PAGE_MAX_BYTES >= 1_000_000
