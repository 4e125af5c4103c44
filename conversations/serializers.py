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


@extend_schema_serializer(component_name="Message")
class MessageOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    conversation_id = serializers.UUIDField()
    role = serializers.ChoiceField(choices=MessageRole.choices)
    content = serializers.CharField()
    created_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="ToolCall")
class ToolCallOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    tool_name = serializers.CharField()
    parameters = serializers.JSONField()
    result = serializers.JSONField()
    status = serializers.ChoiceField(choices=ToolCallStatus.choices)


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


@extend_schema_serializer(component_name="ConversationLatest")
class ConversationLatestOutputSerializer(serializers.Serializer):
    conversation_id = serializers.UUIDField(
        allow_null=True, help_text="Null when the user has no conversation."
    )
    created_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)


@extend_schema_serializer(component_name="MessagePage")
class MessagePageOutputSerializer(serializers.Serializer):
    conversation_id = serializers.UUIDField()
    messages = MessageOutputSerializer(many=True, help_text="Oldest first.")
    has_more = serializers.BooleanField(help_text="Whether older messages exist.")
    next_before = serializers.UUIDField(
        allow_null=True,
        help_text="Pass as `before` for the next older page; null when none.",
    )
