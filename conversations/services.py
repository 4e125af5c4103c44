"""Writes. The chat flow and its transaction boundaries live here.

Each write of the chat flow is committed when it returns, and never runs
inside a caller's transaction. On PostgreSQL each is one statement of
conversations.postgres (the fast path, docs/PERFORMANCE.md); elsewhere it
is a durable atomic block of the ORM that locks the owner's conversation
row (`select_for_update`), takes the next sequence number and inserts the
message and its tool calls.
"""

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from agent.backends.base import AgentReply, HistoryMessage
from agent.exceptions import AgentError
from agent.runner import agent_reply_generate
from conversations import postgres
from conversations.models import (
    Conversation,
    Message,
    ToolCall,
    conversation_title_from_message,
)
from conversations.selectors import message_history_for_agent
from core.exceptions import NotFoundError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChatExchange:
    user_message: Message
    assistant_message: Message
    tool_calls: list[ToolCall]

    @property
    def conversation_id(self) -> uuid.UUID:
        return self.user_message.conversation_id


def chat_message_send(
    *, owner_id: str, content: str, conversation_id: uuid.UUID | None = None
) -> ChatExchange:
    """Store the user's message, ask the agent, store the agent's reply.

    Three steps, never inside a caller's transaction (RuntimeError if there
    is one, before anything is written):

    1. commit the user's message (creating the conversation when
       `conversation_id` is None);
    2. call the agent with no transaction open and no row locked;
    3. commit the assistant message, its tool calls and the conversation's
       new `updated_at` together.

    Raises NotFoundError when the owner has no such conversation, and
    AgentError / AgentTimeoutError when the agent fails, in which case the
    user's message stays stored and nothing else is. The streamed chat
    (conversations.streaming) takes the same steps, one by one.
    """
    _require_no_transaction()
    user_message = message_user_create(
        owner_id=owner_id, conversation_id=conversation_id, content=content
    )
    history = chat_history_for_agent(user_message=user_message)
    # No transaction is open here: the agent may take seconds.
    try:
        reply = agent_reply_generate(user_id=owner_id, message=content, history=history)
    except AgentError as exc:
        agent_failure_log(user_message=user_message, owner_id=owner_id, exc=exc)
        raise
    return message_assistant_create(user_message=user_message, reply=reply)


def chat_history_for_agent(*, user_message: Message) -> list[HistoryMessage]:
    """The agent's context for `user_message`: the last AGENT_CONTEXT_MESSAGES
    messages before it (at most AGENT_CONTEXT_MAX_CHARS of them), oldest
    first; sets its `sequence` too."""
    if user_message.sequence == 1:
        return []
    user_message.sequence, history = message_history_for_agent(
        conversation_id=user_message.conversation_id,
        message_id=user_message.id,
        limit=settings.AGENT_CONTEXT_MESSAGES,
        max_chars=settings.AGENT_CONTEXT_MAX_CHARS,
    )
    return history


def agent_failure_log(*, user_message: Message, owner_id: str, exc: AgentError) -> None:
    """Tie an agent failure to its conversation in the log.

    agent.runner logged the cause with its traceback; the message itself is
    user data: not logged.
    """
    cause = exc.__cause__
    logger.warning(
        "Agent gave no reply in conversation %s of user %s: %s (%s)",
        user_message.conversation_id,
        owner_id,
        exc.code,
        repr(cause) if cause is not None else exc.detail,
        extra={
            "conversation_id": str(user_message.conversation_id),
            "user_id": owner_id,
            "user_message_id": str(user_message.id),
            "error": exc.code,
            "cause": type(cause).__name__ if cause is not None else None,
        },
    )


def message_user_create(
    *,
    owner_id: str,
    conversation_id: uuid.UUID | None,
    content: str,
    create_missing: bool = False,
) -> Message:
    """Commit a user message, in a new conversation when `conversation_id` is None.

    With `create_missing`, a `conversation_id` that no conversation has
    starts a new conversation with that id (the AI SDK's chat id, chosen by
    the client). Raises NotFoundError when the owner has no such
    conversation (someone else's, or a missing one without
    `create_missing`); nothing is written then.
    """
    _require_no_transaction()
    now = timezone.now()
    message = Message(
        id=uuid.uuid4(),
        conversation_id=conversation_id or uuid.uuid4(),
        sequence=0,
        role=Message.Role.USER,
        content=content,
        created_at=now,
    )
    if conversation_id is None:
        sequence = _message_append(
            message,
            conversation=_conversation_new(
                message.conversation_id, owner_id, content, now
            ),
        )
    else:
        sequence = _message_append(message, owner_id=owner_id)
        if sequence is None and create_missing:
            try:
                sequence = _message_append(
                    message,
                    conversation=_conversation_new(
                        conversation_id, owner_id, content, now
                    ),
                )
            except IntegrityError:
                # Someone else's (404 below), or the owner's own, created
                # meanwhile by a concurrent request: append to it.
                sequence = _message_append(message, owner_id=owner_id)
    if sequence is None:
        raise NotFoundError()
    message.sequence = sequence
    return message


def _conversation_new(
    conversation_id: uuid.UUID, owner_id: str, first_message: str, now: datetime
) -> Conversation:
    return Conversation(
        id=conversation_id,
        owner_id=owner_id,
        title=conversation_title_from_message(first_message),
        last_sequence=1,
        created_at=now,
        updated_at=now,
    )


def message_assistant_create(
    *,
    user_message: Message,
    reply: AgentReply,
    message_id: uuid.UUID | None = None,
    tool_call_ids: Sequence[uuid.UUID] = (),
) -> ChatExchange:
    """Commit the agent's reply to `user_message` with its tool calls, its
    usage (model and tokens, when the backend gave them), and the
    conversation's `updated_at`.

    `message_id` and `tool_call_ids` (one per tool call, in order) are the
    ids to store them under when they were announced before the reply was
    complete (a streamed reply); new ones otherwise. Raises NotFoundError
    when the conversation was deleted while the agent was answering;
    nothing is written then.
    """
    _require_no_transaction()
    now = timezone.now()
    ids = list(tool_call_ids) or [uuid.uuid4() for _ in reply.tool_calls]
    usage = reply.usage
    assistant_message = Message(
        id=message_id or uuid.uuid4(),
        conversation_id=user_message.conversation_id,
        sequence=0,
        role=Message.Role.ASSISTANT,
        content=reply.content,
        reply_to_id=user_message.id,
        model=usage.model if usage else "",
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        created_at=now,
    )
    tool_calls = [
        ToolCall(
            id=ids[position],
            message_id=assistant_message.id,
            position=position,
            tool_name=call.tool_name,
            parameters=call.parameters,
            result=call.result,
            status=call.status,
            created_at=now,
        )
        for position, call in enumerate(reply.tool_calls)
    ]
    sequence = _message_append(assistant_message, tool_calls=tool_calls)
    if sequence is None:
        logger.info(
            "Conversation %s was deleted while the agent answered",
            user_message.conversation_id,
        )
        raise NotFoundError()
    assistant_message.sequence = sequence
    return ChatExchange(
        user_message=user_message,
        assistant_message=assistant_message,
        tool_calls=tool_calls,
    )


def _require_no_transaction() -> None:
    """What `atomic(durable=True)` checks, without its SAVEPOINT/BEGIN:
    the chat's writes must be committed when they return."""
    conn = transaction.get_connection()
    if conn.atomic_blocks:
        inside = not conn.atomic_blocks[-1]._from_testcase
    else:
        inside = not conn.get_autocommit()
    if inside:
        raise RuntimeError(
            "The chat flow is durable: it cannot run inside an atomic block."
        )


def _message_append(
    message: Message,
    *,
    owner_id: str | None = None,
    conversation: Conversation | None = None,
    tool_calls: list[ToolCall] | None = None,
) -> int | None:
    """Insert `message` (and its tool calls) as the conversation's next one,
    bumping `last_sequence` and `updated_at`, and commit.

    `conversation` given: create it first (its `last_sequence` is 1).
    `owner_id` given: the conversation must be the owner's. Returns the
    message's sequence number, or None when the conversation does not exist
    (nothing is written then).
    """
    if connection.vendor == "postgresql":
        return postgres.message_append(
            message,
            owner_id=owner_id,
            conversation=conversation,
            tool_calls=tool_calls or [],
        )
    return _message_append_orm(
        message, owner_id=owner_id, conversation=conversation, tool_calls=tool_calls
    )


def _message_append_orm(
    message: Message,
    *,
    owner_id: str | None = None,
    conversation: Conversation | None = None,
    tool_calls: list[ToolCall] | None = None,
) -> int | None:
    """_message_append with the ORM: any database."""
    with transaction.atomic(durable=True):
        if conversation is not None:
            conversation.save(force_insert=True)
            sequence = conversation.last_sequence
        else:
            found = Conversation.objects.select_for_update().filter(
                pk=message.conversation_id
            )
            if owner_id is not None:
                found = found.filter(owner_id=owner_id)
            last_sequence = found.values_list("last_sequence", flat=True).first()
            if last_sequence is None:
                return None
            # The row lock is held until commit: nobody else takes this number.
            Conversation.objects.filter(pk=message.conversation_id).update(
                last_sequence=F("last_sequence") + 1, updated_at=message.created_at
            )
            sequence = last_sequence + 1
        message.sequence = sequence
        message.save(force_insert=True)
        if tool_calls:
            ToolCall.objects.bulk_create(tool_calls)
    return sequence


def conversation_rename(
    *, owner_id: str, conversation_id: uuid.UUID, title: str
) -> None:
    """Give the owner's conversation the title the user chose (validated by
    the caller); it is never replaced by one made from a message.

    `updated_at` stays: it moves only when a message is stored, so renaming
    changes neither the order of the list nor the latest conversation.
    Raises NotFoundError unless the owner has this conversation.
    """
    renamed = Conversation.objects.filter(pk=conversation_id, owner_id=owner_id).update(
        title=title, title_set_by_user=True
    )
    if not renamed:
        raise NotFoundError()


def conversations_delete(
    *, owner_id: str, conversation_id: uuid.UUID | None = None
) -> int:
    """Delete the owner's conversation `conversation_id`, or all of the
    owner's conversations when it is None, with their messages and tool
    calls, in one transaction. Returns how many conversations were deleted.

    The conversations' rows are locked first: a chat write in progress to
    one of them finishes before, and one that comes after finds the
    conversation gone and stores nothing (its request answers 404). Only
    the owner's rows are locked or read; on PostgreSQL the messages are
    deleted by statements, never loaded (conversations.postgres).
    """
    with transaction.atomic():
        found = Conversation.objects.select_for_update().filter(owner_id=owner_id)
        if conversation_id is not None:
            found = found.filter(pk=conversation_id)
        ids = list(found.values_list("pk", flat=True))
        if not ids:
            return 0
        if connection.vendor == "postgresql":
            postgres.conversations_delete(ids)
        else:
            Conversation.objects.filter(pk__in=ids).delete()
    return len(ids)
