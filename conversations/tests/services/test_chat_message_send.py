import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from django.db import (
    DEFAULT_DB_ALIAS,
    OperationalError,
    connection,
    connections,
    transaction,
)

import pytest
from pytest_django import Settings

from agent.tests.fakes import ProbeAgent, RecordingAgent
from conversations.models import Conversation, Message, ToolCall
from conversations.services import chat_message_send
from conversations.tests.factories import ConversationFactory, MessageFactory
from core.exceptions import NotFoundError

OWNER = "owner-1"
PROBE = "agent.tests.fakes.ProbeAgent"
RECORDING = "agent.tests.fakes.RecordingAgent"


@pytest.fixture(autouse=True)
def _reset_fakes() -> Iterator[None]:
    RecordingAgent.reset()
    ProbeAgent.reset()
    yield
    RecordingAgent.reset()
    ProbeAgent.reset()


def probe_with(function: Callable[[], Any]) -> None:
    ProbeAgent.probe = function


def rows(conversation_id: uuid.UUID) -> list[tuple[int, str, str]]:
    return list(
        Message.objects.filter(conversation_id=conversation_id)
        .order_by("sequence")
        .values_list("sequence", "role", "content")
    )


def run_in_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Run `target(i)` in `count` threads started together; their outcomes.

    Each thread closes its own database connection when done.
    """
    barrier = threading.Barrier(count)
    outcomes: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            outcomes[index] = target(index)
        except Exception as exc:
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


# --- transaction boundaries ----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_chat_message_send_inside_atomic_raises_and_writes_nothing(
    settings: Settings, row_counts: Callable[[], tuple[int, int, int]]
) -> None:
    settings.AGENT_BACKEND = RECORDING

    with transaction.atomic():
        with pytest.raises(RuntimeError, match="durable"):
            chat_message_send(owner_id=OWNER, content="hello")
        # Seen from inside the caller's own (uncommitted) transaction.
        assert row_counts() == (0, 0, 0)

    assert row_counts() == (0, 0, 0)
    assert RecordingAgent.calls == []


@pytest.mark.django_db(transaction=True)
def test_chat_message_send_with_autocommit_off_raises_and_writes_nothing(
    settings: Settings, row_counts: Callable[[], tuple[int, int, int]]
) -> None:
    """Each chat write is one autocommit statement: with autocommit off it
    would stay uncommitted, so the flow refuses before writing."""
    settings.AGENT_BACKEND = RECORDING

    transaction.set_autocommit(False)
    try:
        with pytest.raises(RuntimeError, match="durable"):
            chat_message_send(owner_id=OWNER, content="hello")
    finally:
        transaction.rollback()
        transaction.set_autocommit(True)

    assert row_counts() == (0, 0, 0)
    assert RecordingAgent.calls == []


@pytest.mark.django_db(transaction=True)
def test_chat_message_send_inside_atomic_leaves_conversation_unchanged(
    settings: Settings, row_counts: Callable[[], tuple[int, int, int]]
) -> None:
    settings.AGENT_BACKEND = RECORDING
    conversation = MessageFactory.create(conversation__owner_id=OWNER).conversation

    with transaction.atomic():
        with pytest.raises(RuntimeError, match="durable"):
            chat_message_send(
                owner_id=OWNER, content="hello", conversation_id=conversation.id
            )
        assert Message.objects.count() == 1

    conversation.refresh_from_db()
    assert conversation.last_sequence == 1
    assert row_counts() == (1, 1, 0)
    assert RecordingAgent.calls == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_chat_message_send_user_message_is_committed_while_agent_runs(
    settings: Settings, existing: bool
) -> None:
    settings.AGENT_BACKEND = PROBE
    conversation_id = None
    if existing:
        conversation = MessageFactory.create(
            conversation__owner_id=OWNER, content="earlier"
        ).conversation
        conversation_id = conversation.id
    caller = connections[DEFAULT_DB_ALIAS]  # the calling thread's connection

    def probe() -> tuple[bool, bool, list[tuple[int, str, str]]]:
        return (
            threading.current_thread() is threading.main_thread(),
            caller.in_atomic_block,
            list(
                Message.objects.filter(conversation__owner_id=OWNER)
                .order_by("sequence")
                .values_list("sequence", "role", "content")
            ),
        )

    probe_with(probe)

    exchange = chat_message_send(
        owner_id=OWNER, content="hello", conversation_id=conversation_id
    )

    before = [(1, "user", "earlier")] if existing else []
    sequence = len(before) + 1
    assert ProbeAgent.outcome == [
        (False, False, [*before, (sequence, "user", "hello")])
    ]
    assert rows(exchange.conversation_id) == [
        *before,
        (sequence, "user", "hello"),
        (sequence + 1, "assistant", "probed"),
    ]


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_chat_message_send_holds_no_conversation_lock_while_agent_runs(
    settings: Settings, existing: bool
) -> None:
    settings.AGENT_BACKEND = PROBE
    conversation_id = None
    if existing:
        conversation = MessageFactory.create(conversation__owner_id=OWNER).conversation
        conversation_id = conversation.id

    def lock_conversation() -> int:
        with transaction.atomic():
            return len(
                Conversation.objects.select_for_update(nowait=True).filter(
                    owner_id=OWNER
                )
            )

    probe_with(lock_conversation)

    exchange = chat_message_send(
        owner_id=OWNER, content="hello", conversation_id=conversation_id
    )

    assert ProbeAgent.outcome == [1]
    assert [role for _, role, _ in rows(exchange.conversation_id)][-2:] == [
        "user",
        "assistant",
    ]

    # Control: the same probe does fail while someone holds the row lock.
    with transaction.atomic():
        list(Conversation.objects.select_for_update().filter(owner_id=OWNER))
        outcomes = run_in_threads(1, lambda _: lock_conversation())
    assert isinstance(outcomes[0], OperationalError)


# --- not found -----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("whose", ["other-owner", "nobody"])
def test_chat_message_send_unknown_conversation_raises_not_found(
    settings: Settings, whose: str, row_counts: Callable[[], tuple[int, int, int]]
) -> None:
    settings.AGENT_BACKEND = RECORDING
    theirs = ConversationFactory.create(owner_id="other-owner")
    MessageFactory.create(conversation=theirs)
    conversation_id = theirs.id if whose == "other-owner" else uuid.uuid4()

    with pytest.raises(NotFoundError):
        chat_message_send(
            owner_id=OWNER, content="hello", conversation_id=conversation_id
        )

    assert row_counts() == (1, 1, 0)
    theirs.refresh_from_db()
    assert theirs.last_sequence == 1
    assert RecordingAgent.calls == []


@pytest.mark.django_db(transaction=True)
def test_chat_message_send_conversation_deleted_while_agent_ran_raises_not_found(
    settings: Settings, row_counts: Callable[[], tuple[int, int, int]]
) -> None:
    settings.AGENT_BACKEND = PROBE
    conversation = MessageFactory.create(conversation__owner_id=OWNER).conversation
    MessageFactory.create(conversation__owner_id=OWNER)  # one that must survive

    def delete_conversation() -> int:
        deleted, _ = Conversation.objects.filter(pk=conversation.pk).delete()
        return deleted

    probe_with(delete_conversation)

    with pytest.raises(NotFoundError):
        chat_message_send(
            owner_id=OWNER, content="hello", conversation_id=conversation.id
        )

    assert ProbeAgent.outcome == [3]  # the conversation and its two messages
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 0
    assert ToolCall.objects.count() == 0
    assert row_counts() == (1, 1, 0)


# --- concurrency (PostgreSQL) --------------------------------------------


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_chat_message_send_concurrent_senders_get_gapless_sequences(
    settings: Settings,
) -> None:
    settings.AGENT_BACKEND = RECORDING
    conversation = ConversationFactory.create(owner_id=OWNER)

    outcomes = run_in_threads(
        20,
        lambda i: chat_message_send(
            owner_id=OWNER, content=f"message {i}", conversation_id=conversation.id
        ),
    )

    assert [o for o in outcomes if isinstance(o, Exception)] == []
    messages = list(Message.objects.filter(conversation=conversation))
    assert sorted(m.sequence for m in messages) == list(range(1, 41))
    by_id = {m.id: m for m in messages}
    users = [m for m in messages if m.role == Message.Role.USER]
    assistants = [m for m in messages if m.role == Message.Role.ASSISTANT]
    assert sorted(m.content for m in users) == sorted(f"message {i}" for i in range(20))
    assert len(assistants) == 20
    assert {m.reply_to_id for m in assistants} == {m.id for m in users}
    for assistant in assistants:
        assert assistant.reply_to_id is not None
        question = by_id[assistant.reply_to_id]
        assert question.role == Message.Role.USER
        assert assistant.content == f"echo: {question.content}"
        assert assistant.sequence > question.sequence
    assert ToolCall.objects.filter(message__in=assistants).count() == 40
    assert sorted(o.user_message.sequence for o in outcomes) == sorted(
        m.sequence for m in users
    )
    conversation.refresh_from_db()
    assert conversation.last_sequence == 40
    assert len(RecordingAgent.calls) == 20


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_chat_message_send_concurrent_new_conversations_are_separate(
    settings: Settings,
) -> None:
    settings.AGENT_BACKEND = RECORDING

    outcomes = run_in_threads(
        10, lambda i: chat_message_send(owner_id=OWNER, content=f"topic {i}")
    )

    assert [o for o in outcomes if isinstance(o, Exception)] == []
    conversations = list(Conversation.objects.filter(owner_id=OWNER))
    assert len(conversations) == 10
    assert {o.conversation_id for o in outcomes} == {c.id for c in conversations}
    for conversation in conversations:
        assert conversation.last_sequence == 2
        (_, _, question), answer = rows(conversation.id)
        assert answer == (2, "assistant", f"echo: {question}")
        assert rows(conversation.id)[0][:2] == (1, "user")
    assert Message.objects.count() == 20
