"""Support helpers for `manage.py shell`, and the user-data requests.

`manage.py shell` imports the four shell helpers (and timedelta) by itself;
elsewhere:

    from conversations.support import *

- `user_find("alice@example.com")`: the Better Auth user, by email or id.
- `user_conversations("alice@example.com")`: their conversations, most
  recently active first.
- `conversation_transcript("<conversation id>")`: every message in order,
  with the assistant's tool calls.
- `tool_calls_failed(user=..., since=timedelta(days=1))`: recent failed
  tool calls, newest first.

Listings are lists that show themselves as a table in the shell; use
`print(...)` around a helper in `manage.py shell -c`. Recipes:
docs/SUPPORT.md.
"""

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Model, Prefetch, QuerySet
from django.utils import timezone

from better_auth.models import BetterAuthUser
from conversations.models import (
    Conversation,
    IdempotencyKey,
    Message,
    ToolCall,
    ToolCallStatus,
)
from conversations.services import conversations_delete

__all__ = [
    "conversation_transcript",
    "tool_calls_failed",
    "user_conversations",
    "user_find",
]

# What `manage.py shell` imports by itself (see the `shell` command), with
# timedelta for `tool_calls_failed(since=timedelta(hours=1))`.
SHELL_IMPORTS = (*(f"{__name__}.{name}" for name in __all__), "datetime.timedelta")

SUPPORT_GROUP_NAME = "support"
SUPPORT_PERMISSION_CODENAMES = ("view_conversation", "view_message", "view_toolcall")

T = TypeVar("T")


# Users


def users_with_email(email: str) -> QuerySet[BetterAuthUser]:
    """Better Auth users with this email: exact, or lowercased, as Better
    Auth stores them. An indexed equality lookup, never a scan: for the
    admin's search."""
    return BetterAuthUser.objects.filter(email__in={email, email.lower()})


def users_with_email_any_case(email: str) -> QuerySet[BetterAuthUser]:
    """Better Auth users whose email is this one up to case, by id.

    A scan of Better Auth's table on PostgreSQL (it has no index on the
    email's case, and is not ours to index): for support requests only,
    which must see every candidate. SQLite folds ASCII letters only.
    """
    return BetterAuthUser.objects.filter(email__iexact=email).order_by("id")


class AmbiguousUserError(LookupError):
    """Several Better Auth users have the email, up to case: acting on one
    of them would be a guess."""

    def __init__(self, email: str, users: Sequence[BetterAuthUser]) -> None:
        self.user_ids = [user.id for user in users]
        candidates = ", ".join(f"{user.id} <{user.email}>" for user in users)
        super().__init__(
            f"{len(users)} Better Auth users have the email {email!r} up to "
            f"case: {candidates}. Give the user id instead."
        )


def user_find(query: str) -> BetterAuthUser | None:
    """The Better Auth user with this id or email (any case).

    Raises AmbiguousUserError when several users have the email up to case.
    """
    query = query.strip()
    if not query:
        return None
    if "@" in query:
        found = list(users_with_email_any_case(query))
        if len(found) > 1:
            raise AmbiguousUserError(query, found)
        return found[0] if found else None
    return BetterAuthUser.objects.filter(pk=query).first()


def user_resolve(user: BetterAuthUser | str) -> tuple[str, BetterAuthUser | None]:
    """The owner id for a user, an id or an email, with the user if known.

    An id without a Better Auth user still resolves when our tables carry
    it (Better Auth may have deleted the account first). Raises LookupError
    when nothing matches, AmbiguousUserError (a LookupError) when several
    users have the email up to case.
    """
    if isinstance(user, BetterAuthUser):
        return user.id, user
    query = user.strip()
    found = user_find(query)
    if found is not None:
        return found.id, found
    if "@" in query:
        raise LookupError(f"No Better Auth user has the email {query!r}.")
    if query and (
        Conversation.objects.filter(owner_id=query).exists()
        or IdempotencyKey.objects.filter(owner_id=query).exists()
    ):
        return query, None
    raise LookupError(
        f"Unknown user {query!r}: no Better Auth user has this id or email, "
        "and no conversation or idempotency key has it as owner id."
    )


# Listings


class Listing(list[T]):
    """A list of rows that shows itself as a table in the shell."""

    def __init__(self, items: Iterable[T], text: str) -> None:
        super().__init__(items)
        self.text = text

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


def user_conversations(
    user: BetterAuthUser | str, *, limit: int = 20
) -> Listing[Conversation]:
    """The user's conversations, most recently active first (at most `limit`).

    `user` is a Better Auth user, id or email; raises LookupError for an
    unknown one.
    """
    owner_id, found = user_resolve(user)
    conversations = list(
        Conversation.objects.filter(owner_id=owner_id).order_by("-updated_at", "-id")[
            :limit
        ]
    )
    header = f"Conversations of {_user_label(owner_id, found)}, newest activity first"
    rows = [
        [
            str(index),
            str(conversation.id),
            str(conversation.last_sequence),
            _time(conversation.created_at),
            _time(conversation.updated_at),
        ]
        for index, conversation in enumerate(conversations)
    ]
    table = _table(["#", "conversation", "messages", "created", "updated"], rows)
    return Listing(conversations, f"{header}:\n{table}" if rows else f"{header}: none")


def tool_calls_failed(
    *,
    user: BetterAuthUser | str | None = None,
    since: dt.datetime | dt.timedelta | None = None,
    limit: int = 20,
) -> Listing[ToolCall]:
    """Failed tool calls, newest first: of one user, and since a time
    (or for a duration back from now), if given."""
    calls = ToolCall.objects.filter(status=ToolCallStatus.ERROR)
    if user is not None:
        owner_id, _ = user_resolve(user)
        calls = calls.filter(message__conversation__owner_id=owner_id)
    if since is not None:
        start = timezone.now() - since if isinstance(since, dt.timedelta) else since
        calls = calls.filter(created_at__gte=start)
    found = list(
        calls.select_related("message__conversation").order_by("-created_at", "-id")[
            :limit
        ]
    )
    rows = [
        [
            _time(call.created_at),
            call.tool_name,
            str(call.message.conversation_id),
            call.message.conversation.owner_id,
            _clip(json.dumps(call.result, ensure_ascii=False), 60),
        ]
        for call in found
    ]
    if not rows:
        return Listing(found, "No failed tool calls.")
    table = _table(["time", "tool", "conversation", "owner", "result"], rows)
    return Listing(found, f"Failed tool calls, newest first:\n{table}")


# Transcripts


@dataclass(frozen=True)
class ToolCallEntry:
    call: ToolCall
    parameters_json: str
    result_json: str


@dataclass(frozen=True)
class TranscriptEntry:
    message: Message
    tool_calls: list[ToolCallEntry] = field(default_factory=list)

    @property
    def usage(self) -> str:
        return message_usage(self.message)


def message_usage(message: Message) -> str:
    """What the message cost, for staff: "gpt-4o · 120 prompt + 45
    completion tokens" ("?" for a count the API did not report); "" when
    nothing was recorded (user messages, the stub's replies)."""
    prompt, completion = message.prompt_tokens, message.completion_tokens
    if not message.model and prompt is None and completion is None:
        return ""
    tokens = (
        f"{'?' if prompt is None else prompt} prompt + "
        f"{'?' if completion is None else completion} completion tokens"
    )
    return f"{message.model or 'unknown model'} · {tokens}"


def transcript_entries(
    conversation: Conversation, *, last: int | None = None
) -> list[TranscriptEntry]:
    """The conversation's messages in sequence order (the `last` ones, if
    given), each with its tool calls: two queries, whatever the length."""
    messages = Message.objects.filter(conversation=conversation)
    if last is not None:
        messages = messages.filter(sequence__gt=conversation.last_sequence - last)
    messages = messages.order_by("sequence").prefetch_related(
        Prefetch("tool_calls", queryset=ToolCall.objects.order_by("position"))
    )
    return [
        TranscriptEntry(
            message=message,
            tool_calls=[
                ToolCallEntry(
                    call, pretty_json(call.parameters), pretty_json(call.result)
                )
                for call in message.tool_calls.all()
            ],
        )
        for message in messages
    ]


@dataclass(frozen=True)
class Transcript:
    """A conversation as text; the shell shows it as such."""

    conversation: Conversation
    owner: BetterAuthUser | None
    entries: list[TranscriptEntry]

    def __str__(self) -> str:
        conversation = self.conversation
        lines = [
            f"Conversation {conversation.id} of "
            f"{_user_label(conversation.owner_id, self.owner)}",
            f"created {_time(conversation.created_at)}, "
            f"updated {_time(conversation.updated_at)}, "
            f"{conversation.last_sequence} messages",
        ]
        if len(self.entries) < conversation.last_sequence:
            lines.append(f"(showing the last {len(self.entries)})")
        for entry in self.entries:
            message = entry.message
            header = f"#{message.sequence}  {_time(message.created_at)}  {message.role}"
            if entry.usage:
                header += f"  ({entry.usage})"
            lines += ["", header, _indent(message.content, 4)]
            for tool in entry.tool_calls:
                lines += [
                    f"    tool call {tool.call.tool_name}: {tool.call.status}",
                    "      parameters: " + _indent(tool.parameters_json, 6).lstrip(),
                    "      result: " + _indent(tool.result_json, 6).lstrip(),
                ]
        return "\n".join(lines)

    __repr__ = __str__


def conversation_transcript(
    conversation: Conversation | uuid.UUID | str, *, last: int | None = None
) -> Transcript:
    """The conversation's messages in order, with tool calls, as text.

    Raises Conversation.DoesNotExist for an unknown id and ValueError for a
    malformed one.
    """
    if not isinstance(conversation, Conversation):
        pk = (
            conversation
            if isinstance(conversation, uuid.UUID)
            else uuid.UUID(str(conversation).strip())
        )
        conversation = Conversation.objects.get(pk=pk)
    owner = BetterAuthUser.objects.filter(pk=conversation.owner_id).first()
    return Transcript(
        conversation=conversation,
        owner=owner,
        entries=transcript_entries(conversation, last=last),
    )


# Data requests (export_user_data, delete_user_data)

# Every model of ours that stores data about a user, with the lookup from
# it to the user's id: what export and erasure cover. A guard test fails
# when a model with a user field, or a relation to one of these, is missing
# here. Better Auth's own tables are Better Auth's to erase.
USER_DATA_MODELS: dict[type[Model], str] = {
    Conversation: "owner_id",
    Message: "conversation__owner_id",
    ToolCall: "message__conversation__owner_id",
    IdempotencyKey: "owner_id",
}


def user_data_export(
    *, owner_id: str, user: BetterAuthUser | None = None
) -> dict[str, Any]:
    """Everything stored for the owner, as JSON-ready data: four queries.

    Conversations with their messages and tool calls, then the
    Idempotency-Keys of the last day with the responses their repeats get.
    """
    conversations = list(
        Conversation.objects.filter(owner_id=owner_id).order_by("created_at", "id")
    )
    messages = Message.objects.filter(conversation__owner_id=owner_id).order_by(
        "conversation_id", "sequence"
    )
    calls = ToolCall.objects.filter(message__conversation__owner_id=owner_id).order_by(
        "message_id", "position"
    )
    calls_by_message: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for call in calls:
        calls_by_message.setdefault(call.message_id, []).append(
            {
                "id": str(call.id),
                "position": call.position,
                "tool_name": call.tool_name,
                "parameters": call.parameters,
                "result": call.result,
                "status": call.status,
                "created_at": _iso(call.created_at),
            }
        )
    messages_by_conversation: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for message in messages:
        messages_by_conversation.setdefault(message.conversation_id, []).append(
            {
                "id": str(message.id),
                "sequence": message.sequence,
                "role": message.role,
                "content": message.content,
                "created_at": _iso(message.created_at),
                "reply_to_id": str(message.reply_to_id)
                if message.reply_to_id
                else None,
                # The model and tokens behind an assistant message ("" and
                # null when none were recorded).
                "model": message.model,
                "prompt_tokens": message.prompt_tokens,
                "completion_tokens": message.completion_tokens,
                "tool_calls": calls_by_message.get(message.id, []),
            }
        )
    keys = IdempotencyKey.objects.filter(owner_id=owner_id).order_by(
        "created_at", "key"
    )
    return {
        "owner_id": owner_id,
        "user": None
        if user is None
        else {"id": user.id, "email": user.email, "name": user.name},
        "exported_at": _iso(timezone.now()),
        "conversations": [
            {
                "id": str(conversation.id),
                "title": conversation.title,
                "title_set_by_user": conversation.title_set_by_user,
                "created_at": _iso(conversation.created_at),
                "updated_at": _iso(conversation.updated_at),
                "messages": messages_by_conversation.get(conversation.id, []),
            }
            for conversation in conversations
        ],
        "idempotency_keys": [
            {
                "key": record.key,
                "created_at": _iso(record.created_at),
                # sha256 of the request; no response yet while it runs.
                "request_fingerprint": record.fingerprint,
                "response_status": record.response_status,
                "response_body": record.response_body,
            }
            for record in keys
        ],
    }


@dataclass(frozen=True)
class UserDataCounts:
    conversations: int
    messages: int
    tool_calls: int
    idempotency_keys: int

    def __str__(self) -> str:
        return (
            f"{self.conversations} conversation(s), {self.messages} message(s), "
            f"{self.tool_calls} tool call(s), "
            f"{self.idempotency_keys} idempotency key(s)"
        )


def user_data_counts(*, owner_id: str) -> UserDataCounts:
    """How many of the owner's rows each of our tables holds."""
    counts = {
        model: model._default_manager.filter(**{lookup: owner_id}).count()
        for model, lookup in USER_DATA_MODELS.items()
    }
    return UserDataCounts(
        conversations=counts[Conversation],
        messages=counts[Message],
        tool_calls=counts[ToolCall],
        idempotency_keys=counts[IdempotencyKey],
    )


def user_data_delete(*, owner_id: str) -> UserDataCounts:
    """Delete everything stored for the owner (USER_DATA_MODELS), in one
    transaction; Better Auth's rows stay. Returns what was deleted.

    The conversations are locked first, so a chat request writing to one of
    them waits, then finds it gone; they go as the API deletes them
    (services.conversations_delete: on PostgreSQL one statement, no message
    loaded). The Idempotency-Keys go too: they hold the assistant's replies,
    which a repeated request would otherwise get back.
    """
    with transaction.atomic():
        list(
            Conversation.objects.select_for_update()
            .filter(owner_id=owner_id)
            .values_list("pk", flat=True)
        )
        counts = user_data_counts(owner_id=owner_id)
        conversations_delete(owner_id=owner_id)
        IdempotencyKey.objects.filter(owner_id=owner_id).delete()
    return counts


# Staff access


def support_group_sync(*, using: str = DEFAULT_DB_ALIAS) -> Group:
    """Create the "support" group, or reset it, with exactly the view
    permissions on conversations, messages and tool calls.

    Runs after every `migrate` (post_migrate) and from `sync_support_group`.
    """
    # The permissions exist after `migrate`; this also covers a database
    # whose permissions were flushed.
    create_permissions(apps.get_app_config("conversations"), verbosity=0, using=using)
    permissions = Permission.objects.using(using).filter(
        content_type__app_label="conversations",
        codename__in=SUPPORT_PERMISSION_CODENAMES,
    )
    group, _ = Group.objects.using(using).get_or_create(name=SUPPORT_GROUP_NAME)
    group.permissions.set(permissions)
    return group


# Formatting


def pretty_json(value: object) -> str:
    """JSON indented for reading, non-ASCII kept as is."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _user_label(owner_id: str, user: BetterAuthUser | None) -> str:
    if user is None:
        return f"{owner_id} (no Better Auth user with this id)"
    return f"{owner_id} <{user.email}>"


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _indent(text: str, width: int) -> str:
    pad = " " * width
    return "\n".join(pad + line for line in text.splitlines() or [""])


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)
