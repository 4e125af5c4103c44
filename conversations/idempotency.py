"""Idempotent sends: `Idempotency-Key` on POST chat.

A client that did not hear back (a phone losing its connection, a double
click) sends the same request again with the same key. The first request
to claim a key runs; a repeat with the same body gets the first one's
answer, stored in the database so every worker agrees; a repeat while the
first still runs gets 409; the same key with another body gets 422. Keys
belong to one user and expire after IDEMPOTENCY_KEY_TTL.

Stored outcomes are the ones after which running again would store the
user's message twice: 200, and the agent's failures (502, 504), whose user
message is already committed. Any other failure (the conversation does not
exist, the database is down) releases the key, so a retry runs.

`idempotent_response` is the whole flow for a view; the functions below it
are its steps.
"""

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from agent.exceptions import AgentError
from conversations.models import IdempotencyKey
from core.exceptions import ApplicationError, InvalidInputError

IDEMPOTENCY_KEY_TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255


class IdempotencyKeyInProgress(ApplicationError):
    status_code = 409
    code = "idempotency_key_in_progress"
    default_detail = (
        "A request with this Idempotency-Key is still being processed; "
        "retry in a moment."
    )


class IdempotencyKeyReused(ApplicationError):
    status_code = 422
    code = "idempotency_key_reused"
    default_detail = (
        "This Idempotency-Key was used with a different request; "
        "use a new key for a new message."
    )


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: dict[str, Any]


def idempotent_response(
    request: Request,
    *,
    owner_id: str,
    payload: serializers.Serializer,
    run: Callable[[dict[str, Any]], dict[str, Any]],
) -> Response:
    """`run(validated payload)` as a 200, once per `Idempotency-Key`.

    Without the header, validates `payload` and runs. With it, checks the
    key first (a bad key answers 400 whatever the body), then the body,
    then claims the key: a stored answer is replayed with
    `Idempotent-Replayed: true`; otherwise the run's 200 or AgentError is
    stored for repeats, and any other failure releases the key.
    """
    data, claim = idempotency_request_claim(request, owner_id=owner_id, payload=payload)
    if isinstance(claim, StoredResponse):
        return Response(claim.body, status=claim.status, headers=REPLAYED)
    if claim is None:
        return Response(run(data))
    try:
        body = run(data)
    except AgentError as exc:
        idempotency_key_fail(claim, exc)
        raise
    except BaseException:
        idempotency_key_release(claim)
        raise
    idempotency_key_finish(claim, status=200, body=body)
    return Response(body)


# The header a replayed answer carries.
REPLAYED = {"Idempotent-Replayed": "true"}


def idempotency_request_claim(
    request: Request, *, owner_id: str, payload: serializers.Serializer
) -> tuple[dict[str, Any], IdempotencyKey | StoredResponse | None]:
    """The first steps of an idempotent send: the validated payload, and
    the claim on the request's `Idempotency-Key` (None without the header).

    Raises InvalidInputError for a bad key (before the body is looked at),
    ValidationError for a bad body, and what idempotency_key_claim raises.
    The payload's validated data must hold `message` (and may hold
    `conversation_id`): they make the request's fingerprint. The caller
    finishes or releases an IdempotencyKey it gets.
    """
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        key = idempotency_key_valid(key)
    payload.is_valid(raise_exception=True)
    data: dict[str, Any] = payload.validated_data
    if key is None:
        return data, None
    fingerprint = request_fingerprint(
        owner_id=owner_id,
        message=data["message"],
        conversation_id=data.get("conversation_id"),
    )
    return data, idempotency_key_claim(
        owner_id=owner_id, key=key, fingerprint=fingerprint
    )


def idempotency_key_valid(value: str) -> str:
    """The header's value, or InvalidInputError: 1-255 printable ASCII."""
    if not 0 < len(value) <= MAX_KEY_LENGTH or not (
        value.isascii() and value.isprintable()
    ):
        raise InvalidInputError(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII "
            "characters.",
            field="Idempotency-Key",
        )
    return value


def request_fingerprint(
    *, owner_id: str, message: str, conversation_id: uuid.UUID | None = None
) -> str:
    """The same request, however its JSON was spelled. Takes the chat
    request's validated fields; an absent conversation_id is null."""
    canonical = json.dumps(
        [owner_id, message, str(conversation_id) if conversation_id else None]
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@transaction.atomic(durable=True)
def idempotency_key_claim(
    *, owner_id: str, key: str, fingerprint: str
) -> IdempotencyKey | StoredResponse:
    """Claim `key` for a new run (the record to finish), or return the
    stored response of the run that claimed it.

    Raises IdempotencyKeyReused for another request under the same key and
    IdempotencyKeyInProgress while the first run has not finished. A run
    that has been in progress for longer than any request can take (its
    process died) is taken over, like an expired key.
    """
    now = timezone.now()
    record, created = IdempotencyKey.objects.select_for_update().get_or_create(
        owner_id=owner_id,
        key=key,
        defaults={"fingerprint": fingerprint, "created_at": now},
    )
    if created:
        return record
    abandoned_before = now - timedelta(seconds=2 * settings.AGENT_TIMEOUT_SECONDS + 60)
    if record.created_at <= now - IDEMPOTENCY_KEY_TTL or (
        record.response_status is None and record.created_at <= abandoned_before
    ):
        record.fingerprint = fingerprint
        record.created_at = now
        record.response_status = None
        record.response_body = None
        record.save()
        return record
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    if record.response_status is None:
        raise IdempotencyKeyInProgress()
    return StoredResponse(record.response_status, record.response_body or {})


def idempotency_key_finish(
    record: IdempotencyKey, *, status: int, body: dict[str, Any]
) -> None:
    """Store the outcome that repeats of this request will get (unless the
    claim was taken over meanwhile)."""
    IdempotencyKey.objects.filter(pk=record.pk, created_at=record.created_at).update(
        response_status=status, response_body=body
    )


def idempotency_key_fail(record: IdempotencyKey, exc: AgentError) -> None:
    """Store the agent's failure: the user's message is stored, so a repeat
    must not store it again."""
    idempotency_key_finish(
        record, status=exc.status_code, body={"detail": exc.detail, "code": exc.code}
    )


def idempotency_key_release(record: IdempotencyKey) -> None:
    """Forget a claim whose run stored nothing: a retry will run."""
    IdempotencyKey.objects.filter(
        pk=record.pk, created_at=record.created_at, response_status=None
    ).delete()


def idempotency_keys_purge() -> int:
    """Delete expired keys; returns how many. For a periodic job."""
    deleted, _ = IdempotencyKey.objects.filter(
        created_at__lte=timezone.now() - IDEMPOTENCY_KEY_TTL
    ).delete()
    return deleted
