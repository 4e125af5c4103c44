"""Reads. Every query is scoped to its owner."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from django.db import connection
from django.db.models import Field, Model
from django.db.models.expressions import Col

from psycopg.types.datetime import TimestamptzLoader

from agent.backends.base import HistoryMessage, Role
from conversations.models import Conversation, Message
from core.exceptions import InvalidInputError, NotFoundError


class ConversationRow(NamedTuple):
    """A conversation as the API shows it."""

    id: uuid.UUID
    created_at: datetime
    updated_at: datetime


def conversation_latest_for_owner(*, owner_id: str) -> ConversationRow | None:
    """The owner's most recently updated conversation, if any.

    One entry of conv_owner_updated_idx. Raw SQL: the ORM's query compiler
    cost 0.9 ms of CPU per call here, this 0.25 ms (docs/PERFORMANCE.md).
    """
    found = _rows(
        "SELECT id, created_at, updated_at FROM conversations WHERE owner_id = %s"
        " ORDER BY updated_at DESC, id DESC LIMIT 1",
        [owner_id],
        Conversation,
        ["id", "created_at", "updated_at"],
    )
    return ConversationRow(*found[0]) if found else None


def _rows(
    sql: str,
    params: Any,
    model: type[Model] = Message,
    fields: Sequence[str | None] = (),
) -> list[tuple[Any, ...]]:
    """The rows of a raw query, each column converted as the ORM converts
    values of the `model` field named at its position (None: left as is).

    On PostgreSQL psycopg already returns UUIDs and aware datetimes, so
    there is nothing to convert; SQLite returns text for both. No model
    instances: on a page of 100 messages they cost more CPU than the whole
    rest of the request (docs/PERFORMANCE.md).
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Django loads timestamptz with a pure-Python subclass of
            # psycopg's loader that only sets the tzinfo psycopg already
            # sets on a UTC connection; psycopg's own loader is in C: a
            # sixth of the CPU of a page of 100 messages.
            cursor.cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        cursor.execute(sql, params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    converters: list[tuple[int, Any, Col]] = []
    for position, name in enumerate(fields):
        if name is None:
            continue
        field = cast("Field[Any, Any]", model._meta.get_field(name))
        column = field.get_col(model._meta.db_table)
        found = connection.ops.get_db_converters(column) + column.get_db_converters(
            connection
        )
        converters.extend((position, converter, column) for converter in found)
    if not converters:
        return rows
    converted = []
    for row in rows:
        values = list(row)
        for position, converter, column in converters:
            values[position] = converter(values[position], column, connection)
        converted.append(tuple(values))
    return converted


class MessageRow(NamedTuple):
    """A message as the API shows it."""

    id: uuid.UUID
    role: str
    content: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class MessagePage:
    conversation_id: uuid.UUID
    messages: list[MessageRow]  # oldest first
    has_more: bool
    next_before: uuid.UUID | None


_PAGE_SQL = """
SELECT m.id, m.role, m.content, m.created_at, {before_sequence} AS before_sequence
FROM conversations c
LEFT JOIN (
    SELECT id, conversation_id, role, content, created_at, sequence
    FROM messages
    WHERE conversation_id = %(conversation_id)s{before_filter}
    ORDER BY sequence DESC
    LIMIT %(limit)s
) m ON m.conversation_id = c.id
WHERE c.id = %(conversation_id)s AND c.owner_id = %(owner_id)s
ORDER BY m.sequence DESC
"""
_BEFORE_SEQUENCE = (
    "(SELECT b.sequence FROM messages b"
    " WHERE b.id = %(before)s AND b.conversation_id = %(conversation_id)s)"
)


def message_page(
    *,
    owner_id: str,
    conversation_id: uuid.UUID,
    limit: int,
    before: uuid.UUID | None = None,
) -> MessagePage:
    """A page of the newest `limit` messages, older than `before` if given.

    One statement whatever the conversation's length: the owner's
    conversation row (none: 404), the `before` message's sequence, and the
    page, read newest first by keyset on (conversation_id, sequence)
    (msg_conv_sequence_uniq, scanned backwards; no OFFSET, no COUNT). Raises
    NotFoundError unless the owner has this conversation, and
    InvalidInputError when `before` is not one of its messages.
    """
    params = {
        "conversation_id": _uuid_param(conversation_id),
        "owner_id": owner_id,
        "limit": limit + 1,
        "before": _uuid_param(before),
    }
    sql = _PAGE_SQL.format(
        before_sequence=_BEFORE_SEQUENCE if before is not None else "NULL",
        before_filter=(
            f" AND sequence < {_BEFORE_SEQUENCE}" if before is not None else ""
        ),
    )
    rows = _rows(sql, params, Message, ["id", None, None, "created_at", None])
    if not rows:
        raise NotFoundError()
    # The extra column, the same on every row.
    before_sequence: int | None = rows[0][-1]
    if before is not None and before_sequence is None:
        raise InvalidInputError("Not a message of this conversation.", field="before")
    # No message: one row of NULLs from the LEFT JOIN.
    newest_first = [MessageRow(*row[:-1]) for row in rows if row[0] is not None]
    has_more = len(newest_first) > limit
    page = newest_first[:limit][::-1]
    return MessagePage(
        conversation_id=conversation_id,
        messages=page,
        has_more=has_more,
        next_before=page[0].id if has_more else None,
    )


_HISTORY_SQL = """
SELECT sequence, role, content FROM messages
WHERE conversation_id = %(conversation_id)s AND sequence <= (
    SELECT sequence FROM messages WHERE id = %(message_id)s
)
ORDER BY sequence DESC
LIMIT %(limit)s
"""


def _uuid_param(value: uuid.UUID | None) -> Any:
    """A UUID as the database takes it (SQLite: 32 hex characters)."""
    return Message._meta.get_field("id").get_db_prep_value(value, connection)


def message_history_for_agent(
    *, conversation_id: uuid.UUID, message_id: uuid.UUID, limit: int
) -> tuple[int, list[HistoryMessage]]:
    """The sequence number of message `message_id`, and the last `limit`
    messages before it, oldest first: one statement.

    Plain immutable values: the agent gets no ORM objects to query lazily.
    """
    rows = _rows(
        _HISTORY_SQL,
        {
            "conversation_id": _uuid_param(conversation_id),
            "message_id": _uuid_param(message_id),
            "limit": max(limit, 0) + 1,
        },
    )
    sequence = rows[0][0] if rows else 0
    history = [
        HistoryMessage(role=cast("Role", role), content=content)
        for _, role, content in rows[1:]
    ]
    return sequence, history[::-1]
