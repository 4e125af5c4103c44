"""The OpenAPI schema's shared parts (drf-spectacular).

Security schemes for the API's authentication classes, the error envelope
of every error answer, the response components, and the hooks that give
the schema its canonical paths. Views describe their operations with
`@extend_schema` and the pieces defined here; `/api/schema/` serves the
result and `/api/docs/` renders it.
"""

from collections.abc import Iterable
from typing import Any

from django.conf import settings

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers

from conversations.models import MessageRole, ToolCallStatus
from conversations.serializers import MessageOutputSerializer, ToolCallOutputSerializer

# The same scheme names in the schema and in the docs page's "Authorize".
SESSION_BEARER = "sessionBearer"
SESSION_COOKIE = "sessionCookie"
JWT_BEARER = "jwtBearer"


class SessionAuthenticationScheme(OpenApiAuthenticationExtension):
    """Better Auth sessions: a bearer token, or the session cookie."""

    target_class = "conversations.authentication.BetterAuthSessionAuthentication"
    name = [SESSION_BEARER, SESSION_COOKIE]

    def get_security_requirement(
        self, auto_schema: AutoSchema
    ) -> list[dict[str, list[Any]]]:
        # Alternatives (either credential will do), not both at once.
        return [{SESSION_BEARER: []}, {SESSION_COOKIE: []}]

    def get_security_definition(self, auto_schema: AutoSchema) -> list[dict[str, Any]]:
        cookie = f"{settings.BETTER_AUTH_COOKIE_PREFIX}.session_token"
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "Better Auth session token",
                "description": (
                    "`Authorization: Bearer <token>`: the Better Auth session "
                    "token, raw or in the signed form `<token>.<signature>` "
                    "that the bearer plugin hands out in `set-auth-token`. "
                    "Raw tokens are refused when the server requires signed "
                    "ones (`BETTER_AUTH_REQUIRE_SIGNATURE=1`)."
                ),
            },
            {
                "type": "apiKey",
                "in": "cookie",
                "name": cookie,
                "description": (
                    f"Better Auth's session cookie `{cookie}` (or "
                    f"`__Secure-{cookie}`), URL-encoded `<token>.<signature>`, "
                    "sent by the browser. A request that changes state with "
                    "it must come from the frontend's origin (otherwise 403 "
                    "`untrusted_origin`). A bearer credential, when present, "
                    "wins over the cookie."
                ),
            },
        ]


class JWTAuthenticationScheme(OpenApiAuthenticationExtension):
    """Stateless mode: a JWT from Better Auth's JWT plugin."""

    target_class = "conversations.jwt.BetterAuthJWTAuthentication"
    name = JWT_BEARER

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                "`Authorization: Bearer <jwt>` signed by the frontend's "
                "Better Auth JWT plugin, verified with its public keys. "
                "Accepted only when the server is configured for it "
                "(`BETTER_AUTH_JWKS_URL` or `BETTER_AUTH_JWKS_TABLE`)."
            ),
        }


# Every error answer: `detail` for people, `code` for programs. Built
# inline: `errors` is also the name of a serializer's own property.
ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "detail": serializers.CharField(help_text="Human-readable explanation."),
        "code": serializers.CharField(
            help_text="Machine-readable code, e.g. `not_found`, `message_too_long`."
        ),
        "errors": serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()),
            required=False,
            help_text=(
                "Invalid input only: the messages for each field (a body "
                "field, a query parameter or a header; `non_field_errors` "
                "for the body as a whole)."
            ),
        ),
    },
)


@extend_schema_serializer(component_name="ToolCall")
class ToolCallSchemaSerializer(ToolCallOutputSerializer):
    # The output serializer's fields, with the values `status` can take.
    status = serializers.ChoiceField(choices=ToolCallStatus.choices)  # type: ignore[assignment]


@extend_schema_serializer(component_name="Message")
class MessageSchemaSerializer(MessageOutputSerializer):
    # The output serializer's fields, with the values `role` can take.
    role = serializers.ChoiceField(choices=MessageRole.choices)  # type: ignore[assignment]


@extend_schema_serializer(component_name="ChatResponse")
class ChatResponseSerializer(serializers.Serializer):
    conversation_id = serializers.UUIDField(
        help_text="The conversation the message went to (new or continued)."
    )
    response = serializers.CharField(
        allow_blank=True, help_text="The assistant's reply."
    )
    user_message_id = serializers.UUIDField()
    assistant_message_id = serializers.UUIDField()
    tool_calls = ToolCallSchemaSerializer(
        many=True, help_text="The tools the assistant called, in order."
    )


@extend_schema_serializer(component_name="ConversationLatest")
class ConversationLatestSerializer(serializers.Serializer):
    conversation_id = serializers.UUIDField(
        allow_null=True, help_text="Null when the user has no conversation."
    )
    created_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)


@extend_schema_serializer(component_name="MessagePage")
class MessagePageSerializer(serializers.Serializer):
    conversation_id = serializers.UUIDField()
    messages = MessageSchemaSerializer(many=True, help_text="Oldest first.")
    has_more = serializers.BooleanField(help_text="Whether older messages exist.")
    next_before = serializers.UUIDField(
        allow_null=True,
        help_text="Pass as `before` for the next older page; null when none.",
    )


@extend_schema_serializer(component_name="Health")
class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok"])


@extend_schema_serializer(component_name="Ready")
class ReadySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ready"])


# What each operation does, and its successful answer.
CHAT_DESCRIPTION = (
    "Stores the user's message (in a new conversation when `conversation_id` "
    "is absent or null) and commits it before the assistant runs, then "
    "stores and returns the assistant's reply with the tools it called. "
    "`conversation_id` and `response` are the contract; the other keys are "
    "additions. When the assistant fails (502) or takes too long (504) the "
    "user's message stays stored and nothing else is."
)
CHAT_OK = OpenApiResponse(ChatResponseSerializer, description="The assistant's reply.")
CONVERSATION_LATEST_DESCRIPTION = (
    "The user's most recently updated conversation; every field is null when "
    "the user has none."
)
CONVERSATION_LATEST_OK = OpenApiResponse(
    ConversationLatestSerializer, description="The latest conversation, or nulls."
)
MESSAGE_LIST_DESCRIPTION = (
    "Messages oldest first, in the order they were stored. Without "
    "parameters the newest page; walk back by passing `next_before` as "
    "`before` until `has_more` is false."
)
MESSAGE_LIST_OK = OpenApiResponse(
    MessagePageSerializer, description="A page of messages."
)
HEALTH_DESCRIPTION = (
    "Liveness: answers while the process serves requests; touches no "
    "database. No credentials, no rate limit."
)
HEALTH_OK = OpenApiResponse(HealthSerializer, description="The process is up.")
READY_DESCRIPTION = (
    "Readiness: the database answers and every migration is applied. No "
    "credentials, no rate limit."
)
READY_OK = OpenApiResponse(ReadySerializer, description="Ready to serve.")
READY_UNAVAILABLE = OpenApiResponse(
    ErrorSerializer,
    description=(
        "`database_unavailable`: the database does not answer; "
        "`migrations_pending`: migrations are not all applied."
    ),
    examples=[
        OpenApiExample(
            "migrations_pending",
            value={
                "detail": "Migrations are not applied.",
                "code": "migrations_pending",
            },
        )
    ],
)

# Statuses that carry the envelope: what each means, and an example body.
ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "Invalid input: a body that is not JSON or not a JSON object, a field, "
        "query parameter or header that fails validation. `code` is the first "
        "problem's (`parse_error`, `required`, `blank`, `invalid`, "
        "`message_too_long`, `null_characters_not_allowed`, …) and `errors` "
        "lists every message by field.",
        {
            "detail": "message: This field may not be blank.",
            "code": "blank",
            "errors": {"message": ["This field may not be blank."]},
        },
    ),
    401: (
        "No credentials, or invalid or expired ones (`not_authenticated`, "
        "`authentication_failed`). Carries `WWW-Authenticate: Bearer`.",
        {"detail": "Invalid or expired session.", "code": "authentication_failed"},
    ),
    403: (
        "`untrusted_origin`: the request was authenticated by the session "
        "cookie and came from a page of another origin than the frontend's.",
        {
            "detail": "Requests authenticated by cookie must come from a "
            "trusted origin.",
            "code": "untrusted_origin",
        },
    ),
    404: (
        "`not_found`: `{user_id}` is not the session's user, or the "
        "conversation does not exist, belongs to someone else or has a "
        "malformed id. The answer is the same in every case, so existence "
        "is never revealed.",
        {"detail": "Not found.", "code": "not_found"},
    ),
    409: (
        "`idempotency_key_in_progress`: a request with this `Idempotency-Key` "
        "is still running; retry in a moment.",
        {
            "detail": "A request with this Idempotency-Key is still being "
            "processed; retry in a moment.",
            "code": "idempotency_key_in_progress",
        },
    ),
    413: (
        "`request_too_large`: the body is larger than the upload limit.",
        {"detail": "The request body is too large.", "code": "request_too_large"},
    ),
    415: (
        "`unsupported_media_type`: the body is not `application/json`.",
        {
            "detail": 'Unsupported media type "text/plain" in request.',
            "code": "unsupported_media_type",
        },
    ),
    422: (
        "`idempotency_key_reused`: this `Idempotency-Key` was used with "
        "another request; use a new key for a new message.",
        {
            "detail": "This Idempotency-Key was used with a different request; "
            "use a new key for a new message.",
            "code": "idempotency_key_reused",
        },
    ),
    429: (
        "`throttled`: the user's rate limit is used up; `Retry-After` says "
        "how many seconds to wait.",
        {
            "detail": "Request was throttled. Expected available in 12 seconds.",
            "code": "throttled",
        },
    ),
    502: (
        "`agent_error`: the assistant failed. The user's message stays "
        "stored, nothing else is, and the next message works normally.",
        {
            "detail": "The assistant could not answer. Please try again.",
            "code": "agent_error",
        },
    ),
    503: (
        "`database_unavailable`: the database is briefly unreachable; retry "
        "shortly. (`jwks_unavailable`, with `Retry-After`: the keys to verify "
        "a JWT cannot be fetched.)",
        {
            "detail": "The service is briefly unavailable; try again shortly.",
            "code": "database_unavailable",
        },
    ),
    504: (
        "`agent_timeout`: the assistant did not answer within the deadline. "
        "The user's message stays stored; a late reply is dropped.",
        {
            "detail": "The assistant took too long to answer. Please try again.",
            "code": "agent_timeout",
        },
    ),
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """The envelope as the answer of each of `statuses`, described."""
    responses = {}
    for status in statuses:
        description, example = ERRORS[status]
        responses[status] = OpenApiResponse(
            ErrorSerializer,
            description=description,
            examples=[OpenApiExample(example["code"], value=example)],
        )
    return responses


def user_id_parameter() -> OpenApiParameter:
    return OpenApiParameter(
        "user_id",
        OpenApiTypes.STR,
        OpenApiParameter.PATH,
        description=(
            "The session's Better Auth user id (text, not always a UUID). "
            "Any other id answers 404."
        ),
    )


def conversation_id_parameter() -> OpenApiParameter:
    # A string, not format uuid: a malformed id is a 404 like any other
    # unknown conversation, not a 400.
    return OpenApiParameter(
        "conversation_id",
        OpenApiTypes.STR,
        OpenApiParameter.PATH,
        description=(
            "The conversation's id (a UUID). A malformed, unknown or another "
            "user's id answers 404."
        ),
    )


def page_parameters(*, default: int, maximum: int) -> list[OpenApiParameter]:
    return [
        OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
            OpenApiParameter.QUERY,
            description=(
                f"Page size, 1 to {maximum}; without it the newest {default} "
                "messages. Anything else answers 400."
            ),
        ),
        OpenApiParameter(
            "before",
            OpenApiTypes.UUID,
            OpenApiParameter.QUERY,
            description=(
                "A message id: the page of messages just older than it (pass "
                "`next_before`). An id that is not a UUID answers 400."
            ),
        ),
    ]


def idempotency_key_parameter() -> OpenApiParameter:
    return OpenApiParameter(
        "Idempotency-Key",
        {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
        OpenApiParameter.HEADER,
        description=(
            "Optional, 1 to 255 printable ASCII characters. A repeat of a "
            "request with the same key and the same body gets the first "
            "answer again (with `Idempotent-Replayed: true`) instead of "
            "sending the message twice; the same key with another body "
            "answers 422 `idempotency_key_reused`, and a repeat while the "
            "first still runs 409 `idempotency_key_in_progress`. Keys are "
            "per user and expire after 24 hours."
        ),
    )


def response_headers(
    *, authenticated: bool = True, replayable: Iterable[int] = ()
) -> list[OpenApiParameter]:
    """`WWW-Authenticate` on 401 and `Retry-After` on 429 (and on 503 for
    `jwks_unavailable`); `Idempotent-Replayed` on `replayable` statuses."""
    headers = [
        OpenApiParameter(
            "Retry-After",
            OpenApiTypes.INT,
            OpenApiParameter.HEADER,
            response=[429],
            required=True,
            description="Seconds to wait before retrying.",
        ),
    ]
    if authenticated:
        headers += [
            OpenApiParameter(
                "WWW-Authenticate",
                {"type": "string", "enum": ["Bearer"]},
                OpenApiParameter.HEADER,
                response=[401],
                required=True,
                description="Always `Bearer`.",
            ),
        ]
    if replayable:
        headers.append(
            OpenApiParameter(
                "Idempotent-Replayed",
                {"type": "string", "enum": ["true"]},
                OpenApiParameter.HEADER,
                response=list(replayable),
                description=(
                    "Present when this answer is the stored answer of an "
                    "earlier request with the same `Idempotency-Key`."
                ),
            )
        )
    return headers


def preprocess_canonical_paths(
    endpoints: list[tuple[str, str, str, Any]], **kwargs: Any
) -> list[tuple[str, str, str, Any]]:
    """Paths without the optional trailing slash their routes accept."""
    return [
        (path.rstrip("/") or "/", path_regex, method, callback)
        for path, path_regex, method, callback in endpoints
    ]


def postprocess_chat_request(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """The chat request's limits, from settings when the schema is generated,
    and what its fields mean (the view's serializer says neither)."""
    fields = result["components"]["schemas"]["ChatRequest"]["properties"]
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    fields["message"].update(
        minLength=1,
        maxLength=limit,
        description=(
            "The user's message, stored exactly as sent. Blank or white "
            "space only, or holding a NUL character, answers 400; longer "
            f"than {limit} characters 400 `message_too_long`."
        ),
    )
    fields["conversation_id"]["description"] = (
        "The conversation to continue; absent or null starts a new one. "
        "Another user's or an unknown conversation answers 404."
    )
    return result


def postprocess_request_ids(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """`X-Request-ID` on every operation (chatapi.middleware): an optional
    request header, and a response header on every answer."""
    parameter = {
        "in": "header",
        "name": "X-Request-ID",
        "required": False,
        "description": (
            "The client's id for this request, echoed back and logged; "
            "replaced by a new id unless it is 1 to 200 printable ASCII "
            "characters without spaces."
        ),
        "schema": {"type": "string", "pattern": "^[!-~]{1,200}$"},
    }
    header = {
        "description": "The request's id: the client's X-Request-ID or a new one.",
        "schema": {"type": "string"},
        "required": True,
    }
    for path in result["paths"].values():
        for operation in path.values():
            operation.setdefault("parameters", []).append(parameter)
            for response in operation["responses"].values():
                response.setdefault("headers", {})["X-Request-ID"] = header
    return result
