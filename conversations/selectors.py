"""Reads. Every query is scoped to its owner.

On PostgreSQL the hot reads are conversations.postgres (the fast path,
docs/PERFORMANCE.md); elsewhere the ORM. Both return plain rows, no model
instances: on a page of 100 messages those cost more CPU than the rest of
the request.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from django.db import connection
from django.db.models import Subquery

from agent.backends.base import HistoryMessage, Role
from conversations import postgres
from conversations.models import Conversation, Message
from core.exceptions import InvalidInputError, NotFoundError


class ConversationRow(NamedTuple):
    """A conversation as the API shows it."""

    id: uuid.UUID
    created_at: datetime
    updated_at: datetime


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


def _fast_path() -> bool:
    return connection.vendor == "postgresql"


def conversation_latest_for_owner(*, owner_id: str) -> ConversationRow | None:
    """The owner's most recently updated conversation, if any: one entry of
    conv_owner_updated_idx."""
    if _fast_path():
        found = postgres.conversation_latest(owner_id=owner_id)
    else:
        found = (
            Conversation.objects.filter(owner_id=owner_id)
            .order_by("-updated_at", "-id")
            .values_list("id", "created_at", "updated_at")
            .first()
        )
    return ConversationRow(*found) if found else None


def message_page(
    *,
    owner_id: str,
    conversation_id: uuid.UUID,
    limit: int,
    before: uuid.UUID | None = None,
) -> MessagePage:
    """A page of the newest `limit` messages, older than `before` if given.

    Read newest first by keyset on (conversation_id, sequence)
    (msg_conv_sequence_uniq, scanned backwards; no OFFSET, no COUNT), so
    the cost does not grow with the conversation. Raises NotFoundError
    unless the owner has this conversation, and InvalidInputError when
    `before` is not one of its messages.
    """
    if _fast_path():
        newest_first = _message_page_postgresql(
            owner_id=owner_id,
            conversation_id=conversation_id,
            limit=limit,
            before=before,
        )
    else:
        newest_first = _message_page_orm(
            owner_id=owner_id,
            conversation_id=conversation_id,
            limit=limit,
            before=before,
        )
    has_more = len(newest_first) > limit
    page = newest_first[:limit][::-1]
    return MessagePage(
        conversation_id=conversation_id,
        messages=page,
        has_more=has_more,
        next_before=page[0].id if has_more else None,
    )


def _message_page_postgresql(
    *, owner_id: str, conversation_id: uuid.UUID, limit: int, before: uuid.UUID | None
) -> list[MessageRow]:
    """One statement: the conversation, the `before` message and the page."""
    rows = postgres.message_page_rows(
        owner_id=owner_id,
        conversation_id=conversation_id,
        limit=limit + 1,
        before=before,
    )
    if not rows:
        raise NotFoundError()
    # The extra column, the same on every row.
    if before is not None and rows[0][-1] is None:
        raise InvalidInputError("Not a message of this conversation.", field="before")
    # No message: one row of NULLs from the LEFT JOIN.
    return [MessageRow(*row[:-1]) for row in rows if row[0] is not None]


def _message_page_orm(
    *, owner_id: str, conversation_id: uuid.UUID, limit: int, before: uuid.UUID | None
) -> list[MessageRow]:
    if not Conversation.objects.filter(pk=conversation_id, owner_id=owner_id).exists():
        raise NotFoundError()
    messages = Message.objects.filter(conversation_id=conversation_id)
    if before is not None:
        before_sequence = (
            messages.filter(pk=before).values_list("sequence", flat=True).first()
        )
        if before_sequence is None:
            raise InvalidInputError(
                "Not a message of this conversation.", field="before"
            )
        messages = messages.filter(sequence__lt=before_sequence)
    rows = messages.order_by("-sequence").values_list(
        "id", "role", "content", "created_at"
    )[: limit + 1]
    return [MessageRow(*row) for row in rows]


def message_history_for_agent(
    *, conversation_id: uuid.UUID, message_id: uuid.UUID, limit: int, max_chars: int
) -> tuple[int, list[HistoryMessage]]:
    """The sequence number of message `message_id`, and the last `limit`
    messages before it that fit in `max_chars` characters of content,
    oldest first: one statement.

    Whole messages, newest first, stopping at the first that does not fit:
    the agent gets an unbroken tail of the conversation, never a cut
    message, so a newest message longer than `max_chars` leaves it none.
    Bounded here rather than in SQL: the database reads the same content
    either way, and one loop serves both paths. Plain immutable values: the
    agent gets no ORM objects to query lazily.
    """
    rows: list[tuple[Any, ...]]
    if _fast_path():
        rows = postgres.message_history_rows(
            conversation_id=conversation_id,
            message_id=message_id,
            limit=max(limit, 0) + 1,
        )
    else:
        rows = list(
            Message.objects.filter(
                conversation_id=conversation_id,
                sequence__lte=Subquery(
                    Message.objects.filter(pk=message_id).values("sequence")
                ),
            )
            .order_by("-sequence")
            .values_list("sequence", "role", "content")[: max(limit, 0) + 1]
        )
    sequence = rows[0][0] if rows else 0
    history: list[HistoryMessage] = []
    room = max_chars
    for _, role, content in rows[1:]:
        room -= len(content)
        if room < 0:
            break
        history.append(HistoryMessage(role=cast("Role", role), content=content))
    return sequence, history[::-1]
