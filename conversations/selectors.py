"""Reads. Every query is scoped to its owner.

On PostgreSQL the hot reads are conversations.postgres (the fast path,
docs/PERFORMANCE.md); elsewhere the ORM. Both return plain rows, no model
instances: on a page of 100 messages those cost more CPU than the rest of
the request.
"""

import base64
import binascii
import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet, Subquery

from agent.backends.base import HistoryMessage, Role
from conversations import postgres
from conversations.models import Conversation, Message, ToolCall
from core.exceptions import InvalidInputError, NotFoundError


class ConversationRow(NamedTuple):
    """A conversation as the API shows it."""

    id: uuid.UUID
    title: str
    created_at: dt.datetime
    updated_at: dt.datetime
    message_count: int


# The columns of a ConversationRow; message_count is last_sequence, since
# messages are numbered 1, 2, 3… and never deleted one by one.
CONVERSATION_FIELDS = ("id", "title", "created_at", "updated_at", "last_sequence")


class MessageRow(NamedTuple):
    """A message as the API shows it, with its tool calls in the API's
    shape (`{"id", "tool_name", "parameters", "result", "status"}`)."""

    id: uuid.UUID
    role: str
    content: str
    created_at: dt.datetime
    tool_calls: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class MessagePage:
    conversation_id: uuid.UUID
    messages: list[MessageRow]  # oldest first
    has_more: bool
    next_before: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class ConversationPage:
    conversations: list[ConversationRow]  # most recently updated first
    has_more: bool
    next_cursor: str | None


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
            .values_list(*CONVERSATION_FIELDS)
            .first()
        )
    return ConversationRow(*found) if found else None


def conversation_get_for_owner(
    *, owner_id: str, conversation_id: uuid.UUID
) -> ConversationRow:
    """The owner's conversation; NotFoundError for any other id."""
    found = (
        Conversation.objects.filter(pk=conversation_id, owner_id=owner_id)
        .values_list(*CONVERSATION_FIELDS)
        .first()
    )
    if found is None:
        raise NotFoundError()
    return ConversationRow(*found)


# --- The conversation list's cursor ---------------------------------------
#
# A position in the list: the (updated_at, id) of the last conversation of
# a page, nothing else (no owner: the query is always the session user's).
# "1:<updated_at in microseconds since the epoch>:<id>", base64url without
# padding, so clients treat it as opaque; "1" is the format's version.

_CURSOR = re.compile(r"1:(-?[0-9]{1,19}):([0-9a-f]{32})")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class ConversationCursor(NamedTuple):
    updated_at: dt.datetime
    id: uuid.UUID


def _base64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def cursor_encode(position: ConversationCursor) -> str:
    micros = (position.updated_at - _EPOCH) // dt.timedelta(microseconds=1)
    return _base64(f"1:{micros}:{position.id.hex}")


def cursor_decode(value: str) -> ConversationCursor:
    """The position a cursor of cursor_encode holds; ValueError for
    anything else."""
    if not value or len(value) > 100 or not value.isascii():
        raise ValueError("not a cursor")
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("not a cursor") from None
    match = _CURSOR.fullmatch(text)
    # Only the one spelling cursor_encode gives (no padding, no variants).
    if match is None or _base64(text) != value:
        raise ValueError("not a cursor")
    try:
        updated_at = _EPOCH + dt.timedelta(microseconds=int(match[1]))
    except OverflowError:
        raise ValueError("not a cursor") from None
    return ConversationCursor(updated_at, uuid.UUID(hex=match[2]))


def conversation_page_query(
    *, owner_id: str, limit: int, cursor: ConversationCursor | None = None
) -> "QuerySet[Conversation, tuple[Any, ...]]":
    """The one query of conversation_page: `limit` rows of the owner's
    conversations after `cursor`, as ConversationRow fields.

    A keyset range of conv_owner_updated_idx (no OFFSET, no COUNT): the
    last page of a long list costs what the first does. The redundant
    `updated_at <= ...` is what bounds the index scan; the OR then only
    skips the ties already shown.
    """
    found = Conversation.objects.filter(owner_id=owner_id)
    if cursor is not None:
        found = found.filter(updated_at__lte=cursor.updated_at).filter(
            Q(updated_at__lt=cursor.updated_at) | Q(id__lt=cursor.id)
        )
    return found.order_by("-updated_at", "-id").values_list(*CONVERSATION_FIELDS)[
        :limit
    ]


def conversation_page(
    *, owner_id: str, limit: int, cursor: ConversationCursor | None = None
) -> ConversationPage:
    """A page of the owner's conversations, most recently updated first
    (ties: higher id first), after `cursor` if given: one query."""
    rows = [
        ConversationRow(*row)
        for row in conversation_page_query(
            owner_id=owner_id, limit=limit + 1, cursor=cursor
        )
    ]
    has_more = len(rows) > limit
    page = rows[:limit]
    last = page[-1] if has_more else None
    return ConversationPage(
        conversations=page,
        has_more=has_more,
        next_cursor=None
        if last is None
        else cursor_encode(ConversationCursor(last.updated_at, last.id)),
    )


# --- A page of messages ----------------------------------------------------
#
# The byte bound (MESSAGES_PAGE_MAX_BYTES): each message costs the size of
# its content as a JSON string, escapes included, plus its tool calls' JSON,
# plus MESSAGE_OVERHEAD_BYTES for its other keys and values (ids, role,
# timestamp) at their longest; the page itself PAGE_OVERHEAD_BYTES. A page
# holds the newest messages whose costs fit (always at least one), so its
# JSON body stays within the setting unless one message alone is larger.
# tests/views/test_message_list.py checks both figures are upper bounds.
MESSAGE_OVERHEAD_BYTES = 200
PAGE_OVERHEAD_BYTES = 160


def message_page(
    *,
    owner_id: str,
    conversation_id: uuid.UUID,
    limit: int,
    before: uuid.UUID | None = None,
) -> MessagePage:
    """A page of the newest `limit` messages, older than `before` if given,
    each with its tool calls; fewer when the page would pass
    MESSAGES_PAGE_MAX_BYTES.

    Read newest first by keyset on (conversation_id, sequence)
    (msg_conv_sequence_uniq, scanned backwards; no OFFSET, no COUNT), so
    the cost does not grow with the conversation. Raises NotFoundError
    unless the owner has this conversation, and InvalidInputError when
    `before` is not one of its messages.
    """
    max_bytes = settings.MESSAGES_PAGE_MAX_BYTES - PAGE_OVERHEAD_BYTES
    read_page = _message_page_postgresql if _fast_path() else _message_page_orm
    newest_first, read = read_page(
        owner_id=owner_id,
        conversation_id=conversation_id,
        limit=limit + 1,
        before=before,
        max_bytes=max_bytes,
    )
    page = newest_first[:limit][::-1]
    # Older messages exist when some that were read are left out, by the
    # limit (limit + 1 were asked for) or by the byte bound.
    has_more = read > len(page)
    return MessagePage(
        conversation_id=conversation_id,
        messages=page,
        has_more=has_more,
        next_before=page[0].id if has_more else None,
    )


def _message_page_postgresql(
    *,
    owner_id: str,
    conversation_id: uuid.UUID,
    limit: int,
    before: uuid.UUID | None,
    max_bytes: int,
) -> tuple[list[MessageRow], int]:
    """One statement: the conversation, the `before` message and the page,
    cut to the byte bound; the messages, and how many were read."""
    rows = postgres.message_page_rows(
        owner_id=owner_id,
        conversation_id=conversation_id,
        limit=limit,
        before=before,
        max_bytes=max_bytes,
        message_overhead=MESSAGE_OVERHEAD_BYTES,
    )
    if not rows:
        raise NotFoundError()
    # The last column, the same on every row.
    if before is not None and rows[0][-1] is None:
        raise InvalidInputError("Not a message of this conversation.", field="before")
    # No message: one row of NULLs from the LEFT JOIN.
    if rows[0][0] is None:
        return [], 0
    return [MessageRow(*row[:5]) for row in rows], rows[0][5]


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _message_page_orm(
    *,
    owner_id: str,
    conversation_id: uuid.UUID,
    limit: int,
    before: uuid.UUID | None,
    max_bytes: int,
) -> tuple[list[MessageRow], int]:
    """The same page with the ORM, on any database: the messages, their
    tool calls, then the byte bound applied in Python."""
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
    rows = list(
        messages.order_by("-sequence").values_list(
            "id", "role", "content", "created_at"
        )[:limit]
    )
    calls: dict[uuid.UUID, list[dict[str, Any]]] = {row[0]: [] for row in rows}
    for message_id, *call in (
        ToolCall.objects.filter(message_id__in=list(calls))
        .order_by("message_id", "position")
        .values_list("message_id", "id", "tool_name", "parameters", "result", "status")
    ):
        call_id, tool_name, parameters, result, status = call
        calls[message_id].append(
            {
                "id": str(call_id),
                "tool_name": tool_name,
                "parameters": parameters,
                "result": result,
                "status": status,
            }
        )
    page: list[MessageRow] = []
    used = 0
    for message_id, role, content, created_at in rows:
        tool_calls = calls[message_id]
        used += _json_size(content) + _json_size(tool_calls) + MESSAGE_OVERHEAD_BYTES
        if page and used > max_bytes:
            break
        page.append(MessageRow(message_id, role, content, created_at, tool_calls))
    return page, len(rows)


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
