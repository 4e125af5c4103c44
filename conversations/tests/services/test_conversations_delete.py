"""conversations_delete: one transaction, the owner's rows only, never
racing a chat write into an orphan message."""

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from django.db import connection, connections, transaction

import pytest
from pytest_django import DjangoAssertNumQueries, Settings

from agent.tests.fakes import RecordingAgent
from conversations.models import Conversation, Message, ToolCall
from conversations.services import chat_message_send, conversations_delete
from conversations.tests.factories import (
    ConversationFactory,
    ToolCallFactory,
    conversation_with_messages,
)
from core.exceptions import NotFoundError

OWNER = "owner-1"
OTHER = "owner-2"
RECORDING = "agent.tests.fakes.RecordingAgent"


@pytest.fixture(autouse=True)
def _recording(settings: Settings) -> Iterator[None]:
    settings.AGENT_BACKEND = RECORDING
    RecordingAgent.reset()
    yield
    RecordingAgent.reset()


def with_tool_calls(conversation: Conversation) -> Conversation:
    for message in Message.objects.filter(
        conversation=conversation, role=Message.Role.ASSISTANT
    )[:50]:
        ToolCallFactory.create(message=message)
    return conversation


def orphans() -> tuple[int, int]:
    """Messages without their conversation, tool calls without their message."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM messages m LEFT JOIN conversations c"
            " ON c.id = m.conversation_id WHERE c.id IS NULL"
        )
        messages = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM tool_calls t LEFT JOIN messages m"
            " ON m.id = t.message_id WHERE m.id IS NULL"
        )
        calls = cursor.fetchone()[0]
    return messages, calls


@pytest.mark.django_db
def test_conversations_delete_one_leaves_the_owners_others() -> None:
    doomed = with_tool_calls(conversation_with_messages(OWNER, 6))
    kept = with_tool_calls(conversation_with_messages(OWNER, 4))
    theirs = with_tool_calls(conversation_with_messages(OTHER, 4))

    deleted = conversations_delete(owner_id=OWNER, conversation_id=doomed.id)

    assert deleted == 1
    assert set(Conversation.objects.values_list("pk", flat=True)) == {
        kept.pk,
        theirs.pk,
    }
    assert Message.objects.count() == 8
    assert ToolCall.objects.count() == 4
    assert orphans() == (0, 0)


@pytest.mark.django_db
def test_conversations_delete_another_owners_conversation_deletes_nothing() -> None:
    theirs = conversation_with_messages(OTHER, 2)

    assert conversations_delete(owner_id=OWNER, conversation_id=theirs.id) == 0
    assert conversations_delete(owner_id=OWNER, conversation_id=uuid.uuid4()) == 0
    assert Message.objects.filter(conversation=theirs).count() == 2


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_conversations_delete_of_10000_messages_is_one_transaction_of_statements(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    """Locked, then deleted by one statement: no message is read into Python."""
    conversation = with_tool_calls(conversation_with_messages(OWNER, 10_000))
    kept = conversation_with_messages(OTHER, 2)

    with django_assert_num_queries(4) as captured:
        deleted = conversations_delete(owner_id=OWNER, conversation_id=conversation.id)

    statements = [q["sql"] for q in captured.captured_queries]
    assert deleted == 1
    assert statements[0] == "BEGIN"
    assert statements[1].startswith("SELECT")
    assert "FOR UPDATE" in statements[1]
    assert '"messages"' not in statements[1]
    assert statements[2].lstrip().startswith("WITH t AS (")
    assert statements[3] == "COMMIT"
    assert Message.objects.filter(conversation_id=conversation.id).count() == 0
    assert ToolCall.objects.count() == 0
    assert Message.objects.filter(conversation=kept).count() == 2
    assert orphans() == (0, 0)


def in_thread(target: Callable[[], Any]) -> Any:
    """`target()` on another thread, hence another connection; its outcome."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(target())
        except Exception as exc:
            outcome.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    return outcome[0]


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_conversations_delete_locks_no_other_users_rows() -> None:
    mine = with_tool_calls(conversation_with_messages(OWNER, 20))
    theirs = with_tool_calls(conversation_with_messages(OTHER, 20))

    def touch_theirs() -> int:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '2s'")
            locked = list(
                Conversation.objects.select_for_update(nowait=True)
                .filter(owner_id=OTHER)
                .values_list("pk", flat=True)
            )
            list(
                Message.objects.select_for_update(nowait=True)
                .filter(conversation_id=theirs.pk)
                .values_list("pk", flat=True)
            )
            list(
                ToolCall.objects.select_for_update(nowait=True)
                .filter(message__conversation_id=theirs.pk)
                .values_list("pk", flat=True)
            )
            # And a chat write to their conversation goes through.
            Conversation.objects.filter(pk=theirs.pk).update(title="theirs")
            return len(locked)

    # The deletion's transaction stays open while the other user's rows are
    # locked and written from another connection: nothing waits.
    with transaction.atomic():
        assert conversations_delete(owner_id=OWNER) == 1
        assert in_thread(touch_theirs) == 1

    assert not Conversation.objects.filter(pk=mine.pk).exists()
    assert Conversation.objects.get(pk=theirs.pk).title == "theirs"


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_conversations_delete_waits_for_no_lock_another_user_holds() -> None:
    conversation_with_messages(OWNER, 4)
    theirs = conversation_with_messages(OTHER, 4)
    holding = threading.Event()
    release = threading.Event()

    def hold_theirs() -> None:
        with transaction.atomic():
            list(
                Conversation.objects.select_for_update()
                .filter(pk=theirs.pk)
                .values_list("pk", flat=True)
            )
            list(
                Message.objects.select_for_update()
                .filter(conversation_id=theirs.pk)
                .values_list("pk", flat=True)
            )
            holding.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold_theirs)
    holder.start()
    try:
        assert holding.wait(10)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
        assert conversations_delete(owner_id=OWNER) == 1
    finally:
        release.set()
        holder.join(10)
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")

    assert Message.objects.filter(conversation=theirs).count() == 4


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_number", range(5))
def test_concurrent_delete_and_send_leave_no_message_without_conversation(
    round_number: int,
) -> None:
    conversation = conversation_with_messages(OWNER, 6)
    kept = ConversationFactory.create(owner_id=OWNER)
    senders = 8
    barrier = threading.Barrier(senders + 1)
    outcomes: list[Any] = [None] * (senders + 1)

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            if index == senders:
                outcomes[index] = conversations_delete(
                    owner_id=OWNER, conversation_id=conversation.id
                )
            else:
                outcomes[index] = chat_message_send(
                    owner_id=OWNER,
                    content=f"message {index}",
                    conversation_id=conversation.id,
                )
        except Exception as exc:
            outcomes[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(senders + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    assert outcomes[senders] == 1
    failures = [o for o in outcomes[:senders] if isinstance(o, Exception)]
    # A send either finished before the deletion or found the conversation
    # gone (before storing its message, or its reply): nothing else.
    assert all(isinstance(o, NotFoundError) for o in failures), failures
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.filter(conversation_id=conversation.pk).exists()
    assert orphans() == (0, 0)
    assert Message.objects.count() == 0
    assert ToolCall.objects.count() == 0
    assert Conversation.objects.get().pk == kept.pk
