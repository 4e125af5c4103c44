from typing import Any

from django.utils import timezone

import factory
from factory.django import DjangoModelFactory

from conversations.models import Conversation, IdempotencyKey, Message, ToolCall


class ConversationFactory(DjangoModelFactory):
    class Meta:
        model = Conversation

    owner_id = factory.Faker("pystr", min_chars=24, max_chars=24)


class MessageFactory(DjangoModelFactory):
    """A message appended to its conversation (next sequence number)."""

    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    role = Message.Role.USER
    content = factory.Faker("sentence")

    @classmethod
    def _create(cls, model_class: type[Message], *args: Any, **kwargs: Any) -> Message:
        conversation = kwargs["conversation"]
        if "sequence" not in kwargs:
            conversation.last_sequence += 1
            kwargs["sequence"] = conversation.last_sequence
        else:
            conversation.last_sequence = max(
                conversation.last_sequence, kwargs["sequence"]
            )
        Conversation.objects.filter(pk=conversation.pk).update(
            last_sequence=conversation.last_sequence
        )
        return super()._create(model_class, *args, **kwargs)


class ToolCallFactory(DjangoModelFactory):
    class Meta:
        model = ToolCall

    message = factory.SubFactory(MessageFactory, role=Message.Role.ASSISTANT)
    position = factory.Sequence(lambda n: n)
    tool_name = "add_task"
    parameters = factory.LazyFunction(lambda: {"title": "buy milk"})
    result = factory.LazyFunction(lambda: {"task_id": "1"})
    status = ToolCall.Status.SUCCESS


class IdempotencyKeyFactory(DjangoModelFactory):
    """A finished Idempotency-Key: its repeats get the stored response."""

    class Meta:
        model = IdempotencyKey

    owner_id = factory.Faker("pystr", min_chars=24, max_chars=24)
    key = factory.Faker("uuid4")
    fingerprint = factory.Faker("sha256")
    created_at = factory.LazyFunction(timezone.now)
    response_status = 200
    response_body = factory.LazyFunction(lambda: {"response": "Added “tea”."})


def conversation_with_messages(owner_id: str, count: int) -> Conversation:
    """A conversation of `count` messages ("history 1", ...), alternating
    user and assistant."""
    conversation = ConversationFactory.create(owner_id=owner_id)
    Message.objects.bulk_create(
        MessageFactory.build(
            conversation=conversation,
            sequence=sequence,
            role=Message.Role.USER if sequence % 2 else Message.Role.ASSISTANT,
            content=f"history {sequence}",
        )
        for sequence in range(1, count + 1)
    )
    Conversation.objects.filter(pk=conversation.pk).update(last_sequence=count)
    return conversation
