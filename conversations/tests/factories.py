import datetime as dt
from urllib.parse import quote

from django.utils import timezone

import factory
from factory.django import DjangoModelFactory

from conversations.authentication import sign_token
from conversations.models import (
    BetterAuthSession,
    BetterAuthUser,
    Conversation,
    Message,
    ToolCall,
)


class BetterAuthUserFactory(DjangoModelFactory):
    class Meta:
        model = BetterAuthUser

    id = factory.Faker("pystr", min_chars=24, max_chars=24)
    name = factory.Faker("name")
    email = factory.LazyAttribute(lambda user: f"{user.id.lower()}@example.com")


class BetterAuthSessionFactory(DjangoModelFactory):
    class Meta:
        model = BetterAuthSession

    id = factory.Faker("pystr", min_chars=32, max_chars=32)
    token = factory.Faker("pystr", min_chars=32, max_chars=32)
    user = factory.SubFactory(BetterAuthUserFactory)
    expires_at = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(days=7))

    class Params:
        expired = factory.Trait(
            expires_at=factory.LazyFunction(
                lambda: timezone.now() - dt.timedelta(seconds=1)
            )
        )


def signed_token(session: BetterAuthSession) -> str:
    """`token.signature`, as Better Auth's cookie and set-auth-token carry it."""
    return sign_token(session.token)


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
    def _create(cls, model_class, *args, **kwargs):
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


# Credentials as a client sends them: request headers for a session's token.

Headers = dict[str, str]
COOKIE = "better-auth.session_token"
SECURE_COOKIE = "__Secure-better-auth.session_token"


def bearer(value: str) -> Headers:
    return {"Authorization": f"Bearer {value}"}


def cookie(value: str, name: str = COOKIE) -> Headers:
    """A `Cookie` header as a browser sends it."""
    return {"Cookie": f"{name}={value}"}


def encoded(value: str) -> str:
    """URL-encoded as Better Auth writes its cookie (encodeURIComponent)."""
    return quote(value, safe="")


def bad_signature(session: BetterAuthSession) -> str:
    """The session's signed token with one character of its signature
    changed."""
    token, _, signature = signed_token(session).rpartition(".")
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    return f"{token}.{flipped}"
