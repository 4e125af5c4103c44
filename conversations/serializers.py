"""Serializers shared by more than one view; input serializers live in views.

The output serializers document, in the OpenAPI schema, the plain dicts the
views build (conversations.views' `*_out` functions give the same JSON for a
fraction of the CPU; tests/views/test_output.py and test_message_list.py
check they agree). No class docstrings here: drf-spectacular would publish
them as component descriptions.
"""

import uuid
from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from conversations.models import MessageRole, ToolCallStatus


class StrictCharField(serializers.CharField):
    """A CharField that accepts only JSON strings (DRF also takes numbers)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictUUIDField(serializers.UUIDField):
    """A UUIDField that accepts only strings (DRF also takes integers)."""

    def to_internal_value(self, data: Any) -> uuid.UUID:
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


@extend_schema_serializer(component_name="ToolCall")
class ToolCallOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    tool_name = serializers.CharField()
    parameters = serializers.JSONField()
    result = serializers.JSONField()
    status = serializers.ChoiceField(choices=ToolCallStatus.choices)


@extend_schema_serializer(component_name="Message")
class MessageOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    conversation_id = serializers.UUIDField()
    role = serializers.ChoiceField(choices=MessageRole.choices)
    content = serializers.CharField()
    created_at = serializers.DateTimeField()
    tool_calls = ToolCallOutputSerializer(
        many=True,
        help_text=(
            "The tools the assistant called for this reply, in order; empty "
            "for a user message."
        ),
    )


@extend_schema_serializer(component_name="ChatResponse")
class ChatOutputSerializer(serializers.Serializer):
    conversation_id = serializers.UUIDField(
        help_text="The conversation the message went to (new or continued)."
    )
    response = serializers.CharField(
        allow_blank=True, help_text="The assistant's reply."
    )
    user_message_id = serializers.UUIDField()
    assistant_message_id = serializers.UUIDField()
    tool_calls = ToolCallOutputSerializer(
        many=True, help_text="The tools the assistant called, in order."
    )


@extend_schema_serializer(component_name="Conversation")
class ConversationOutputSerializer(serializers.Serializer):
    conversation_id = serializers.UUIDField()
    title = serializers.CharField(
        allow_blank=True,
        help_text=(
            "Made from the first message (white space collapsed, at most 80 "
            "characters then an ellipsis) until the user sets one."
        ),
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField(
        help_text="When the last message was stored; renaming leaves it."
    )
    message_count = serializers.IntegerField(min_value=0)


@extend_schema_serializer(component_name="ConversationLatest")
class ConversationLatestOutputSerializer(serializers.Serializer):
    conversation_id = serializers.UUIDField(
        allow_null=True, help_text="Null when the user has no conversation."
    )
    title = serializers.CharField(allow_null=True, allow_blank=True)
    created_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)
    message_count = serializers.IntegerField(
        min_value=0, help_text="0 when the user has no conversation."
    )


@extend_schema_serializer(component_name="ConversationPage")
class ConversationPageOutputSerializer(serializers.Serializer):
    conversations = ConversationOutputSerializer(
        many=True, help_text="Most recently updated first (ties: higher id first)."
    )
    has_more = serializers.BooleanField(
        help_text="Whether more conversations follow this page."
    )
    next_cursor = serializers.CharField(
        allow_null=True,
        help_text="Pass as `cursor` for the next page; null when none. Opaque.",
    )


@extend_schema_serializer(component_name="ConversationsDeleted")
class ConversationsDeletedOutputSerializer(serializers.Serializer):
    deleted = serializers.IntegerField(
        min_value=0, help_text="How many conversations were deleted."
    )


@extend_schema_serializer(component_name="MessagePage")
class MessagePageOutputSerializer(serializers.Serializer):
    conversation_id = serializers.UUIDField()
    messages = MessageOutputSerializer(many=True, help_text="Oldest first.")
    has_more = serializers.BooleanField(help_text="Whether older messages exist.")
    next_before = serializers.UUIDField(
        allow_null=True,
        help_text="Pass as `before` for the next older page; null when none.",
    )
