"""The chat API's shared OpenAPI parts (drf-spectacular), declared once.

The error envelope every error answer carries and what each status means,
the path and header parameters several operations share, and the hook that
adds the chat request's settings-dependent limits. Each operation's own
text is its view's docstring (conversations.views, chatapi.health).
"""

from collections.abc import Iterable
from typing import Any

from django.conf import settings

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    inline_serializer,
)
from rest_framework import serializers

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
        "`unsupported_media_type`: the body is not `application/json`, or "
        "its `Content-Type` declares a charset other than UTF-8.",
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
        "`throttled`: the user's rate limit is used up, or the client's "
        "address has failed authentication too often; `Retry-After` says "
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


def response_headers(*, replayable: Iterable[int] = ()) -> list[OpenApiParameter]:
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
