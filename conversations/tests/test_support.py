"""Shell helpers: find a user, list their conversations, read a transcript,
list recent failed tool calls; `manage.py shell` imports them by itself."""

import datetime as dt
import uuid
from io import StringIO

from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import pytest

from better_auth.tests.factories import BetterAuthUserFactory
from conversations.models import Conversation, Message, ToolCall
from conversations.support import (
    AmbiguousUserError,
    conversation_transcript,
    tool_calls_failed,
    user_conversations,
    user_find,
    user_resolve,
)
from conversations.tests.factories import (
    ConversationFactory,
    MessageFactory,
    ToolCallFactory,
)

pytestmark = pytest.mark.django_db


# user_find


@pytest.mark.parametrize(
    "query", ["dana@example.com", "Dana@Example.COM", "  dana@example.com "]
)
def test_user_find_by_email(query: str) -> None:
    user = BetterAuthUserFactory.create(email="dana@example.com")

    assert user_find(query) == user


def test_user_find_by_id() -> None:
    user = BetterAuthUserFactory.create()

    assert user_find(user.id) == user


@pytest.mark.parametrize("query", ["nobody@example.com", "no-such-id", "", "   "])
def test_user_find_unknown_is_none(query: str) -> None:
    BetterAuthUserFactory.create()

    assert user_find(query) is None


@pytest.mark.parametrize(
    "query", ["Lee@example.com", "lee@example.com", "LEE@EXAMPLE.COM"]
)
def test_user_find_refuses_an_email_two_users_share_up_to_case(query: str) -> None:
    users = [
        BetterAuthUserFactory.create(email="Lee@example.com"),
        BetterAuthUserFactory.create(email="lee@example.com"),
    ]

    with pytest.raises(AmbiguousUserError) as refused:
        user_find(query)

    assert refused.value.user_ids == sorted(user.id for user in users)
    for user in users:
        assert f"{user.id} <{user.email}>" in str(refused.value)
    with pytest.raises(AmbiguousUserError):
        user_resolve(query)


# user_conversations


def test_user_conversations_lists_theirs_most_recently_active_first() -> None:
    user = BetterAuthUserFactory.create(email="erin@example.com")
    now = timezone.now()
    stale = ConversationFactory.create(
        owner_id=user.id, updated_at=now - dt.timedelta(days=3)
    )
    active = ConversationFactory.create(owner_id=user.id, updated_at=now)
    ConversationFactory.create()  # someone else's

    listing = user_conversations("erin@example.com")

    assert list(listing) == [active, stale]
    text = repr(listing)
    assert f"{user.id} <erin@example.com>" in text
    assert text.index(str(active.id)) < text.index(str(stale.id))


def test_user_conversations_shows_message_counts() -> None:
    conversation = ConversationFactory.create()
    MessageFactory.create_batch(4, conversation=conversation)

    text = str(user_conversations(conversation.owner_id))

    row = next(line for line in text.splitlines() if str(conversation.id) in line)
    assert row.split()[2] == "4"


def test_user_conversations_respects_the_limit() -> None:
    user = BetterAuthUserFactory.create()
    ConversationFactory.create_batch(5, owner_id=user.id)

    assert len(user_conversations(user, limit=2)) == 2


def test_user_conversations_of_an_id_without_better_auth_user() -> None:
    conversation = ConversationFactory.create(owner_id="gone-user")

    listing = user_conversations("gone-user")

    assert list(listing) == [conversation]
    assert "no Better Auth user with this id" in repr(listing)


def test_user_conversations_of_a_user_without_any() -> None:
    user = BetterAuthUserFactory.create()

    listing = user_conversations(user)

    assert list(listing) == []
    assert repr(listing).endswith(": none")


@pytest.mark.parametrize("query", ["ghost@example.com", "ghost-id"])
def test_user_conversations_of_an_unknown_user_raises(query: str) -> None:
    with pytest.raises(LookupError, match="ghost"):
        user_conversations(query)


# conversation_transcript


def a_conversation() -> Conversation:
    user = BetterAuthUserFactory.create(email="fay@example.com")
    conversation = ConversationFactory.create(owner_id=user.id)
    at = dt.datetime(2026, 11, 25, 9, 30, 0, tzinfo=dt.UTC)
    question = MessageFactory.create(
        conversation=conversation,
        content="add buy milk\nand eggs",
        created_at=at,
    )
    answer = MessageFactory.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        content="I could not add it.",
        reply_to=question,
        created_at=at,
    )
    ToolCallFactory.create(
        message=answer,
        tool_name="add_task",
        parameters={"title": "buy milk"},
        result={"error": "task service unavailable"},
        status=ToolCall.Status.ERROR,
    )
    return conversation


def test_conversation_transcript_reads_in_order_with_tool_calls() -> None:
    conversation = a_conversation()

    text = str(conversation_transcript(str(conversation.id)))

    assert text.splitlines()[0] == (
        f"Conversation {conversation.id} of {conversation.owner_id} <fay@example.com>"
    )
    expected = [
        "#1  2026-11-25 09:30:00 UTC  user",
        "    add buy milk",
        "    and eggs",
        "",
        "#2  2026-11-25 09:30:00 UTC  assistant",
        "    I could not add it.",
        "    tool call add_task: error",
        "      parameters: {",
        '        "title": "buy milk"',
        "      }",
        "      result: {",
        '        "error": "task service unavailable"',
        "      }",
    ]
    assert text.splitlines()[-len(expected) :] == expected


def test_conversation_transcript_shows_what_a_reply_cost() -> None:
    conversation = a_conversation()
    Message.objects.filter(conversation=conversation, sequence=2).update(
        model="gpt-test-mini", prompt_tokens=1200, completion_tokens=34
    )

    lines = str(conversation_transcript(conversation)).splitlines()

    assert "#1  2026-11-25 09:30:00 UTC  user" in lines
    assert (
        "#2  2026-11-25 09:30:00 UTC  assistant  "
        "(gpt-test-mini · 1200 prompt + 34 completion tokens)"
    ) in lines


def test_conversation_transcript_shows_itself_in_the_shell() -> None:
    conversation = a_conversation()

    transcript = conversation_transcript(conversation)

    assert repr(transcript) == str(transcript)


def test_conversation_transcript_last_shows_the_newest_messages() -> None:
    conversation = ConversationFactory.create()
    for n in range(1, 6):
        MessageFactory.create(conversation=conversation, content=f"message {n}")

    text = str(conversation_transcript(conversation.pk, last=2))

    assert "(showing the last 2)" in text
    assert "message 3" not in text
    assert text.index("message 4") < text.index("message 5")


def test_conversation_transcript_queries_do_not_grow_with_messages() -> None:
    conversation = ConversationFactory.create()
    for _ in range(30):
        message = MessageFactory.create(
            conversation=conversation, role=Message.Role.ASSISTANT
        )
        ToolCallFactory.create(message=message)

    with CaptureQueriesContext(connection) as captured:
        str(conversation_transcript(conversation.id))

    # Conversation, owner, messages, tool calls.
    assert len(captured) == 4


def test_conversation_transcript_unknown_id_raises() -> None:
    with pytest.raises(Conversation.DoesNotExist):
        conversation_transcript(uuid.uuid4())


def test_conversation_transcript_malformed_id_raises_value_error() -> None:
    with pytest.raises(ValueError, match="badly formed"):
        conversation_transcript("not-a-uuid")


# tool_calls_failed


def test_tool_calls_failed_lists_failures_newest_first() -> None:
    now = timezone.now()
    older = ToolCallFactory.create(
        status=ToolCall.Status.ERROR, created_at=now - dt.timedelta(hours=2)
    )
    newer = ToolCallFactory.create(
        status=ToolCall.Status.ERROR,
        created_at=now,
        tool_name="delete_task",
        result={"error": "no such task"},
    )
    ToolCallFactory.create(status=ToolCall.Status.SUCCESS)

    listing = tool_calls_failed()

    assert list(listing) == [newer, older]
    first_row = repr(listing).splitlines()[2]
    assert "delete_task" in first_row
    assert str(newer.message.conversation_id) in first_row
    assert '{"error": "no such task"}' in first_row


def test_tool_calls_failed_of_one_user_since_a_time() -> None:
    user = BetterAuthUserFactory.create(email="gus@example.com")
    conversation = ConversationFactory.create(owner_id=user.id)
    now = timezone.now()
    recent = ToolCallFactory.create(
        message=MessageFactory.create(
            conversation=conversation, role=Message.Role.ASSISTANT
        ),
        status=ToolCall.Status.ERROR,
    )
    ToolCallFactory.create(  # too old
        message=MessageFactory.create(
            conversation=conversation, role=Message.Role.ASSISTANT
        ),
        status=ToolCall.Status.ERROR,
        created_at=now - dt.timedelta(days=3),
    )
    ToolCallFactory.create(status=ToolCall.Status.ERROR)  # someone else's

    listing = tool_calls_failed(user="gus@example.com", since=dt.timedelta(days=1))

    assert list(listing) == [recent]


def test_tool_calls_failed_none() -> None:
    ToolCallFactory.create(status=ToolCall.Status.SUCCESS)

    assert repr(tool_calls_failed()) == "No failed tool calls."


# manage.py shell


def test_shell_imports_the_support_helpers_by_itself(
    capsys: pytest.CaptureFixture[str],
) -> None:
    conversation = a_conversation()

    call_command(
        "shell",
        command=f"print(conversation_transcript('{conversation.id}'))\n"
        "print(user_find, user_conversations, tool_calls_failed, Conversation)\n"
        "print(tool_calls_failed(since=timedelta(hours=1)))",
        stdout=StringIO(),
    )

    printed = capsys.readouterr().out
    assert "tool call add_task: error" in printed
    assert "<function tool_calls_failed" in printed
    assert "Failed tool calls, newest first:" in printed


def test_support_helpers_import_in_one_line() -> None:
    namespace: dict[str, object] = {}

    exec("from conversations.support import *", namespace)  # noqa: S102

    assert {
        "user_find",
        "user_conversations",
        "conversation_transcript",
        "tool_calls_failed",
    } <= namespace.keys()
