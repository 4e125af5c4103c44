"""Reads. Every query is scoped to its owner."""

import uuid
from dataclasses import dataclass
from typing import cast

from django.db import connection
from django.db.models import Subquery

from agent.backends.base import HistoryMessage, Role
from chatapi.exceptions import InvalidInputError, NotFoundError
from conversations.models import Conversation, Message


def conversation_latest_for_owner(*, owner_id: str) -> Conversation | None:
    """The owner's most recently updated conversation, if any.

    One entry of conv_owner_updated_idx. Raw SQL: the ORM's query compiler
    cost 0.9 ms of CPU per call here, this 0.25 ms (docs/PERFORMANCE.md).
    """
    found = list(
        Conversation.objects.raw(
            "SELECT id, owner_id, last_sequence, created_at, updated_at"
            " FROM conversations WHERE owner_id = %s"
            " ORDER BY updated_at DESC, id DESC LIMIT 1",
            [owner_id],
        )
    )
    return found[0] if found else None


@dataclass(frozen=True, slots=True)
class MessagePage:
    conversation_id: uuid.UUID
    messages: list[Message]  # oldest first
    has_more: bool
    next_before: uuid.UUID | None


_PAGE_SQL = """
SELECT m.id, m.conversation_id, m.role, m.content, m.created_at, m.sequence,
       {before_sequence} AS before_sequence
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
    pk = Message._meta.get_field("id")
    params = {
        "conversation_id": pk.get_db_prep_value(conversation_id, connection),
        "owner_id": owner_id,
        "limit": limit + 1,
        "before": pk.get_db_prep_value(before, connection),
    }
    sql = _PAGE_SQL.format(
        before_sequence=_BEFORE_SEQUENCE if before is not None else "NULL",
        before_filter=(
            f" AND sequence < {_BEFORE_SEQUENCE}" if before is not None else ""
        ),
    )
    rows = list(Message.objects.raw(sql, params))
    if not rows:
        raise NotFoundError()
    # The raw query's extra column, the same on every row.
    before_sequence: int | None = rows[0].before_sequence  # type: ignore[attr-defined]
    if before is not None and before_sequence is None:
        raise InvalidInputError("Not a message of this conversation.", field="before")
    newest_first = [row for row in rows if row.id is not None]
    has_more = len(newest_first) > limit
    page = newest_first[:limit][::-1]
    return MessagePage(
        conversation_id=conversation_id,
        messages=page,
        has_more=has_more,
        next_before=page[0].id if has_more else None,
    )


def message_history_for_agent(
    *, conversation_id: uuid.UUID, message_id: uuid.UUID, limit: int
) -> tuple[int, list[HistoryMessage]]:
    """The sequence number of message `message_id`, and the last `limit`
    messages before it, oldest first: one statement.

    Plain immutable values: the agent gets no ORM objects to query lazily.
    """
    rows = list(
        Message.objects.filter(
            conversation_id=conversation_id,
            sequence__lte=Subquery(
                Message.objects.filter(pk=message_id).values("sequence")[:1]
            ),
        )
        .order_by("-sequence")
        .values_list("sequence", "role", "content")[: max(limit, 0) + 1]
    )
    sequence = rows[0][0] if rows else 0
    history = [
        HistoryMessage(role=cast("Role", role), content=content)
        for _, role, content in rows[1:]
    ]
    return sequence, history[::-1]
