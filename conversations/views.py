"""The chat API (CONTRACT §2). Views parse, call one service or selector,
and render; every error is rendered by the DRF exception handler.

Each endpoint's docstring is its OpenAPI description (drf-spectacular reads
it); the parts several endpoints share are in conversations.openapi.
"""

import functools
import uuid
from datetime import UTC, datetime
from typing import Any, cast

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conversations.idempotency import idempotent_response
from conversations.models import TITLE_MAX_CHARS, ToolCall
from conversations.openapi import (
    error_responses,
    idempotency_key_parameter,
    response_headers,
    user_id_parameter,
)
from conversations.selectors import (
    ConversationCursor,
    ConversationPage,
    ConversationRow,
    MessagePage,
    MessageRow,
    conversation_get_for_owner,
    conversation_latest_for_owner,
    conversation_page,
    cursor_decode,
    message_page,
)
from conversations.serializers import (
    ChatOutputSerializer,
    ConversationLatestOutputSerializer,
    ConversationOutputSerializer,
    ConversationPageOutputSerializer,
    ConversationsDeletedOutputSerializer,
    MessagePageOutputSerializer,
    StrictCharField,
    StrictUUIDField,
)
from conversations.services import (
    ChatExchange,
    chat_message_send,
    conversation_rename,
    conversations_delete,
)
from conversations.streaming import (
    CONTENT_TYPE,
    chat_stream_response,
    event_stream_response,
    reply_in_progress,
)
from core.exceptions import NotFoundError

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
DEFAULT_CONVERSATION_PAGE_SIZE = 20
MAX_CONVERSATION_PAGE_SIZE = 100


def owner_from_path(request: Request, user_id: str) -> str:
    """The session's user id, if the path names it; 404 otherwise.

    Another user's id answers exactly like a missing resource, so existence
    is never revealed.
    """
    if user_id != request.user.id:
        raise NotFoundError()
    return user_id


def conversation_uuid(value: str) -> uuid.UUID:
    """The path's conversation id; a malformed one is a 404 like any unknown
    conversation."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFoundError() from None


# Output as plain dicts, in the shapes of conversations.serializers' output
# serializers (which document them in the OpenAPI schema): the same JSON
# for a fraction of the CPU (docs/PERFORMANCE.md).


def datetime_out(value: datetime) -> str:
    """ISO 8601 in UTC with "Z": what DRF's DateTimeField renders with
    TIME_ZONE = "UTC" (tests/views/test_output.py checks they agree), without its
    per-value settings and time zone lookups, a large share of a page's CPU
    (docs/PERFORMANCE.md)."""
    return value.astimezone(UTC).isoformat()[:-6] + "Z"


def message_out(message: MessageRow, conversation_id: str) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "conversation_id": conversation_id,
        "role": message.role,
        "content": message.content,
        "created_at": datetime_out(message.created_at),
        "tool_calls": message.tool_calls,
    }


def tool_call_out(call: ToolCall) -> dict[str, Any]:
    return {
        "id": str(call.id),
        "tool_name": str(call.tool_name),
        "parameters": call.parameters,
        "result": call.result,
        "status": str(call.status),
    }


def chat_out(exchange: ChatExchange) -> dict[str, Any]:
    return {
        "conversation_id": str(exchange.conversation_id),
        "response": exchange.assistant_message.content,
        "user_message_id": str(exchange.user_message.id),
        "assistant_message_id": str(exchange.assistant_message.id),
        "tool_calls": [tool_call_out(call) for call in exchange.tool_calls],
    }


def chat_send(owner_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """Send the validated chat request; the body of the 200 answer."""
    exchange = chat_message_send(
        owner_id=owner_id,
        content=data["message"],
        conversation_id=data.get("conversation_id"),
    )
    return chat_out(exchange)


def conversation_out(conversation: ConversationRow) -> dict[str, Any]:
    return {
        "conversation_id": str(conversation.id),
        "title": conversation.title,
        "created_at": datetime_out(conversation.created_at),
        "updated_at": datetime_out(conversation.updated_at),
        "message_count": conversation.message_count,
    }


NO_CONVERSATION = {
    "conversation_id": None,
    "title": None,
    "created_at": None,
    "updated_at": None,
    "message_count": 0,
}


def conversation_page_out(page: ConversationPage) -> dict[str, Any]:
    return {
        "conversations": [conversation_out(c) for c in page.conversations],
        "has_more": page.has_more,
        "next_cursor": page.next_cursor,
    }


def message_page_out(page: MessagePage) -> dict[str, Any]:
    conversation = str(page.conversation_id)
    return {
        "conversation_id": conversation,
        "messages": [message_out(message, conversation) for message in page.messages],
        "has_more": page.has_more,
        "next_before": str(page.next_before) if page.next_before else None,
    }


class ChatView(APIView):
    throttle_scope = "chat"

    @extend_schema_serializer(component_name="ChatRequest")
    class InputSerializer(serializers.Serializer):
        # Stored exactly as sent: no trimming. DRF's CharField already
        # refuses NUL characters and lone surrogates (neither can be stored).
        # The schema's limits and field descriptions come from
        # conversations.openapi.postprocess_chat_request.
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
        tags=["chat"],
        request=InputSerializer,
        parameters=[
            user_id_parameter(),
            idempotency_key_parameter(),
            *response_headers(replayable=(200, 502, 504)),
        ],
        responses={
            200: OpenApiResponse(
                ChatOutputSerializer, description="The assistant's reply."
            ),
            **error_responses(
                400, 401, 403, 404, 409, 413, 415, 422, 429, 502, 503, 504
            ),
        },
    )
    def post(self, request: Request, user_id: str) -> Response:
        """Stores the user's message (in a new conversation when
        `conversation_id` is absent or null) and commits it before the
        assistant runs, then stores and returns the assistant's reply with
        the tools it called. `conversation_id` and `response` are the
        contract; the other keys are additions. When the assistant fails
        (502) or takes too long (504) the user's message stays stored and
        nothing else is."""
        owner_id = owner_from_path(request, user_id)
        return idempotent_response(
            request,
            owner_id=owner_id,
            payload=self.InputSerializer(data=request.data),
            run=functools.partial(chat_send, owner_id),
        )


class EventStreamView(APIView):
    """A view whose success is an event stream and whose errors are JSON.

    A client that accepts only `text/event-stream` (an EventSource, say)
    still gets its errors as JSON rather than a 406.
    """

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        return super().perform_content_negotiation(request, force=True)


def ui_message_text(message: dict[str, Any], field: str) -> str:
    """The text of an AI SDK UIMessage: its `text` parts, joined."""
    role = message.get("role", "user")
    parts = message.get("parts")
    if role != "user":
        raise serializers.ValidationError(
            {field: ["The last message must be the user's."]}, code="invalid"
        )
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise serializers.ValidationError(
            {field: ["A message needs a list of parts."]}, code="invalid"
        )
    texts = [part.get("text") for part in parts if part.get("type") == "text"]
    if not all(isinstance(text, str) for text in texts):
        raise serializers.ValidationError(
            {field: ["A text part's text must be a string."]}, code="invalid"
        )
    return "".join(cast(list[str], texts))


class ChatStreamView(EventStreamView):
    throttle_scope = "chat"

    @extend_schema_serializer(component_name="ChatStreamRequest")
    class InputSerializer(serializers.Serializer):
        # Either CONTRACT §2's request (`message` a string) or the AI SDK's
        # (`id` and `messages`, or `id` and `message` a UIMessage).
        message = serializers.JSONField(
            required=False,
            help_text="The message's text; or, with `id`, the AI SDK's "
            "UIMessage (its `text` parts are the message).",
        )
        conversation_id = StrictUUIDField(required=False, allow_null=True)
        id = StrictUUIDField(
            required=False,
            allow_null=True,
            help_text="The AI SDK's chat id: the conversation. One of the "
            "user's continues; an id no conversation has starts one with it.",
        )
        messages = serializers.ListField(
            child=serializers.DictField(),
            required=False,
            allow_empty=False,
            help_text="The AI SDK's UIMessages: only the last one is read, "
            "the stored history is the truth.",
        )
        trigger = serializers.ChoiceField(
            choices=["submit-message"],
            required=False,
            help_text="The AI SDK's trigger; only `submit-message`.",
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            message = attrs.get("message")
            if isinstance(message, dict) or (
                "messages" in attrs and "message" not in attrs
            ):
                field = "message" if isinstance(message, dict) else "messages"
                last = message if isinstance(message, dict) else attrs["messages"][-1]
                text = ui_message_text(last, field)
                conversation_id = attrs.get("id")
                create_missing = True
            else:
                field, text = "message", cast(str, message)
                conversation_id = attrs.get("conversation_id")
                create_missing = False
            checked = ChatView.InputSerializer(
                data={} if text is None else {"message": text}
            )
            if not checked.is_valid():
                raise serializers.ValidationError({field: checked.errors["message"]})
            return {
                "message": checked.validated_data["message"],
                "conversation_id": conversation_id,
                "create_missing": create_missing,
            }

    @extend_schema(
        operation_id="chat_stream",
        summary="Send a message; get the reply as it is written (AI SDK stream)",
        tags=["chat"],
        request=InputSerializer,
        parameters=[
            user_id_parameter(),
            idempotency_key_parameter(),
            *response_headers(replayable=(200,)),
        ],
        responses={
            (200, CONTENT_TYPE): OpenApiResponse(
                OpenApiTypes.STR,
                description="The Vercel AI SDK's UI message stream (v1): "
                "`data: <json>` events `start`, tool calls, text, `finish`, "
                "then `data: [DONE]`; an `error` event when the assistant "
                "fails or times out. See docs/STREAMING.md.",
            ),
            **error_responses(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
        },
    )
    def post(self, request: Request, user_id: str) -> StreamingHttpResponse:
        """The chat of `POST .../chat`, answered as a stream that the AI
        SDK's `useChat` (`DefaultChatTransport`) reads as it is. The user's
        message is committed before the first byte; the reply and its tool
        calls are stored at the end, also when the client went away. The
        body is this API's chat request or the AI SDK's (`id`, `messages`,
        `trigger`). Errors before the stream starts are the usual JSON."""
        owner_id = owner_from_path(request, user_id)
        return chat_stream_response(
            request,
            owner_id=owner_id,
            payload=self.InputSerializer(data=request.data),
            body=chat_out,
        )


class ChatStreamResumeView(EventStreamView):
    throttle_scope = "read"

    @extend_schema(
        operation_id="chat_stream_resume",
        summary="Resume the reply being streamed in a conversation",
        tags=["chat"],
        parameters=[
            user_id_parameter(),
            OpenApiParameter(
                "conversation_id",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                description="The conversation (the AI SDK's chat id).",
            ),
            *response_headers(),
        ],
        responses={
            (200, CONTENT_TYPE): OpenApiResponse(
                OpenApiTypes.STR,
                description="The reply in progress, from its first event, "
                "then live to its end.",
            ),
            204: OpenApiResponse(description="No reply is being streamed there."),
            **error_responses(401, 404, 429, 503),
        },
    )
    def get(
        self, request: Request, user_id: str, conversation_id: str
    ) -> HttpResponse | StreamingHttpResponse:
        """What `useChat({resume: true})` calls: while a reply in this
        conversation is being streamed, that stream from its start, then
        live; otherwise 204, also for an unknown, someone else's or
        malformed conversation id."""
        owner_id = owner_from_path(request, user_id)
        chunks = reply_in_progress(owner_id=owner_id, conversation_id=conversation_id)
        if chunks is None:
            return HttpResponse(status=204)
        return event_stream_response(chunks)


class ConversationLatestView(APIView):
    throttle_scope = "read"

    @extend_schema(
        operation_id="conversation_latest",
        summary="The user's most recently updated conversation",
        tags=["conversations"],
        parameters=[user_id_parameter(), *response_headers()],
        responses={
            200: OpenApiResponse(
                ConversationLatestOutputSerializer,
                description="The latest conversation, or nulls (and 0).",
            ),
            **error_responses(401, 404, 429, 503),
        },
    )
    def get(self, request: Request, user_id: str) -> Response:
        """The user's most recently updated conversation, as the list shows
        it (title, message count); when the user has none, every field is
        null and `message_count` is 0."""
        owner_id = owner_from_path(request, user_id)
        conversation = conversation_latest_for_owner(owner_id=owner_id)
        if conversation is None:
            return Response(dict(NO_CONVERSATION))
        return Response(conversation_out(conversation))

    @extend_schema(
        operation_id="conversations_delete_all",
        summary="Delete all of the user's conversations",
        tags=["conversations"],
        parameters=[user_id_parameter(), *response_headers()],
        responses={
            200: OpenApiResponse(
                ConversationsDeletedOutputSerializer,
                description="How many conversations were deleted (0 when none).",
            ),
            **error_responses(401, 403, 404, 429, 503),
        },
    )
    def delete(self, request: Request, user_id: str) -> Response:
        """Deletes every conversation of the user, with their messages and
        tool calls, in one transaction. A reply the assistant was writing in
        one of them is dropped: its chat request answers 404."""
        owner_id = owner_from_path(request, user_id)
        deleted = conversations_delete(owner_id=owner_id)
        return Response({"deleted": deleted})


def conversation_id_parameter() -> OpenApiParameter:
    # A string, not format uuid: a malformed id is a 404 like any other
    # unknown conversation, not a 400.
    return OpenApiParameter(
        "conversation_id",
        OpenApiTypes.STR,
        OpenApiParameter.PATH,
        description=(
            "The conversation's id (a UUID). A malformed, unknown or "
            "another user's id answers 404."
        ),
    )


@extend_schema_field(OpenApiTypes.STR)
class CursorField(serializers.Field):
    """A `next_cursor` of the conversation list, decoded; anything else,
    blank included, is 400 `invalid_cursor`."""

    default_error_messages = {
        "invalid_cursor": "Not a cursor of this list: pass `next_cursor` as is."
    }

    def to_internal_value(self, data: Any) -> ConversationCursor:
        try:
            return cursor_decode(str(data))
        except ValueError:
            self.fail("invalid_cursor")

    def to_representation(self, value: Any) -> str:
        return str(value)


class ConversationListView(APIView):
    throttle_scope = "read"

    class FilterSerializer(serializers.Serializer):
        # A plain dict, not the QueryDict, as in MessageListView.
        limit = serializers.IntegerField(
            min_value=1,
            max_value=MAX_CONVERSATION_PAGE_SIZE,
            default=DEFAULT_CONVERSATION_PAGE_SIZE,
            help_text=(
                f"Page size, 1 to {MAX_CONVERSATION_PAGE_SIZE} (default "
                f"{DEFAULT_CONVERSATION_PAGE_SIZE}). Anything else answers 400."
            ),
        )
        cursor = CursorField(
            required=False,
            help_text=(
                "The `next_cursor` of the previous page, as is: the next "
                "page. Opaque; anything else answers 400 `invalid_cursor`."
            ),
        )

    @extend_schema(
        operation_id="conversation_list",
        summary="A page of the user's conversations, most recently updated first",
        tags=["conversations"],
        parameters=[user_id_parameter(), FilterSerializer, *response_headers()],
        responses={
            200: OpenApiResponse(
                ConversationPageOutputSerializer, description="A page of conversations."
            ),
            **error_responses(400, 401, 404, 429, 503),
        },
    )
    def get(self, request: Request, user_id: str) -> Response:
        """The user's conversations, most recently updated first (ties:
        higher id first), a page at a time: pass `next_cursor` as `cursor`
        until `has_more` is false. Walking the pages of a list that does not
        change meanwhile gives every conversation exactly once."""
        owner_id = owner_from_path(request, user_id)
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        page = conversation_page(owner_id=owner_id, **filters.validated_data)
        return Response(conversation_page_out(page))


class ConversationDetailView(APIView):
    throttle_scope = "read"

    @extend_schema_serializer(component_name="ConversationUpdate")
    class InputSerializer(serializers.Serializer):
        title = StrictCharField(
            max_length=TITLE_MAX_CHARS,
            help_text=(
                "The new title: trimmed, then 1 to "
                f"{TITLE_MAX_CHARS} characters, else 400. It is never replaced "
                "by one made from a message."
            ),
        )

    @extend_schema(
        operation_id="conversation_get",
        summary="One of the user's conversations",
        tags=["conversations"],
        parameters=[
            user_id_parameter(),
            conversation_id_parameter(),
            *response_headers(),
        ],
        responses={
            200: OpenApiResponse(
                ConversationOutputSerializer, description="The conversation."
            ),
            **error_responses(401, 404, 429, 503),
        },
    )
    def get(self, request: Request, user_id: str, conversation_id: str) -> Response:
        """The conversation, with its title and message count."""
        owner_id = owner_from_path(request, user_id)
        conversation = conversation_get_for_owner(
            owner_id=owner_id, conversation_id=conversation_uuid(conversation_id)
        )
        return Response(conversation_out(conversation))

    @extend_schema(
        operation_id="conversation_rename",
        summary="Rename one of the user's conversations",
        tags=["conversations"],
        request=InputSerializer,
        parameters=[
            user_id_parameter(),
            conversation_id_parameter(),
            *response_headers(),
        ],
        responses={
            200: OpenApiResponse(
                ConversationOutputSerializer, description="The renamed conversation."
            ),
            **error_responses(400, 401, 403, 404, 413, 415, 429, 503),
        },
    )
    def patch(self, request: Request, user_id: str, conversation_id: str) -> Response:
        """Sets the conversation's title, trimmed. `updated_at` does not
        change: it moves only when a message is stored, so renaming leaves
        the order of the list and the latest conversation as they were."""
        owner_id = owner_from_path(request, user_id)
        conversation = conversation_uuid(conversation_id)
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        conversation_rename(
            owner_id=owner_id,
            conversation_id=conversation,
            title=payload.validated_data["title"],
        )
        renamed = conversation_get_for_owner(
            owner_id=owner_id, conversation_id=conversation
        )
        return Response(conversation_out(renamed))

    @extend_schema(
        operation_id="conversation_delete",
        summary="Delete one of the user's conversations",
        tags=["conversations"],
        parameters=[
            user_id_parameter(),
            conversation_id_parameter(),
            *response_headers(),
        ],
        responses={
            204: OpenApiResponse(description="Deleted."),
            **error_responses(401, 403, 404, 429, 503),
        },
    )
    def delete(self, request: Request, user_id: str, conversation_id: str) -> Response:
        """Deletes the conversation with its messages and tool calls, in one
        transaction. It then appears nowhere, its messages answer 404, and
        so does a chat message sent to it (nothing is stored). A reply the
        assistant was writing in it is dropped: its chat request answers
        404. Deleting again answers 404."""
        owner_id = owner_from_path(request, user_id)
        deleted = conversations_delete(
            owner_id=owner_id, conversation_id=conversation_uuid(conversation_id)
        )
        if not deleted:
            raise NotFoundError()
        return Response(status=204)


class MessageListView(APIView):
    throttle_scope = "read"

    class FilterSerializer(serializers.Serializer):
        # Fed a plain dict, not the QueryDict: DRF reads a blank value in a
        # QueryDict as "absent", and `?limit=` is a client error, not 100.
        limit = serializers.IntegerField(
            min_value=1,
            max_value=MAX_PAGE_SIZE,
            default=DEFAULT_PAGE_SIZE,
            help_text=(
                f"Page size, 1 to {MAX_PAGE_SIZE}; without it the newest "
                f"{DEFAULT_PAGE_SIZE} messages. Anything else answers 400."
            ),
        )
        before = StrictUUIDField(
            required=False,
            help_text=(
                "A message id: the page of messages just older than it (pass "
                "`next_before`). An id that is not a UUID answers 400."
            ),
        )

    @extend_schema(
        operation_id="message_list",
        summary="A page of a conversation's messages, oldest first",
        tags=["conversations"],
        parameters=[
            user_id_parameter(),
            conversation_id_parameter(),
            FilterSerializer,
            *response_headers(),
        ],
        responses={
            200: OpenApiResponse(
                MessagePageOutputSerializer, description="A page of messages."
            ),
            **error_responses(400, 401, 404, 429, 503),
        },
    )
    def get(self, request: Request, user_id: str, conversation_id: str) -> Response:
        """Messages oldest first, in the order they were stored, each with
        the tool calls the assistant made for it. Without parameters the
        newest page; walk back by passing `next_before` as `before` until
        `has_more` is false. A page also stops early, newest messages kept
        and `has_more` true, rather than pass MESSAGES_PAGE_MAX_BYTES of
        JSON (1 MiB by default); it always holds at least one message."""
        owner_id = owner_from_path(request, user_id)
        conversation = conversation_uuid(conversation_id)
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        page = message_page(
            owner_id=owner_id,
            conversation_id=conversation,
            **filters.validated_data,
        )
        return Response(message_page_out(page))
