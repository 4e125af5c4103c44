from django.db import IntegrityError, connection, models, transaction

import pytest

from better_auth.models import BetterAuthSession, BetterAuthUser
from better_auth.tests.factories import BetterAuthSessionFactory, BetterAuthUserFactory
from conversations.models import Conversation, Message, ToolCall
from conversations.tests.factories import (
    ConversationFactory,
    MessageFactory,
    ToolCallFactory,
)

pytestmark = pytest.mark.django_db


def test_message_duplicate_sequence_in_conversation_is_refused() -> None:
    message = MessageFactory.create()

    with pytest.raises(IntegrityError), transaction.atomic():
        MessageFactory.create(
            conversation=message.conversation, sequence=message.sequence
        )

    assert Message.objects.filter(conversation=message.conversation).count() == 1


def test_message_same_sequence_in_other_conversation_is_allowed() -> None:
    MessageFactory.create(sequence=1)

    MessageFactory.create(sequence=1)

    assert Message.objects.filter(sequence=1).count() == 2


def test_message_role_system_is_refused() -> None:
    conversation = ConversationFactory.create()

    with pytest.raises(IntegrityError), transaction.atomic():
        MessageFactory.create(conversation=conversation, role="system")

    assert not Message.objects.filter(conversation=conversation).exists()


def test_message_user_message_with_reply_to_is_refused() -> None:
    question = MessageFactory.create()

    with pytest.raises(IntegrityError), transaction.atomic():
        MessageFactory.create(
            conversation=question.conversation,
            role=Message.Role.USER,
            reply_to=question,
        )

    assert Message.objects.filter(conversation=question.conversation).count() == 1


def test_message_assistant_reply_to_user_message_is_allowed() -> None:
    question = MessageFactory.create()

    answer = MessageFactory.create(
        conversation=question.conversation,
        role=Message.Role.ASSISTANT,
        reply_to=question,
    )

    assert question.reply == answer


def test_message_two_replies_to_same_message_are_refused() -> None:
    question = MessageFactory.create()
    MessageFactory.create(
        conversation=question.conversation,
        role=Message.Role.ASSISTANT,
        reply_to=question,
    )

    with pytest.raises(IntegrityError), transaction.atomic():
        MessageFactory.create(
            conversation=question.conversation,
            role=Message.Role.ASSISTANT,
            reply_to=question,
        )

    assert Message.objects.filter(reply_to=question).count() == 1


def test_tool_call_status_weird_is_refused() -> None:
    message = MessageFactory.create(role=Message.Role.ASSISTANT)

    with pytest.raises(IntegrityError), transaction.atomic():
        ToolCallFactory.create(message=message, status="weird")

    assert not ToolCall.objects.filter(message=message).exists()


def test_tool_call_duplicate_position_in_message_is_refused() -> None:
    call = ToolCallFactory.create()

    with pytest.raises(IntegrityError), transaction.atomic():
        ToolCallFactory.create(message=call.message, position=call.position)

    assert ToolCall.objects.filter(message=call.message).count() == 1


def test_conversation_delete_cascades_to_messages_and_tool_calls() -> None:
    conversation = ConversationFactory.create()
    question = MessageFactory.create(conversation=conversation)
    answer = MessageFactory.create(
        conversation=conversation, role=Message.Role.ASSISTANT, reply_to=question
    )
    ToolCallFactory.create(message=answer)
    ToolCallFactory.create(message=answer)
    other_call = ToolCallFactory.create()

    conversation.delete()

    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.filter(conversation_id=conversation.pk).exists()
    assert list(ToolCall.objects.all()) == [other_call]
    assert Message.objects.get() == other_call.message


def test_conversation_str_is_its_id() -> None:
    conversation = ConversationFactory.create()

    assert str(conversation) == str(conversation.id)


def test_message_str_names_role_sequence_and_conversation() -> None:
    message = MessageFactory.create(role=Message.Role.ASSISTANT)

    assert str(message) == f"assistant #1 in {message.conversation_id}"


def test_tool_call_str_names_tool_and_status() -> None:
    call = ToolCallFactory.create(tool_name="add_task", status=ToolCall.Status.ERROR)

    assert str(call) == "add_task (error)"


def test_better_auth_user_str_is_email() -> None:
    user = BetterAuthUserFactory.build(email="ada@example.com")

    assert str(user) == "ada@example.com"


def test_better_auth_session_str_names_session_and_user() -> None:
    user = BetterAuthUserFactory.build(id="user-1")
    session = BetterAuthSessionFactory.build(id="session-1", user=user)

    assert str(session) == "session session-1 of user-1"


@pytest.mark.parametrize(
    ("model", "table"),
    [
        (Conversation, "conversations"),
        (Message, "messages"),
        (ToolCall, "tool_calls"),
        (BetterAuthUser, "user"),
        (BetterAuthSession, "session"),
    ],
)
def test_model_table_name(model: type[models.Model], table: str) -> None:
    assert model._meta.db_table == table
    assert table in connection.introspection.table_names()
