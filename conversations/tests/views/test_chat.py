import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from django.db.models import F
from django.urls import reverse

import pytest
from pytest_django import DjangoAssertNumQueries, Settings
from rest_framework.test import APIClient

from agent.backends.base import AgentReply, HistoryMessage
from agent.backends.base import ToolCall as ReplyToolCall
from agent.exceptions import AgentError, AgentTimeoutError
from agent.tests.fakes import InvalidReplyAgent, ProbeAgent, RecordingAgent, SlowAgent
from better_auth.models import BetterAuthSession
from better_auth.tests.factories import BetterAuthSessionFactory
from conversations.models import Conversation, Message, ToolCall
from conversations.tests.factories import (
    ConversationFactory,
    MessageFactory,
    conversation_with_messages,
)
from conversations.tests.paths import chat_url

pytestmark = pytest.mark.django_db

NOT_FOUND = b'{"detail":"Not found.","code":"not_found"}'
RESPONSE_KEYS = {
    "conversation_id",
    "response",
    "user_message_id",
    "assistant_message_id",
    "tool_calls",
}
TOOL_CALL_KEYS = {"id", "tool_name", "parameters", "result", "status"}
STUB = "agent.backends.stub.StubAgent"
RECORDING = "agent.tests.fakes.RecordingAgent"
# The fixtures of conversations/tests/conftest.py.
RowCounts = Callable[[], tuple[int, int, int]]
AssertError = Callable[[Any, int, str], dict[str, Any]]

# Statements of one POST on PostgreSQL (conversations.postgres), in tests
# with and without the test transaction: every write is one autocommit
# statement (no BEGIN/COMMIT, no SAVEPOINT). SQLite runs the ORM: no count.
#   new conversation: session; conversation + user message; assistant
#     message + tool calls + updated_at (no history to read);
#   existing conversation: session; user message + sequence; history (and
#     the user message's sequence); assistant message + tool calls.
QUERIES_NEW_CONVERSATION = 3
QUERIES_EXISTING_CONVERSATION = 4
# The target (issue #8): at most 6 statements, transaction control included.
MAX_QUERIES_CHAT = 6
# ProbeAgent's reply has no tool calls: still one statement.
QUERIES_NEW_CONVERSATION_NO_TOOL_CALLS = QUERIES_NEW_CONVERSATION


@pytest.fixture(autouse=True)
def _reset_fakes() -> Iterator[None]:
    invalid_reply = InvalidReplyAgent.reply
    RecordingAgent.reset()
    SlowAgent.reset()
    ProbeAgent.reset()
    yield
    RecordingAgent.reset()
    SlowAgent.reset()
    ProbeAgent.reset()
    InvalidReplyAgent.reply = invalid_reply


def chat(api: APIClient, user_id: str, payload: Any) -> Any:
    return api.post(chat_url(user_id), payload, format="json")


def stored(conversation_id: Any) -> list[tuple[int, str, str]]:
    return list(
        Message.objects.filter(conversation_id=conversation_id)
        .order_by("sequence")
        .values_list("sequence", "role", "content")
    )


# --- success -------------------------------------------------------------


@pytest.mark.parametrize(
    "extra", [{}, {"conversation_id": None}], ids=["absent", "null"]
)
def test_chat_without_conversation_id_starts_new_conversation(
    api: APIClient, session: BetterAuthSession, extra: dict[str, Any]
) -> None:
    response = chat(api, session.user_id, {"message": "hello there", **extra})

    assert response.status_code == 200
    body = response.json()
    assert set(body) == RESPONSE_KEYS
    conversation = Conversation.objects.get()
    assert conversation.owner_id == session.user_id
    assert body["conversation_id"] == str(uuid.UUID(body["conversation_id"]))
    assert body["conversation_id"] == str(conversation.id)
    user_message, assistant_message = Message.objects.order_by("sequence")
    assert (user_message.sequence, user_message.role) == (1, "user")
    assert user_message.content == "hello there"
    assert user_message.reply_to_id is None
    assert (assistant_message.sequence, assistant_message.role) == (2, "assistant")
    assert assistant_message.reply_to_id == user_message.id
    assert user_message.conversation_id == assistant_message.conversation_id
    assert isinstance(body["response"], str)
    assert body["response"]
    assert body["response"] == assistant_message.content
    assert body["user_message_id"] == str(user_message.id)
    assert body["assistant_message_id"] == str(assistant_message.id)
    assert body["tool_calls"] == []
    assert conversation.last_sequence == 2


@pytest.mark.parametrize(
    "content",
    [
        "  leading and trailing spaces  ",
        "line one\nline two\r\n\n",
        "\tindented\t",
        "party 🎉👍🏽 time",
        "naïve café, 日本語, Ωμέγα, עברית",
        "quotes \" ' \\ and <b>tags</b>",
    ],
    ids=["spaces", "newlines", "tabs", "emoji", "non-ascii", "specials"],
)
def test_chat_stores_content_exactly_as_sent(
    api: APIClient, session: BetterAuthSession, content: str
) -> None:
    response = chat(api, session.user_id, {"message": content})

    assert response.status_code == 200
    user_message = Message.objects.get(role=Message.Role.USER)
    assert user_message.content == content
    listed = api.get(
        reverse(
            "conversations:message-list",
            args=[session.user_id, response.json()["conversation_id"]],
        )
    )
    assert listed.json()["messages"][0]["content"] == content


def test_chat_continuing_conversation_continues_sequences(
    api: APIClient, session: BetterAuthSession
) -> None:
    first = chat(api, session.user_id, {"message": "first question"}).json()
    conversation_id = first["conversation_id"]
    updated_before = Conversation.objects.get(pk=conversation_id).updated_at
    # A newer conversation, so that the latest one is the one bumped below.
    other = chat(api, session.user_id, {"message": "another topic"}).json()
    assert other["conversation_id"] != conversation_id

    response = chat(
        api,
        session.user_id,
        {"message": "second question", "conversation_id": conversation_id},
    )

    assert response.status_code == 200
    body = response.json()
    assert body["conversation_id"] == conversation_id
    messages = list(
        Message.objects.filter(conversation_id=conversation_id).order_by("sequence")
    )
    assert [(m.sequence, m.role) for m in messages] == [
        (1, "user"),
        (2, "assistant"),
        (3, "user"),
        (4, "assistant"),
    ]
    assert messages[2].content == "second question"
    assert messages[3].reply_to_id == messages[2].id
    assert body["user_message_id"] == str(messages[2].id)
    assert body["assistant_message_id"] == str(messages[3].id)
    conversation = Conversation.objects.get(pk=conversation_id)
    assert conversation.last_sequence == 4
    assert conversation.updated_at > updated_before
    assert conversation.updated_at >= messages[3].created_at
    latest = api.get(
        reverse("conversations:conversation-latest", args=[session.user_id])
    )
    assert latest.status_code == 200
    assert latest.json()["conversation_id"] == conversation_id
    assert Conversation.objects.filter(owner_id=session.user_id).count() == 2


def test_chat_stub_task_command_stores_tool_call(
    api: APIClient, session: BetterAuthSession
) -> None:
    response = chat(api, session.user_id, {"message": "add buy milk"})

    assert response.status_code == 200
    body = response.json()
    tool_call = ToolCall.objects.get()
    assert str(tool_call.message_id) == body["assistant_message_id"]
    assert tool_call.message.role == "assistant"
    assert (tool_call.position, tool_call.tool_name, tool_call.status) == (
        0,
        "add_task",
        "success",
    )
    assert tool_call.parameters == {"title": "buy milk"}
    result = tool_call.result
    assert isinstance(result, dict)
    assert set(result) == {"task_id", "title", "completed"}
    assert (result["title"], result["completed"]) == ("buy milk", False)
    assert body["tool_calls"] == [
        {
            "id": str(tool_call.id),
            "tool_name": "add_task",
            "parameters": {"title": "buy milk"},
            "result": tool_call.result,
            "status": "success",
        }
    ]
    assert "buy milk" in body["response"]


def test_chat_stub_greeting_stores_no_tool_call(
    api: APIClient, session: BetterAuthSession
) -> None:
    response = chat(api, session.user_id, {"message": "hello"})

    assert response.status_code == 200
    assert response.json()["tool_calls"] == []
    assert ToolCall.objects.count() == 0
    assert Message.objects.count() == 2


def test_chat_agent_receives_user_message_and_history_oldest_first(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> None:
    settings.AGENT_BACKEND = RECORDING

    first = chat(api, session.user_id, {"message": "first"}).json()
    chat(
        api,
        session.user_id,
        {"message": "second", "conversation_id": first["conversation_id"]},
    )

    assert [(c.user_id, c.message, c.history) for c in RecordingAgent.calls] == [
        (session.user_id, "first", ()),
        (
            session.user_id,
            "second",
            (
                HistoryMessage("user", "first"),
                HistoryMessage("assistant", "echo: first"),
            ),
        ),
    ]


def test_chat_agent_history_is_capped_at_context_setting(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> None:
    settings.AGENT_BACKEND = RECORDING
    settings.AGENT_CONTEXT_MESSAGES = 3
    conversation_id = None

    for n in range(1, 5):
        response = chat(
            api,
            session.user_id,
            {"message": f"m{n}", "conversation_id": conversation_id},
        )
        assert response.status_code == 200
        conversation_id = response.json()["conversation_id"]

    assert [len(call.history) for call in RecordingAgent.calls] == [0, 2, 3, 3]
    assert RecordingAgent.calls[-1].message == "m4"
    assert RecordingAgent.calls[-1].history == (
        HistoryMessage("assistant", "echo: m2"),
        HistoryMessage("user", "m3"),
        HistoryMessage("assistant", "echo: m3"),
    )
    assert len(stored(conversation_id)) == 8


def conversation_of(owner_id: str, *contents: str) -> str:
    """A conversation of these messages, alternating user and assistant,
    oldest first; its id."""
    conversation = ConversationFactory.create(owner_id=owner_id)
    for index, content in enumerate(contents):
        MessageFactory.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT if index % 2 else Message.Role.USER,
            content=content,
        )
    return str(conversation.id)


@pytest.mark.parametrize(
    ("max_chars", "kept"),
    [
        (64000, ["a" * 10, "b" * 20, "c" * 30, "d" * 40]),
        (90, ["b" * 20, "c" * 30, "d" * 40]),  # exactly 90: all three fit
        (89, ["c" * 30, "d" * 40]),
        (40, ["d" * 40]),
        (39, []),  # the newest does not fit: none, never a cut message
        (0, []),
    ],
)
def test_chat_agent_history_keeps_the_newest_whole_messages_that_fit(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    max_chars: int,
    kept: list[str],
) -> None:
    settings.AGENT_BACKEND = RECORDING
    settings.AGENT_CONTEXT_MAX_CHARS = max_chars
    conversation_id = conversation_of(
        session.user_id, "a" * 10, "b" * 20, "c" * 30, "d" * 40
    )

    response = chat(
        api, session.user_id, {"message": "e", "conversation_id": conversation_id}
    )

    assert response.status_code == 200
    (call,) = RecordingAgent.calls
    assert call.message == "e"
    assert [message.content for message in call.history] == kept
    # The bound only trims what the agent reads: every message is stored.
    assert len(stored(uuid.UUID(conversation_id))) == 6


def test_chat_agent_history_stops_at_the_first_message_too_long(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> None:
    settings.AGENT_BACKEND = RECORDING
    settings.AGENT_CONTEXT_MAX_CHARS = 100
    # "x" would fit after "y", but not without the 200-character message
    # between them: the agent gets an unbroken end of the conversation.
    conversation_id = conversation_of(session.user_id, "x", "l" * 200, "y")

    response = chat(
        api, session.user_id, {"message": "z", "conversation_id": conversation_id}
    )

    assert response.status_code == 200
    assert RecordingAgent.calls[0].history == (HistoryMessage("user", "y"),)


def test_chat_agent_history_counts_characters_not_bytes(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> None:
    settings.AGENT_BACKEND = RECORDING
    settings.AGENT_CONTEXT_MAX_CHARS = 6
    # 3 characters each: 12 and 9 bytes in UTF-8.
    conversation_id = conversation_of(session.user_id, "a", "🍵🍵🍵", "✅✅✅")

    response = chat(
        api, session.user_id, {"message": "z", "conversation_id": conversation_id}
    )

    assert response.status_code == 200
    assert [m.content for m in RecordingAgent.calls[0].history] == ["🍵🍵🍵", "✅✅✅"]


def test_chat_stores_agent_tool_calls_in_order(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> None:
    settings.AGENT_BACKEND = RECORDING

    response = chat(api, session.user_id, {"message": "do things"})

    assert response.status_code == 200
    body = response.json()
    assert body["response"] == "echo: do things"
    rows = list(
        ToolCall.objects.filter(message_id=body["assistant_message_id"])
        .order_by("position")
        .values_list("id", "position", "tool_name", "parameters", "result", "status")
    )
    assert [row[1:] for row in rows] == [
        (0, "echo", {"message": "do things"}, {"ok": True}, "success"),
        (1, "audit", {"n": 0}, None, "error"),
    ]
    assert [set(call) for call in body["tool_calls"]] == [TOOL_CALL_KEYS] * 2
    assert [
        (c["id"], c["tool_name"], c["parameters"], c["result"], c["status"])
        for c in body["tool_calls"]
    ] == [
        (str(rows[0][0]), "echo", {"message": "do things"}, {"ok": True}, "success"),
        (str(rows[1][0]), "audit", {"n": 0}, None, "error"),
    ]


def test_chat_ignores_unknown_keys(api: APIClient, session: BetterAuthSession) -> None:
    other = BetterAuthSessionFactory.create()

    response = chat(
        api,
        session.user_id,
        {
            "message": "hello",
            "user_id": other.user_id,
            "owner_id": other.user_id,
            "role": "assistant",
            "sequence": 99,
            "unknown": {"nested": [1, 2]},
        },
    )

    assert response.status_code == 200
    conversation = Conversation.objects.get()
    assert conversation.owner_id == session.user_id
    assert stored(conversation.id)[0] == (1, "user", "hello")


def test_chat_trailing_slash_is_served_without_redirect(
    api: APIClient, session: BetterAuthSession
) -> None:
    url = chat_url(session.user_id) + "/"

    response = api.post(url, {"message": "hello"}, format="json")

    assert response.status_code == 200
    assert response.json()["conversation_id"] == str(Conversation.objects.get().id)


# --- isolation -----------------------------------------------------------


def test_chat_path_user_id_of_another_user_is_not_found(
    api: APIClient, session: BetterAuthSession, row_counts: RowCounts
) -> None:
    other = BetterAuthSessionFactory.create()
    mine = conversation_with_messages(session.user_id, 2)
    before = row_counts()

    for payload in (
        {"message": "hi"},
        {"message": "hi", "conversation_id": str(mine.id)},
    ):
        response = chat(api, other.user_id, payload)

        assert response.status_code == 404
        assert response.content == NOT_FOUND
    assert row_counts() == before
    assert not Conversation.objects.filter(owner_id=other.user_id).exists()


def test_chat_path_user_id_unknown_is_not_found(
    api: APIClient, session: BetterAuthSession, row_counts: RowCounts
) -> None:
    response = chat(api, "no-such-user", {"message": "hi"})

    assert response.status_code == 404
    assert response.content == NOT_FOUND
    assert row_counts() == (0, 0, 0)


def test_chat_conversation_of_another_user_is_not_found(
    api: APIClient, session: BetterAuthSession, row_counts: RowCounts
) -> None:
    theirs = conversation_with_messages("someone-else", 2)
    before = row_counts()

    response = chat(
        api, session.user_id, {"message": "hi", "conversation_id": str(theirs.id)}
    )

    assert response.status_code == 404
    assert response.content == NOT_FOUND
    assert row_counts() == before
    theirs.refresh_from_db()
    assert theirs.last_sequence == 2
    assert stored(theirs.id) == [
        (1, "user", "history 1"),
        (2, "assistant", "history 2"),
    ]


def test_chat_nonexistent_conversation_is_not_found(
    api: APIClient, session: BetterAuthSession, row_counts: RowCounts
) -> None:
    conversation_with_messages(session.user_id, 2)
    before = row_counts()

    response = chat(
        api, session.user_id, {"message": "hi", "conversation_id": str(uuid.uuid4())}
    )

    assert response.status_code == 404
    assert response.content == NOT_FOUND
    assert row_counts() == before


# --- bad input -----------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"message": "hi"', b'{"message": NaN}', b"\xff\xfe{}"],
    ids=["garbage", "truncated", "nan", "not-utf8"],
)
def test_chat_body_not_json_is_bad_request(
    api: APIClient,
    session: BetterAuthSession,
    raw: bytes,
    row_counts: RowCounts,
    assert_error: AssertError,
) -> None:
    response = api.post(chat_url(session.user_id), raw, content_type="application/json")

    body = assert_error(response, 400, "parse_error")
    assert set(body) == {"detail", "code"}
    assert row_counts() == (0, 0, 0)


def test_chat_empty_body_is_bad_request(
    api: APIClient,
    session: BetterAuthSession,
    row_counts: RowCounts,
    assert_error: AssertError,
) -> None:
    response = api.post(chat_url(session.user_id), b"", content_type="application/json")

    body = assert_error(response, 400, "required")
    assert set(body["errors"]) == {"message"}
    assert row_counts() == (0, 0, 0)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"[]", "invalid"),
        (b'[{"message": "hi"}]', "invalid"),
        (b'"hi"', "invalid"),
        (b"42", "invalid"),
        (b"null", "null"),
        (b"true", "invalid"),
    ],
    ids=["empty-array", "array", "string", "number", "null", "bool"],
)
def test_chat_json_not_an_object_is_bad_request(
    api: APIClient,
    session: BetterAuthSession,
    raw: bytes,
    code: str,
    row_counts: RowCounts,
) -> None:
    response = api.post(chat_url(session.user_id), raw, content_type="application/json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"detail", "code", "errors"}
    assert body["code"] == code
    assert set(body["errors"]) == {"non_field_errors"}
    assert row_counts() == (0, 0, 0)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({}, "required"),
        ({"conversation_id": None}, "required"),
        ({"text": "hi"}, "required"),
        ({"message": 42}, "invalid"),
        ({"message": 4.5}, "invalid"),
        ({"message": ["hi"]}, "invalid"),
        ({"message": {"text": "hi"}}, "invalid"),
        ({"message": True}, "invalid"),
        ({"message": None}, "null"),
        ({"message": ""}, "blank"),
        ({"message": "  \n\t"}, "blank"),
        ({"message": "\u3000\u00a0"}, "blank"),
        ({"message": "a\u0000b"}, "null_characters_not_allowed"),
    ],
    ids=[
        "missing",
        "missing-with-null-conversation",
        "wrong-key",
        "int",
        "float",
        "list",
        "object",
        "bool",
        "null",
        "empty",
        "whitespace",
        "unicode-whitespace",
        "nul",
    ],
)
def test_chat_invalid_message_is_bad_request(
    api: APIClient,
    session: BetterAuthSession,
    payload: dict[str, Any],
    code: str,
    row_counts: RowCounts,
    assert_error: AssertError,
) -> None:
    response = chat(api, session.user_id, payload)

    body = assert_error(response, 400, code)
    assert set(body["errors"]) == {"message"}
    assert row_counts() == (0, 0, 0)


@pytest.mark.parametrize("message", ["", "  \n\t", 42, None, "a\u0000b"], ids=str)
def test_chat_invalid_message_changes_existing_conversation_not(
    api: APIClient, session: BetterAuthSession, message: Any, row_counts: RowCounts
) -> None:
    conversation = conversation_with_messages(session.user_id, 2)
    before = row_counts()

    response = chat(
        api,
        session.user_id,
        {"message": message, "conversation_id": str(conversation.id)},
    )

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"message"}
    assert row_counts() == before
    conversation.refresh_from_db()
    assert conversation.last_sequence == 2


def test_chat_lone_surrogate_is_bad_request(
    api: APIClient,
    session: BetterAuthSession,
    row_counts: RowCounts,
    assert_error: AssertError,
) -> None:
    response = api.post(
        chat_url(session.user_id),
        b'{"message": "bad \\ud800 text"}',
        content_type="application/json",
    )

    body = assert_error(response, 400, "surrogate_characters_not_allowed")
    assert set(body["errors"]) == {"message"}
    assert row_counts() == (0, 0, 0)


def test_chat_escaped_surrogate_pair_is_stored_as_one_character(
    api: APIClient, session: BetterAuthSession
) -> None:
    response = api.post(
        chat_url(session.user_id),
        b'{"message": "party \\ud83c\\udf89"}',
        content_type="application/json",
    )

    assert response.status_code == 200
    assert Message.objects.get(role="user").content == "party 🎉"


@pytest.mark.parametrize(
    "conversation_id",
    ["abc", "", "12345678-1234-1234-1234-12345678901g", 123, [], {}, True],
    ids=["abc", "empty", "bad-hex", "int", "list", "object", "bool"],
)
def test_chat_conversation_id_not_uuid_is_bad_request(
    api: APIClient,
    session: BetterAuthSession,
    conversation_id: Any,
    row_counts: RowCounts,
    assert_error: AssertError,
) -> None:
    conversation_with_messages(session.user_id, 2)
    before = row_counts()

    response = chat(
        api, session.user_id, {"message": "hi", "conversation_id": conversation_id}
    )

    body = assert_error(response, 400, "invalid")
    assert set(body["errors"]) == {"conversation_id"}
    assert row_counts() == before


@pytest.mark.parametrize(
    ("message", "status"),
    [("x" * 10, 200), ("🎉" * 10, 200), ("x" * 11, 400), ("🎉" * 11, 400)],
    ids=["ascii-at-limit", "emoji-at-limit", "ascii-over", "emoji-over"],
)
def test_chat_message_length_limit(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    message: str,
    status: int,
    row_counts: RowCounts,
    assert_error: AssertError,
) -> None:
    settings.CHAT_MAX_MESSAGE_CHARS = 10

    response = chat(api, session.user_id, {"message": message})

    if status == 200:
        assert response.status_code == 200
        assert Message.objects.get(role="user").content == message
    else:
        body = assert_error(response, 400, "message_too_long")
        assert set(body["errors"]) == {"message"}
        assert body["errors"]["message"]
        assert row_counts() == (0, 0, 0)


def test_chat_body_over_upload_limit_is_too_large(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    row_counts: RowCounts,
    assert_error: AssertError,
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    raw = b'{"message": "' + b"x" * 1100 + b'"}'

    response = api.post(chat_url(session.user_id), raw, content_type="application/json")

    body = assert_error(response, 413, "request_too_large")
    assert set(body) == {"detail", "code"}
    assert row_counts() == (0, 0, 0)


def test_chat_body_exactly_at_upload_limit_is_accepted(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    frame = b'{"message": ""}'
    raw = b'{"message": "' + b"x" * (1024 - len(frame)) + b'"}'
    assert len(raw) == 1024

    response = api.post(chat_url(session.user_id), raw, content_type="application/json")

    assert response.status_code == 200
    assert len(Message.objects.get(role="user").content) == 1024 - len(frame)


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"message=hi", "application/x-www-form-urlencoded"),
        (b"hi", "text/plain"),
        (b'{"message": "hi"}', "text/plain"),
        (b"<message>hi</message>", "application/xml"),
    ],
    ids=["form", "text", "json-as-text", "xml"],
)
def test_chat_non_json_content_type_is_unsupported(
    api: APIClient,
    session: BetterAuthSession,
    raw: bytes,
    content_type: str,
    row_counts: RowCounts,
    assert_error: AssertError,
) -> None:
    response = api.post(chat_url(session.user_id), raw, content_type=content_type)

    body = assert_error(response, 415, "unsupported_media_type")
    assert set(body) == {"detail", "code"}
    assert row_counts() == (0, 0, 0)


def test_chat_multipart_is_unsupported(
    api: APIClient,
    session: BetterAuthSession,
    row_counts: RowCounts,
    assert_error: AssertError,
) -> None:
    response = api.post(
        chat_url(session.user_id), {"message": "hi"}, format="multipart"
    )

    assert_error(response, 415, "unsupported_media_type")
    assert row_counts() == (0, 0, 0)


# --- agent failures ------------------------------------------------------


def assert_only_user_message_then_next_works(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> None:
    """After a failed exchange, the conversation holds just the user message,
    and the next message in it works with the stub."""
    conversation = Conversation.objects.get(owner_id=session.user_id)
    assert stored(conversation.id) == [(1, "user", "add buy milk")]
    assert ToolCall.objects.count() == 0

    settings.AGENT_BACKEND = STUB
    response = chat(
        api,
        session.user_id,
        {"message": "hello again", "conversation_id": str(conversation.id)},
    )

    assert response.status_code == 200
    assert [(s, r) for s, r, _ in stored(conversation.id)] == [
        (1, "user"),
        (2, "user"),
        (3, "assistant"),
    ]
    assistant = Message.objects.get(conversation=conversation, sequence=3)
    assert assistant.reply_to == Message.objects.get(
        conversation=conversation, sequence=2
    )
    conversation.refresh_from_db()
    assert conversation.last_sequence == 3


def test_chat_failing_agent_answers_502_and_keeps_user_message(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    assert_error: AssertError,
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.FailingAgent"

    response = chat(api, session.user_id, {"message": "add buy milk"})

    body = assert_error(response, 502, "agent_error")
    assert body == {"detail": AgentError.default_detail, "code": "agent_error"}
    assert_only_user_message_then_next_works(api, session, settings)


def test_chat_slow_agent_answers_504_and_late_reply_is_dropped(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    assert_error: AssertError,
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.SlowAgent"
    settings.AGENT_TIMEOUT_SECONDS = 0.2
    SlowAgent.delay = 0.6

    started = time.monotonic()
    response = chat(api, session.user_id, {"message": "add buy milk"})
    elapsed = time.monotonic() - started

    body = assert_error(response, 504, "agent_timeout")
    assert body == {"detail": AgentTimeoutError.default_detail, "code": "agent_timeout"}
    assert SlowAgent.finished.is_set() is False
    assert elapsed < 0.6
    assert SlowAgent.finished.wait(5) is True
    time.sleep(0.2)
    assert Message.objects.filter(role="assistant").count() == 0
    assert_only_user_message_then_next_works(api, session, settings)


@pytest.mark.parametrize(
    "reply",
    [
        "not an AgentReply",
        None,
        AgentReply(content="nul \x00 inside"),
        AgentReply(content="ok", tool_calls=(ReplyToolCall(""),)),
        AgentReply(
            content="ok",
            tool_calls=(
                ReplyToolCall("add_task", {"title": "a"}, {}, "success"),
                ReplyToolCall("add_task", {"n": float("nan")}, {}, "success"),
            ),
        ),
        AgentReply(
            content="ok",
            tool_calls=(ReplyToolCall("add_task", {}, {}, "maybe"),),  # type: ignore[arg-type]
        ),
    ],
    ids=["string", "none", "nul-content", "empty-tool", "nan-in-second", "status"],
)
def test_chat_invalid_agent_reply_answers_502_and_stores_only_user_message(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    reply: Any,
    assert_error: AssertError,
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.InvalidReplyAgent"
    InvalidReplyAgent.reply = reply

    response = chat(api, session.user_id, {"message": "add buy milk"})

    assert assert_error(response, 502, "agent_error") == {
        "detail": AgentError.default_detail,
        "code": "agent_error",
    }
    assert_only_user_message_then_next_works(api, session, settings)


# --- query counts --------------------------------------------------------


@pytest.mark.postgresql
def test_chat_new_conversation_query_count(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    settings.AGENT_BACKEND = RECORDING

    with django_assert_num_queries(QUERIES_NEW_CONVERSATION):
        response = chat(api, session.user_id, {"message": "hello"})

    assert response.status_code == 200
    assert len(RecordingAgent.calls) == 1


@pytest.mark.postgresql
@pytest.mark.parametrize("history", [2, 200])
def test_chat_existing_conversation_query_count_does_not_grow_with_history(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    django_assert_num_queries: DjangoAssertNumQueries,
    history: int,
) -> None:
    settings.AGENT_BACKEND = RECORDING
    conversation = conversation_with_messages(session.user_id, history)
    payload = {"message": "hello", "conversation_id": str(conversation.id)}

    with django_assert_num_queries(QUERIES_EXISTING_CONVERSATION):
        response = chat(api, session.user_id, payload)

    assert response.status_code == 200
    assert len(RecordingAgent.calls[0].history) == min(history, 20)
    assert RecordingAgent.calls[0].history[-1] == HistoryMessage(
        "assistant", f"history {history}"
    )
    assert [s for s, _, _ in stored(conversation.id)][-2:] == [history + 1, history + 2]


def _agent_thread_query() -> list[str]:
    return list(Conversation.objects.values_list("owner_id", flat=True))


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_chat_query_count_does_not_see_agent_thread_queries(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    """Queries the agent makes run on its own thread's connection, which
    django_assert_num_queries (bound to the test thread's connection) does
    not capture: counts cover the request thread only."""
    settings.AGENT_BACKEND = "agent.tests.fakes.ProbeAgent"
    counts = []
    for probe in (None, _agent_thread_query):
        ProbeAgent.probe = probe
        with django_assert_num_queries(
            QUERIES_NEW_CONVERSATION_NO_TOOL_CALLS
        ) as captured:
            response = chat(api, session.user_id, {"message": "hello"})
        assert response.status_code == 200
        counts.append(len(captured.captured_queries))

    assert counts[0] == counts[1]
    # The probe did query, from the agent thread, and saw committed rows.
    assert ProbeAgent.outcome[0] is None
    assert ProbeAgent.outcome[1] == [session.user_id, session.user_id]
    assert Message.objects.filter(conversation__owner_id=session.user_id).count() == 4
    assert (
        Message.objects.filter(sequence=F("conversation__last_sequence")).count() == 2
    )
