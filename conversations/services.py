"""Writes. The chat flow and its transaction boundaries live here.

Each write of the chat flow is ONE statement, atomic on its own and run in
autocommit: no BEGIN/COMMIT, no SAVEPOINT. On PostgreSQL, data-modifying
CTEs: the UPDATE of the conversation takes its row lock and the next
sequence number, the INSERTs use it (concurrent senders queue on the lock
and get consecutive numbers). SQLite has no data-modifying CTEs: the same
work is done by an INSTEAD OF trigger on the `chat_message_appends` view
(migration 0004); SQLite runs one writer at a time.
"""

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from agent.backends.base import AgentReply, HistoryMessage
from agent.exceptions import AgentError
from agent.runner import agent_reply_generate
from conversations.models import Message, ToolCall
from conversations.selectors import message_history_for_agent
from core.exceptions import NotFoundError

logger = logging.getLogger(__name__)

# Raised by the SQLite trigger of migration 0004.
_SQLITE_NOT_FOUND = "chat_conversation_not_found"


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
    user's message stays stored and nothing else is.
    """
    _require_no_transaction()
    user_message = message_user_create(
        owner_id=owner_id, conversation_id=conversation_id, content=content
    )
    history: list[HistoryMessage] = []
    if user_message.sequence != 1:
        user_message.sequence, history = message_history_for_agent(
            conversation_id=user_message.conversation_id,
            message_id=user_message.id,
            limit=settings.AGENT_CONTEXT_MESSAGES,
        )
    # No transaction is open here: the agent may take seconds.
    try:
        reply = agent_reply_generate(user_id=owner_id, message=content, history=history)
    except AgentError as exc:
        # agent.runner logged the cause with its traceback; this line ties it
        # to the conversation. The message itself is user data: not logged.
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
        raise
    return message_assistant_create(user_message=user_message, reply=reply)


def message_user_create(
    *, owner_id: str, conversation_id: uuid.UUID | None, content: str
) -> Message:
    """Commit a user message, in a new conversation when `conversation_id` is None.

    One statement. Raises NotFoundError when the owner has no such
    conversation; nothing is written then. The returned message's `sequence`
    is 1 in a new conversation; otherwise it is known on PostgreSQL and 0
    (unknown) on SQLite until message_history_for_agent reads it.
    """
    _require_no_transaction()
    now = timezone.now()
    message = Message(
        id=uuid.uuid4(),
        conversation_id=conversation_id or uuid.uuid4(),
        sequence=1 if conversation_id is None else 0,
        role=Message.Role.USER,
        content=content,
        created_at=now,
    )
    sequence = _message_append(
        message, owner_id=owner_id, new_conversation=conversation_id is None
    )
    if sequence is None:
        raise NotFoundError()
    message.sequence = sequence or message.sequence
    return message


def message_assistant_create(
    *, user_message: Message, reply: AgentReply
) -> ChatExchange:
    """Commit the agent's reply to `user_message` with its tool calls, and the
    conversation's `updated_at`: one statement.

    Raises NotFoundError when the conversation was deleted while the agent
    was answering; nothing is written then.
    """
    _require_no_transaction()
    now = timezone.now()
    assistant_message = Message(
        id=uuid.uuid4(),
        conversation_id=user_message.conversation_id,
        sequence=0,
        role=Message.Role.ASSISTANT,
        content=reply.content,
        reply_to_id=user_message.id,
        created_at=now,
    )
    tool_calls = [
        ToolCall(
            id=uuid.uuid4(),
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
    new_conversation: bool = False,
    tool_calls: list[ToolCall] | None = None,
) -> int | None:
    """Insert `message` (and its tool calls) as the conversation's next one,
    bumping `last_sequence` and `updated_at`, in one statement.

    `owner_id` given: the conversation must be the owner's. `new_conversation`:
    create it first, owned by `owner_id`. Returns the message's sequence
    number (0 on SQLite, which cannot return it from a view), or None when
    the conversation does not exist (nothing is written then).
    """
    if connection.vendor == "postgresql":
        return _message_append_postgresql(
            message,
            owner_id=owner_id,
            new_conversation=new_conversation,
            tool_calls=tool_calls or [],
        )
    return _message_append_sqlite(
        message,
        owner_id=owner_id,
        new_conversation=new_conversation,
        tool_calls=tool_calls or [],
    )


_PG_CONVERSATION_NEW = """
    INSERT INTO conversations (id, owner_id, last_sequence, created_at, updated_at)
    VALUES (%(conversation_id)s, %(owner_id)s, 1, %(now)s, %(now)s)
    RETURNING id, last_sequence
"""
_PG_CONVERSATION_NEXT = """
    UPDATE conversations
    SET last_sequence = last_sequence + 1, updated_at = %(now)s
    WHERE id = %(conversation_id)s{owner}
    RETURNING id, last_sequence
"""
_PG_APPEND = """
WITH c AS ({conversation}), m AS (
    INSERT INTO messages
        (id, conversation_id, sequence, role, content, reply_to_id, created_at)
    SELECT %(id)s, c.id, c.last_sequence, %(role)s, %(content)s,
           %(reply_to_id)s, %(now)s
    FROM c
    RETURNING id, sequence
){tool_calls}
SELECT sequence FROM m
"""
_PG_TOOL_CALLS = """, t AS (
    INSERT INTO tool_calls
        (id, message_id, position, tool_name, parameters, result, status,
         created_at)
    SELECT x.id, m.id, x.position - 1, x.tool_name, x.parameters::jsonb,
           x.result::jsonb, x.status, %(now)s
    FROM m, unnest(
        %(tc_ids)s::uuid[], %(tc_names)s::text[], %(tc_parameters)s::text[],
        %(tc_results)s::text[], %(tc_statuses)s::text[]
    ) WITH ORDINALITY AS x(id, tool_name, parameters, result, status, position)
)"""


def _message_append_postgresql(
    message: Message,
    *,
    owner_id: str | None,
    new_conversation: bool,
    tool_calls: list[ToolCall],
) -> int | None:
    params: dict[str, Any] = {
        "conversation_id": message.conversation_id,
        "owner_id": owner_id,
        "now": message.created_at,
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "reply_to_id": message.reply_to_id,
    }
    if new_conversation:
        conversation = _PG_CONVERSATION_NEW
    else:
        owner = " AND owner_id = %(owner_id)s" if owner_id is not None else ""
        conversation = _PG_CONVERSATION_NEXT.format(owner=owner)
    if tool_calls:
        params |= {
            "tc_ids": [call.id for call in tool_calls],
            "tc_names": [call.tool_name for call in tool_calls],
            "tc_parameters": [json.dumps(call.parameters) for call in tool_calls],
            "tc_results": [_json_or_null(call.result) for call in tool_calls],
            "tc_statuses": [call.status for call in tool_calls],
        }
    sql = _PG_APPEND.format(
        conversation=conversation, tool_calls=_PG_TOOL_CALLS if tool_calls else ""
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else int(row[0])


_SQLITE_APPEND = """
    INSERT INTO chat_message_appends
        (id, conversation_id, owner_id, new_conversation, role, content,
         reply_to_id, created_at, tool_calls)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
"""


def _message_append_sqlite(
    message: Message,
    *,
    owner_id: str | None,
    new_conversation: bool,
    tool_calls: list[ToolCall],
) -> int | None:
    now = connection.ops.adapt_datetimefield_value(message.created_at)
    calls = [
        [
            call.id.hex,
            call.tool_name,
            json.dumps(call.parameters),
            _json_or_null(call.result),
            call.status,
        ]
        for call in tool_calls
    ]
    params = [
        message.id.hex,
        message.conversation_id.hex,
        owner_id,
        new_conversation,
        message.role,
        message.content,
        message.reply_to_id.hex if message.reply_to_id else None,
        now,
        json.dumps(calls),
    ]
    try:
        with connection.cursor() as cursor:
            cursor.execute(_SQLITE_APPEND, params)
    except IntegrityError as exc:
        if _SQLITE_NOT_FOUND in str(exc):
            return None
        raise
    return 1 if new_conversation else 0


def _json_or_null(value: object) -> str | None:
    # A JSONField with null=True stores Python None as SQL NULL.
    return None if value is None else json.dumps(value)
