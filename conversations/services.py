"""Writes. The chat flow and its transaction boundaries live here."""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agent.backends.base import AgentReply
from agent.exceptions import AgentError
from agent.runner import agent_reply_generate
from chatapi.exceptions import NotFoundError
from conversations.models import Conversation, Message, ToolCall
from conversations.selectors import message_history_for_agent

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

    Three steps, never inside a caller's transaction (`durable=True` raises
    RuntimeError if there is one):

    1. commit the user's message (creating the conversation when
       `conversation_id` is None);
    2. call the agent with no transaction open and no row locked;
    3. commit the assistant message, its tool calls and the conversation's
       new `updated_at` together.

    Raises NotFoundError when the owner has no such conversation, and
    AgentError / AgentTimeoutError when the agent fails, in which case the
    user's message stays stored and nothing else is.
    """
    user_message = message_user_create(
        owner_id=owner_id, conversation_id=conversation_id, content=content
    )
    history = message_history_for_agent(
        conversation_id=user_message.conversation_id,
        before_sequence=user_message.sequence,
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


@transaction.atomic(durable=True)
def message_user_create(
    *, owner_id: str, conversation_id: uuid.UUID | None, content: str
) -> Message:
    """Commit a user message, in a new conversation when `conversation_id` is None.

    The conversation row is locked while its next sequence number is taken,
    so concurrent senders get consecutive numbers. Raises NotFoundError when
    the owner has no such conversation; nothing is written then.
    """
    now = timezone.now()
    if conversation_id is None:
        conversation = Conversation.objects.create(
            owner_id=owner_id, last_sequence=1, created_at=now, updated_at=now
        )
        sequence = 1
    else:
        locked = (
            Conversation.objects.select_for_update()
            .filter(pk=conversation_id, owner_id=owner_id)
            .only("pk", "last_sequence")
            .first()
        )
        if locked is None:
            raise NotFoundError()
        conversation = locked
        sequence = _take_sequence(conversation, now=now)
    return Message.objects.create(
        conversation=conversation,
        sequence=sequence,
        role=Message.Role.USER,
        content=content,
        created_at=now,
    )


@transaction.atomic(durable=True)
def message_assistant_create(
    *, user_message: Message, reply: AgentReply
) -> ChatExchange:
    """Commit the agent's reply to `user_message`, with its tool calls.

    Raises NotFoundError when the conversation was deleted while the agent
    was answering; nothing is written then.
    """
    now = timezone.now()
    conversation = (
        Conversation.objects.select_for_update()
        .filter(pk=user_message.conversation_id)
        .only("pk", "last_sequence")
        .first()
    )
    if conversation is None:
        logger.info(
            "Conversation %s was deleted while the agent answered",
            user_message.conversation_id,
        )
        raise NotFoundError()
    assistant_message = Message.objects.create(
        conversation=conversation,
        sequence=_take_sequence(conversation, now=now),
        role=Message.Role.ASSISTANT,
        content=reply.content,
        reply_to=user_message,
        created_at=now,
    )
    tool_calls = ToolCall.objects.bulk_create(
        ToolCall(
            message=assistant_message,
            position=position,
            tool_name=call.tool_name,
            parameters=call.parameters,
            result=call.result,
            status=call.status,
            created_at=now,
        )
        for position, call in enumerate(reply.tool_calls)
    )
    return ChatExchange(
        user_message=user_message,
        assistant_message=assistant_message,
        tool_calls=tool_calls,
    )


def _take_sequence(conversation: Conversation, *, now: datetime) -> int:
    """Next sequence number of a conversation whose row the caller has locked."""
    sequence = conversation.last_sequence + 1
    Conversation.objects.filter(pk=conversation.pk).update(
        last_sequence=sequence, updated_at=now
    )
    return sequence
