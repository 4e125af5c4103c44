"""Reads. Every query is scoped to its owner."""

import uuid
from dataclasses import dataclass
from typing import cast

from django.db.models import OuterRef, Subquery

from agent.backends.base import HistoryMessage, Role
from chatapi.exceptions import InvalidInputError, NotFoundError
from conversations.models import Conversation, Message


def conversation_latest_for_owner(*, owner_id: str) -> Conversation | None:
    """The owner's most recently updated conversation, if any."""
    return (
        Conversation.objects.filter(owner_id=owner_id)
        .order_by("-updated_at", "-id")
        .first()
    )


@dataclass(frozen=True, slots=True)
class MessagePage:
    conversation_id: uuid.UUID
    messages: list[Message]  # oldest first
    has_more: bool
    next_before: uuid.UUID | None


def message_page(
    *,
    owner_id: str,
    conversation_id: uuid.UUID,
    limit: int,
    before: uuid.UUID | None = None,
) -> MessagePage:
    """A page of the newest `limit` messages, older than `before` if given.

    Keyset paging on the per-conversation sequence: two queries whatever the
    conversation's length, no OFFSET, no COUNT. Raises NotFoundError unless
    the owner has this conversation, and InvalidInputError when `before` is
    not one of its messages.
    """
    conversations = Conversation.objects.filter(pk=conversation_id, owner_id=owner_id)
    if before is not None:
        conversations = conversations.annotate(
            before_sequence=Subquery(
                Message.objects.filter(conversation=OuterRef("pk"), pk=before).values(
                    "sequence"
                )[:1]
            )
        )
        found = list(conversations.values_list("pk", "before_sequence"))
    else:
        found = [(pk, None) for pk in conversations.values_list("pk", flat=True)]
    if not found:
        raise NotFoundError()
    before_sequence = found[0][1]
    if before is not None and before_sequence is None:
        raise InvalidInputError("Not a message of this conversation.", field="before")

    messages = Message.objects.filter(conversation_id=conversation_id)
    if before_sequence is not None:
        messages = messages.filter(sequence__lt=before_sequence)
    newest_first = list(
        messages.only(
            "id", "conversation_id", "role", "content", "created_at", "sequence"
        ).order_by("-sequence")[: limit + 1]
    )
    has_more = len(newest_first) > limit
    page = newest_first[:limit][::-1]
    return MessagePage(
        conversation_id=conversation_id,
        messages=page,
        has_more=has_more,
        next_before=page[0].id if has_more else None,
    )


def message_history_for_agent(
    *, conversation_id: uuid.UUID, before_sequence: int, limit: int
) -> list[HistoryMessage]:
    """The last `limit` messages before `before_sequence`, oldest first.

    Plain immutable values: the agent gets no ORM objects to query lazily.
    """
    if limit <= 0 or before_sequence <= 1:
        return []  # nothing to read: a new conversation has no history
    rows = (
        Message.objects.filter(
            conversation_id=conversation_id, sequence__lt=before_sequence
        )
        .order_by("-sequence")
        .values_list("role", "content")[:limit]
    )
    return [
        HistoryMessage(role=cast("Role", role), content=content)
        for role, content in rows
    ][::-1]
