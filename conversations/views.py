"""The chat API (CONTRACT §2). Views parse, call one service or selector,
and render; every error is rendered by chatapi.exception_handlers."""

import uuid
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agent.exceptions import AgentError
from chatapi import schema
from conversations.idempotency import (
    StoredResponse,
    idempotency_key_claim,
    idempotency_key_finish,
    idempotency_key_release,
    idempotency_key_valid,
    request_fingerprint,
)
from conversations.models import ToolCall
from conversations.selectors import (
    ConversationRow,
    MessageRow,
    conversation_latest_for_owner,
    message_page,
)
from conversations.serializers import StrictCharField, StrictUUIDField
from conversations.services import chat_message_send
from core.exceptions import NotFoundError

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500


def owner_from_path(request: Request, user_id: str) -> str:
    """The session's user id, if the path names it; 404 otherwise.

    Another user's id answers exactly like a missing resource, so existence
    is never revealed.
    """
    if user_id != request.user.id:
        raise NotFoundError()
    return user_id


# Output as plain dicts, in the shapes of conversations.serializers' output
# serializers (which document them in the OpenAPI schema): the same JSON
# for a fraction of the CPU (docs/PERFORMANCE.md).


def datetime_out(value: datetime) -> str:
    """ISO 8601 in UTC with "Z": what DRF's DateTimeField renders with
    TIME_ZONE = "UTC" (tests/views/test_output.py checks they agree), without its
    per-value settings and time zone lookups, which made up a fifth of the
    CPU of a page of 100 messages (docs/PERFORMANCE.md)."""
    return value.astimezone(UTC).isoformat()[:-6] + "Z"


def message_out(message: MessageRow, conversation_id: str) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "conversation_id": conversation_id,
        "role": message.role,
        "content": message.content,
        "created_at": datetime_out(message.created_at),
    }


def tool_call_out(call: ToolCall) -> dict[str, Any]:
    return {
        "id": str(call.id),
        "tool_name": str(call.tool_name),
        "parameters": call.parameters,
        "result": call.result,
        "status": str(call.status),
    }


def conversation_out(conversation: ConversationRow) -> dict[str, Any]:
    return {
        "conversation_id": str(conversation.id),
        "created_at": datetime_out(conversation.created_at),
        "updated_at": datetime_out(conversation.updated_at),
    }


class ChatView(APIView):
    throttle_scope = "chat"

    @extend_schema_serializer(component_name="ChatRequest")
    class InputSerializer(serializers.Serializer):
        # Stored exactly as sent: no trimming. DRF's CharField already
        # refuses NUL characters and lone surrogates (neither can be stored).
        message = StrictCharField(trim_whitespace=False)
        conversation_id = StrictUUIDField(required=False, allow_null=True)

        def validate_message(self, value: str) -> str:
            if not value.strip():
                raise serializers.ValidationError(
                    "This field may not be blank.", code="blank"
                )
            limit = settings.CHAT_MAX_MESSAGE_CHARS
            if len(value) > limit:
                raise serializers.ValidationError(
                    f"Ensure this field has no more than {limit} characters.",
                    code="message_too_long",
                )
            return value

    @extend_schema(
        operation_id="chat_send",
        summary="Send a message; get the assistant's reply",
        description=schema.CHAT_DESCRIPTION,
        tags=["chat"],
        request=InputSerializer,
        parameters=[
            schema.user_id_parameter(),
            schema.idempotency_key_parameter(),
            *schema.response_headers(replayable=(200, 502, 504)),
        ],
        responses={
            200: schema.CHAT_OK,
            **schema.error_responses(
                400, 401, 403, 404, 409, 413, 415, 422, 429, 502, 503, 504
            ),
        },
    )
    def post(self, request: Request, user_id: str) -> Response:
        owner_id = owner_from_path(request, user_id)
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            key = idempotency_key_valid(key)
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        message = payload.validated_data["message"]
        conversation_id = payload.validated_data.get("conversation_id")
        if key is None:
            return Response(self.send(owner_id, message, conversation_id))

        claim = idempotency_key_claim(
            owner_id=owner_id,
            key=key,
            fingerprint=request_fingerprint(
                owner_id=owner_id, message=message, conversation_id=conversation_id
            ),
        )
        if isinstance(claim, StoredResponse):
            return Response(
                claim.body, status=claim.status, headers={"Idempotent-Replayed": "true"}
            )
        try:
            body = self.send(owner_id, message, conversation_id)
        except AgentError as exc:
            # The user's message is stored: a repeat must not store it again.
            idempotency_key_finish(
                claim,
                status=exc.status_code,
                body={"detail": exc.detail, "code": exc.code},
            )
            raise
        except BaseException:
            idempotency_key_release(claim)
            raise
        idempotency_key_finish(claim, status=200, body=body)
        return Response(body)

    def send(
        self, owner_id: str, message: str, conversation_id: uuid.UUID | None
    ) -> dict[str, Any]:
        exchange = chat_message_send(
            owner_id=owner_id, content=message, conversation_id=conversation_id
        )
        return {
            "conversation_id": str(exchange.conversation_id),
            "response": exchange.assistant_message.content,
            "user_message_id": str(exchange.user_message.id),
            "assistant_message_id": str(exchange.assistant_message.id),
            "tool_calls": [tool_call_out(call) for call in exchange.tool_calls],
        }


class ConversationLatestView(APIView):
    throttle_scope = "read"

    @extend_schema(
        operation_id="conversation_latest",
        summary="The user's most recently updated conversation",
        description=schema.CONVERSATION_LATEST_DESCRIPTION,
        tags=["conversations"],
        parameters=[schema.user_id_parameter(), *schema.response_headers()],
        responses={
            200: schema.CONVERSATION_LATEST_OK,
            **schema.error_responses(401, 404, 429, 503),
        },
    )
    def get(self, request: Request, user_id: str) -> Response:
        owner_id = owner_from_path(request, user_id)
        conversation = conversation_latest_for_owner(owner_id=owner_id)
        if conversation is None:
            return Response(
                {"conversation_id": None, "created_at": None, "updated_at": None}
            )
        return Response(conversation_out(conversation))


class MessageListView(APIView):
    throttle_scope = "read"

    class FilterSerializer(serializers.Serializer):
        limit = serializers.IntegerField(
            min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE
        )
        before = StrictUUIDField(required=False)

    @extend_schema(
        operation_id="message_list",
        summary="A page of a conversation's messages, oldest first",
        description=schema.MESSAGE_LIST_DESCRIPTION,
        tags=["conversations"],
        parameters=[
            schema.user_id_parameter(),
            schema.conversation_id_parameter(),
            *schema.page_parameters(default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE),
            *schema.response_headers(),
        ],
        responses={
            200: schema.MESSAGE_LIST_OK,
            **schema.error_responses(400, 401, 404, 429, 503),
        },
    )
    def get(self, request: Request, user_id: str, conversation_id: str) -> Response:
        owner_id = owner_from_path(request, user_id)
        try:
            conversation_uuid = uuid.UUID(conversation_id)
        except ValueError:
            raise NotFoundError() from None
        # A plain dict, not the QueryDict: DRF reads a blank value in a
        # QueryDict as "absent", and `?limit=` is a client error, not 100.
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        page = message_page(
            owner_id=owner_id,
            conversation_id=conversation_uuid,
            **filters.validated_data,
        )
        conversation = str(page.conversation_id)
        data: dict[str, Any] = {
            "conversation_id": conversation,
            "messages": [
                message_out(message, conversation) for message in page.messages
            ],
            "has_more": page.has_more,
            "next_before": str(page.next_before) if page.next_before else None,
        }
        return Response(data)
