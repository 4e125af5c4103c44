"""PostgreSQL's fast path: the chat's hot statements, hand-written, in one place.

Measured in bench/ (docs/PERFORMANCE.md): compiling the ORM's queries cost
more CPU than the rest of a request, and the ORM's chat write takes several
round trips inside BEGIN/COMMIT where one data-modifying CTE does the same
work in a single autocommit statement. So on PostgreSQL (production)
conversations.services and conversations.selectors call this module; on any
other database they use the ORM. As Zulip does, the raw SQL lives here and
nowhere else (the admin's row estimate, a catalogue read, is here too).

The INSERTs take their column lists and values from the models' concrete
fields, and their values from model instances built in Python (so `default=`
applies): adding a model field needs no edit here
(tests/services/test_postgres.py checks every column is written).

Each write is one statement: the UPDATE (or INSERT) of the conversation
takes its row lock and the next sequence number, the INSERTs of the message
and its tool calls use it; concurrent senders queue on the lock and get
consecutive numbers. The reads are keyset scans of msg_conv_sequence_uniq
whose plan stays an index scan under a generic plan ("Plans under skew" in
docs/PERFORMANCE.md). Deleting conversations is one statement too, after
the caller locked them (docs/API.md, "Deleting").
"""

import functools
from collections.abc import Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field, Model

from psycopg.types.datetime import TimestamptzLoader

from conversations.models import Conversation, Message, ToolCall


def _fields(model: type[Model]) -> list["Field[Any, Any]"]:
    return list(model._meta.concrete_fields)


def _column(field: "Field[Any, Any]") -> str:
    return connection.ops.quote_name(field.column or field.attname)


def _param(prefix: str, field: "Field[Any, Any]") -> str:
    return f"%({prefix}_{field.attname})s"


def _values(prefix: str, instance: Model) -> dict[str, Any]:
    """The instance's values as an INSERT of the ORM would send them."""
    # The connection itself, not the `connection` proxy: the fields read
    # its attributes many times, each a thread-local lookup through the proxy.
    conn = connections[DEFAULT_DB_ALIAS]
    return {
        f"{prefix}_{field.attname}": field.get_db_prep_save(
            field.pre_save(instance, add=True), conn
        )
        for field in _fields(type(instance))
    }


def _array_values(
    prefix: str, instances: Sequence[Model], model: type[Model]
) -> dict[str, Any]:
    """One array per column, for unnest()."""
    rows = [_values(prefix, instance) for instance in instances]
    return {
        f"{prefix}_{field.attname}": [row[f"{prefix}_{field.attname}"] for row in rows]
        for field in _fields(model)
    }


_CONVERSATION_NEXT = """
    UPDATE conversations
    SET last_sequence = last_sequence + 1, updated_at = %(m_created_at)s
    WHERE id = %(m_conversation_id)s{owner}
    RETURNING id, last_sequence
"""


_CONVERSATION_NEW = """
    INSERT INTO {table} ({columns}) VALUES ({values})
    RETURNING id, last_sequence
"""
# The message takes its sequence number from the conversation's row, and is
# inserted only if that row was found (FROM c); its tool calls likewise.
_APPEND = """
WITH c AS ({conversation}), m AS (
    INSERT INTO {table} ({columns}) SELECT {values} FROM c
    RETURNING id, sequence
){tool_calls}
SELECT sequence FROM m
"""
_TOOL_CALLS = """, t AS (
    INSERT INTO {table} ({columns}) SELECT {values}
    FROM m, unnest({arrays}) AS x({columns})
)"""


@functools.cache
def _append_sql(*, new_conversation: bool, owner: bool, tool_calls: bool) -> str:
    """The one statement of a chat write; built once per variant."""
    if new_conversation:
        fields = _fields(Conversation)
        conversation = _CONVERSATION_NEW.format(
            table=Conversation._meta.db_table,
            columns=", ".join(_column(f) for f in fields),
            values=", ".join(_param("c", f) for f in fields),
        )
    else:
        conversation = _CONVERSATION_NEXT.format(
            owner=" AND owner_id = %(owner_id)s" if owner else ""
        )
    calls = ""
    if tool_calls:
        call_fields = _fields(ToolCall)
        calls = _TOOL_CALLS.format(
            table=ToolCall._meta.db_table,
            columns=", ".join(_column(f) for f in call_fields),
            values=", ".join(f"x.{_column(f)}" for f in call_fields),
            arrays=", ".join(
                f"{_param('t', f)}::{f.cast_db_type(connection)}[]" for f in call_fields
            ),
        )
    message_fields = _fields(Message)
    return _APPEND.format(
        conversation=conversation,
        table=Message._meta.db_table,
        columns=", ".join(_column(f) for f in message_fields),
        values=", ".join(
            "c.last_sequence" if f.attname == "sequence" else _param("m", f)
            for f in message_fields
        ),
        tool_calls=calls,
    )


def message_append(
    message: Message,
    *,
    owner_id: str | None,
    conversation: Conversation | None,
    tool_calls: Sequence[ToolCall],
) -> int | None:
    """Insert `message` and its tool calls as the conversation's next
    message, bumping `last_sequence` and `updated_at`: one statement.

    `conversation` given: insert it first (a new conversation). Otherwise
    the conversation must exist, and be `owner_id`'s when that is given.
    Returns the message's sequence number, or None when the conversation
    was not found (nothing is written then).
    """
    params = _values("m", message) | {"owner_id": owner_id}
    if conversation is not None:
        params |= _values("c", conversation)
    if tool_calls:
        params |= _array_values("t", tool_calls, ToolCall)
    sql = _append_sql(
        new_conversation=conversation is not None,
        owner=owner_id is not None,
        tool_calls=bool(tool_calls),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def _rows(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of a read: psycopg already returns UUIDs and aware datetimes.

    Django loads timestamptz with a pure-Python subclass of psycopg's loader
    that only sets the tzinfo psycopg already sets on a UTC connection;
    psycopg's own loader is in C (docs/PERFORMANCE.md). No model instances:
    on a page of messages they cost more CPU than the rest of the request.
    """
    with connection.cursor() as cursor:
        cursor.cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        cursor.execute(sql, params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    return rows


# A conversation as the API shows it (selectors.ConversationRow); its
# message count is last_sequence (messages are never deleted one by one).
LATEST_SQL = """
SELECT id, title, created_at, updated_at, last_sequence
FROM conversations WHERE owner_id = %(owner_id)s
ORDER BY updated_at DESC, id DESC LIMIT 1
"""


def conversation_latest(*, owner_id: str) -> tuple[Any, ...] | None:
    """(id, title, created_at, updated_at, last_sequence) of the owner's most
    recently updated conversation: one entry of conv_owner_updated_idx."""
    found = _rows(LATEST_SQL, {"owner_id": owner_id})
    return found[0] if found else None


# The owner's conversation row (none: no row at all), the `before`
# message's sequence (repeated on every row) and the page, newest first,
# each message with its tool calls as one JSON array (in position order, by
# toolcall_msg_position_uniq). The innermost ORDER BY matches
# msg_conv_sequence_uniq, so even a generic plan reads the page by a
# backward index scan.
#
# The byte bound: `cost` is the size of the message's content as a JSON
# string (escapes included), plus its tool calls' JSON text (PostgreSQL's,
# with spaces: no smaller than the API's compact JSON of them), plus the
# size of the message's other keys and values; `running`
# the sum of the costs from the newest message down. Only the messages up
# to the bound (always the newest one) are returned, and the count of the
# `limit` messages read, so that the caller knows older ones exist. Costing
# reads every content of the window in the database; a message left out is
# never sent to the app.
PAGE_SQL = """
SELECT m.id, m.role, m.content, m.created_at, m.tool_calls, m.read,
       {before_sequence} AS before_sequence
FROM conversations c
LEFT JOIN (
    SELECT p.*,
           sum(p.cost) OVER newest_first AS running,
           row_number() OVER newest_first AS position,
           count(*) OVER () AS read
    FROM (
        SELECT q.id, q.conversation_id, q.role, q.content, q.created_at,
               q.sequence, t.tool_calls,
               octet_length(to_json(q.content)::text)
                   + octet_length(t.tool_calls::text)
                   + %(message_overhead)s AS cost
        FROM (
            SELECT id, conversation_id, role, content, created_at, sequence
            FROM messages
            WHERE conversation_id = %(conversation_id)s{before_filter}
            ORDER BY sequence DESC
            LIMIT %(limit)s
        ) q
        CROSS JOIN LATERAL (
            SELECT coalesce(
                json_agg(
                    json_build_object(
                        'id', tc.id, 'tool_name', tc.tool_name,
                        'parameters', tc.parameters, 'result', tc.result,
                        'status', tc.status
                    )
                    ORDER BY tc.position
                ),
                '[]'::json
            ) AS tool_calls
            FROM tool_calls tc WHERE tc.message_id = q.id
        ) t
    ) p
    WINDOW newest_first AS (ORDER BY p.sequence DESC ROWS UNBOUNDED PRECEDING)
) m ON m.conversation_id = c.id
    AND (m.position = 1 OR m.running <= %(max_bytes)s)
WHERE c.id = %(conversation_id)s AND c.owner_id = %(owner_id)s
ORDER BY m.sequence DESC
"""
_BEFORE_SEQUENCE = (
    "(SELECT b.sequence FROM messages b"
    " WHERE b.id = %(before)s AND b.conversation_id = %(conversation_id)s)"
)


def page_sql(*, before: bool) -> str:
    return PAGE_SQL.format(
        before_sequence=_BEFORE_SEQUENCE if before else "NULL",
        before_filter=f" AND sequence < {_BEFORE_SEQUENCE}" if before else "",
    )


def message_page_rows(
    *,
    owner_id: str,
    conversation_id: Any,
    limit: int,
    before: Any | None,
    max_bytes: int,
    message_overhead: int,
) -> list[tuple[Any, ...]]:
    """Rows of (id, role, content, created_at, tool_calls, read,
    before_sequence), newest first: none when the owner has no such
    conversation, one row of NULLs but before_sequence when it has no
    message in range.

    At most `limit` messages are read (`read` of them), and of those the
    newest ones whose costs (each with `message_overhead` bytes for its
    other keys and values) add up to at most `max_bytes` are returned (at
    least one).
    """
    params = {
        "conversation_id": conversation_id,
        "owner_id": owner_id,
        "limit": limit,
        "before": before,
        "max_bytes": max_bytes,
        "message_overhead": message_overhead,
    }
    return _rows(page_sql(before=before is not None), params)


HISTORY_SQL = """
SELECT sequence, role, content FROM messages
WHERE conversation_id = %(conversation_id)s AND sequence <= (
    SELECT sequence FROM messages WHERE id = %(message_id)s
)
ORDER BY sequence DESC
LIMIT %(limit)s
"""


def message_history_rows(
    *, conversation_id: Any, message_id: Any, limit: int
) -> list[tuple[Any, ...]]:
    """(sequence, role, content) of message `message_id` and the ones
    before it, newest first, at most `limit` rows."""
    return _rows(
        HISTORY_SQL,
        {"conversation_id": conversation_id, "message_id": message_id, "limit": limit},
    )


# Locked by the caller first (SELECT ... FOR UPDATE in the same
# transaction), so this statement's snapshot holds every message stored
# before: all go. Each DELETE finds its rows through an index of the
# conversation or message id: no other conversation's row is read or
# locked, and no row is loaded into Python.
DELETE_SQL = """
WITH t AS (
    DELETE FROM tool_calls WHERE message_id IN (
        SELECT id FROM messages WHERE conversation_id = ANY(%(ids)s)
    )
), m AS (
    DELETE FROM messages WHERE conversation_id = ANY(%(ids)s)
)
DELETE FROM conversations WHERE id = ANY(%(ids)s)
"""


def conversations_delete(ids: Sequence[Any]) -> None:
    """Delete the conversations `ids` (locked by the caller) with their
    messages and tool calls: one statement."""
    with connection.cursor() as cursor:
        cursor.execute(DELETE_SQL, {"ids": list(ids)})


def table_row_estimate(model: type[Model], *, using: str) -> int | None:
    """The planner's estimate of the model's row count (pg_class.reltuples):
    the admin's changelist counts a large table without scanning it. None
    when the table was never analysed."""
    table = connections[using].ops.quote_name(model._meta.db_table)
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%(table)s)",
            {"table": table},
        )
        row = cursor.fetchone()
    # -1: never analysed.
    return int(row[0]) if row and row[0] >= 0 else None
