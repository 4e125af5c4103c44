import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

# A title the user sets: at most this many characters (CONTRACT §8).
TITLE_MAX_CHARS = 200
# A title made from the first message: at most this many characters of it,
# then an ellipsis.
TITLE_FROM_MESSAGE_CHARS = 80


def conversation_title_from_message(content: str) -> str:
    """The title of a conversation whose first message is `content`: its
    white space collapsed and trimmed, cut to TITLE_FROM_MESSAGE_CHARS
    characters plus an ellipsis when longer."""
    text = " ".join(content.split())
    if len(text) <= TITLE_FROM_MESSAGE_CHARS:
        return text
    return text[:TITLE_FROM_MESSAGE_CHARS].rstrip() + "…"


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # A Better Auth user id: text, not a foreign key, because Better Auth's
    # table is not ours to constrain.
    owner_id = models.TextField()
    # Made from the first message (conversation_title_from_message) unless
    # the user set one; a title the user set is never overwritten. The
    # database defaults too, for rows inserted by SQL that predates them.
    title = models.CharField(
        max_length=TITLE_MAX_CHARS, blank=True, default="", db_default=""
    )
    title_set_by_user = models.BooleanField(default=False, db_default=False)
    # The sequence number of the newest message; the next one gets +1.
    # Updated under the row lock that serialises writers to a conversation.
    last_sequence = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        db_table = "conversations"
        indexes = [
            # The user's most recently updated conversation.
            models.Index(
                fields=["owner_id", "-updated_at", "-id"],
                name="conv_owner_updated_idx",
            ),
            # The admin's changelist, newest first, on any number of rows.
            models.Index(fields=["created_at", "id"], name="conv_created_idx"),
            models.Index(fields=["updated_at", "id"], name="conv_updated_idx"),
        ]

    def __str__(self) -> str:
        return str(self.id)

    @property
    def message_count(self) -> int:
        # Messages are numbered 1, 2, 3… and never deleted one by one.
        return self.last_sequence


class MessageRole(models.TextChoices):
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class Message(models.Model):
    Role = MessageRole

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.CASCADE,
        related_name="messages",
        db_index=False,  # msg_conv_sequence_uniq leads with it
    )
    # Position in the conversation, 1, 2, 3…: exact order even when two
    # messages share a timestamp.
    sequence = models.PositiveIntegerField()
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    content = models.TextField()
    # For an assistant message, the user message it answers.
    reply_to = models.OneToOneField(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="reply",
    )
    # What an assistant message cost, for operators (never in the API): the
    # model that wrote it, "" for user messages and backends without a
    # model (the stub), and the tokens the API reported, None when it did
    # not. The database defaults `model` too, for rows inserted by SQL that
    # predates it.
    model = models.CharField(max_length=255, blank=True, default="", db_default="")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        db_table = "messages"
        ordering = ["conversation", "sequence"]
        indexes = [
            # The admin's changelist, newest first.
            models.Index(fields=["created_at", "id"], name="msg_created_idx"),
        ]
        constraints = [
            # Also the index for paging a conversation by sequence.
            models.UniqueConstraint(
                fields=["conversation", "sequence"], name="msg_conv_sequence_uniq"
            ),
            models.CheckConstraint(
                condition=Q(role__in=MessageRole.values), name="msg_role_valid"
            ),
            models.CheckConstraint(
                condition=Q(role=MessageRole.ASSISTANT) | Q(reply_to__isnull=True),
                name="msg_only_assistant_replies",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.sequence} in {self.conversation_id}"


class ToolCallStatus(models.TextChoices):
    SUCCESS = "success", "Success"
    ERROR = "error", "Error"


class ToolCall(models.Model):
    Status = ToolCallStatus

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    message = models.ForeignKey(
        Message,
        on_delete=models.CASCADE,
        related_name="tool_calls",
        db_index=False,  # toolcall_msg_position_uniq leads with it
    )
    # Order of the calls within the message.
    position = models.PositiveSmallIntegerField(default=0)
    tool_name = models.CharField(max_length=255)
    parameters = models.JSONField(default=dict)
    result = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=ToolCallStatus.choices)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        db_table = "tool_calls"
        ordering = ["message", "position"]
        indexes = [
            # The admin's changelist, newest first: all calls, one tool's,
            # and the failures (a small partial index).
            models.Index(fields=["created_at", "id"], name="toolcall_created_idx"),
            models.Index(
                fields=["tool_name", "created_at", "id"],
                name="toolcall_name_created_idx",
            ),
            models.Index(
                fields=["created_at", "id"],
                condition=Q(status=ToolCallStatus.ERROR),
                name="toolcall_error_created_idx",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["message", "position"], name="toolcall_msg_position_uniq"
            ),
            models.CheckConstraint(
                condition=Q(status__in=ToolCallStatus.values),
                name="toolcall_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} ({self.status})"


class IdempotencyKey(models.Model):
    """An `Idempotency-Key` a user sent with POST chat, and the response its
    repeats get (conversations.idempotency)."""

    owner_id = models.TextField()
    key = models.CharField(max_length=255)
    # sha256 of the request (user, message, conversation id).
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    # Both null while the first request runs.
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)

    class Meta:
        db_table = "idempotency_keys"
        constraints = [
            models.UniqueConstraint(
                fields=["owner_id", "key"], name="idempotency_owner_key_uniq"
            ),
        ]
        indexes = [
            # Purging expired keys.
            models.Index(fields=["created_at"], name="idempotency_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.key} of {self.owner_id}"
