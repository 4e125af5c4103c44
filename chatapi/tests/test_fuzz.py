"""Fuzzing the contract: Schemathesis generates requests from /api/schema/
and sends them, with a valid Better Auth session, through the whole app
(its WSGI handler, every middleware). No answer may be a 5xx or disagree
with the schema (status, content type, headers, body).

Generation is derandomized (the same requests on every run) and keeps no
example database. Most requests name the session's own user and its real
conversations and messages, so they reach the views' code instead of
stopping at a 404.
"""

import time
from collections import Counter
from collections.abc import Callable, Iterator

from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pytest_django import Settings
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from better_auth.models import BetterAuthSession
from better_auth.tests.factories import BetterAuthSessionFactory
from conversations.models import Conversation, Message
from conversations.selectors import ConversationCursor, cursor_encode
from conversations.tests.factories import ConversationFactory, MessageFactory

pytestmark = pytest.mark.slow  # thousands of generated requests

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Generated requests per operation and mode. Operations without inputs
# (the probes) run once: there is nothing to vary.
EXAMPLES = {
    ("POST /api/v1/users/{user_id}/chat", GenerationMode.POSITIVE): 400,
    ("POST /api/v1/users/{user_id}/chat", GenerationMode.NEGATIVE): 150,
    ("POST /api/v1/users/{user_id}/chat/stream", GenerationMode.POSITIVE): 150,
    ("POST /api/v1/users/{user_id}/chat/stream", GenerationMode.NEGATIVE): 100,
    (
        "GET /api/v1/users/{user_id}/chat/stream/{conversation_id}/stream",
        GenerationMode.POSITIVE,
    ): 50,
    ("GET /api/v1/users/{user_id}/conversations", GenerationMode.POSITIVE): 100,
    (
        "GET /api/v1/users/{user_id}/conversations/{conversation_id}/messages",
        GenerationMode.POSITIVE,
    ): 300,
    (
        "GET /api/v1/users/{user_id}/conversations/{conversation_id}/messages",
        GenerationMode.NEGATIVE,
    ): 150,
    ("GET /api/v1/users/{user_id}/conversations/list", GenerationMode.POSITIVE): 150,
    ("GET /api/v1/users/{user_id}/conversations/list", GenerationMode.NEGATIVE): 100,
    (
        "GET /api/v1/users/{user_id}/conversations/{conversation_id}",
        GenerationMode.POSITIVE,
    ): 100,
    (
        "PATCH /api/v1/users/{user_id}/conversations/{conversation_id}",
        GenerationMode.POSITIVE,
    ): 150,
    (
        "PATCH /api/v1/users/{user_id}/conversations/{conversation_id}",
        GenerationMode.NEGATIVE,
    ): 100,
    # Destructive: run last (see DESTRUCTIVE), and fewer.
    (
        "DELETE /api/v1/users/{user_id}/conversations/{conversation_id}",
        GenerationMode.POSITIVE,
    ): 50,
    ("DELETE /api/v1/users/{user_id}/conversations", GenerationMode.POSITIVE): 20,
    ("GET /healthz", GenerationMode.POSITIVE): 1,
    ("GET /readyz", GenerationMode.POSITIVE): 1,
}
MINIMUM_REQUESTS = 1000
# They delete what the other operations read: fuzzed after them, deleting
# everything last.
DESTRUCTIVE = "DELETE"
DELETE_ALL = "DELETE /api/v1/users/{user_id}/conversations"


class Steering:
    """Points most generated ids at the session's own data."""

    def __init__(self, session: BetterAuthSession) -> None:
        self.user_id = session.user_id
        with_messages = ConversationFactory.create(owner_id=self.user_id)
        self.message_ids = [
            str(MessageFactory.create(conversation=with_messages, role=role).id)
            for role in [Message.Role.USER, Message.Role.ASSISTANT] * 3
        ]
        empty = ConversationFactory.create(owner_id=self.user_id)
        self.conversation_ids = [str(with_messages.id), str(empty.id)]
        self.cursors = [
            cursor_encode(ConversationCursor(c.updated_at, c.id))
            for c in (with_messages, empty)
        ]

    def steer(self, case: Case, data: st.DataObject) -> None:
        path = case.path_parameters
        if path is not None and "user_id" in path and self.often(data, 9):
            path["user_id"] = self.user_id
        if path is not None and "conversation_id" in path and self.often(data, 4):
            path["conversation_id"] = data.draw(st.sampled_from(self.conversation_ids))
        query = case.query
        if query is not None and "before" in query and self.often(data, 1):
            query["before"] = data.draw(st.sampled_from(self.message_ids))
        if query is not None and "cursor" in query and self.often(data, 1):
            query["cursor"] = data.draw(st.sampled_from(self.cursors))
        body = case.body
        if isinstance(body, dict) and "conversation_id" in body and self.often(data, 2):
            body["conversation_id"] = data.draw(st.sampled_from(self.conversation_ids))

    @staticmethod
    def often(data: st.DataObject, odds: int) -> bool:
        """True about `odds` times in `odds + 1` (Hypothesis favours 0, the
        simplest value, so 0 steers)."""
        return data.draw(st.integers(0, odds)) < odds


def fuzz(
    operation: APIOperation,
    mode: GenerationMode,
    examples: int,
    steering: Steering,
    headers: dict[str, str],
    statuses: Counter[tuple[str, str, int]],
) -> None:
    """Send `examples` generated requests to `operation`; raise on the first
    answer that fails a check (after Hypothesis has shrunk it)."""

    @hypothesis_settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(generation_mode=mode, headers=headers),
        data=st.data(),
    )
    def send(case: Case, data: st.DataObject) -> None:
        steering.steer(case, data)
        response = case.call()
        statuses[operation.label, mode.value, response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    send()


@pytest.fixture
def app() -> Iterator[WSGIHandler]:
    """The app, as a WSGI server runs it, but keeping the test's database
    connection (and transaction) open between requests, as Django's test
    client does: a WSGI server's requests close it when they end."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.django_db
def test_generated_requests_get_documented_answers_and_no_5xx(
    app: WSGIHandler, settings: Settings, stream_producers: Callable[[], None]
) -> None:
    settings.RATE_LIMIT_CHAT = settings.RATE_LIMIT_READ = "off"
    session = BetterAuthSessionFactory.create()
    steering = Steering(session)
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app)
    credentials = {"Authorization": f"Bearer {session.token}"}
    statuses: Counter[tuple[str, str, int]] = Counter()
    failures: list[str] = []
    started = time.monotonic()

    operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
    # A new operation gets its share of requests here before it is fuzzed.
    assert {label for label, _ in EXAMPLES} == {op.label for op in operations}
    operations.sort(
        key=lambda op: (op.method.upper() == DESTRUCTIVE, op.label == DELETE_ALL)
    )
    conversations_before_deletes = 0
    for operation in operations:
        if operation.method.upper() == DESTRUCTIVE and not conversations_before_deletes:
            conversations_before_deletes = Conversation.objects.filter(
                owner_id=session.user_id
            ).count()
        for mode in GenerationMode:
            examples = EXAMPLES.get((operation.label, mode))
            if examples is None:
                continue
            try:
                fuzz(operation, mode, examples, steering, credentials, statuses)
            except (Exception, FailureGroup) as exc:
                # Every operation runs; all their failures are reported.
                failures.append(f"{operation.label} ({mode.value}):\n{exc}")

    elapsed = time.monotonic() - started
    total = sum(statuses.values())
    summary = "\n".join(
        f"{count:5d}  {status}  {label} ({mode})"
        for (label, mode, status), count in sorted(statuses.items())
    )
    print(f"\n{total} generated requests in {elapsed:.1f}s\n{summary}")  # noqa: T201
    assert not failures, "\n\n".join(failures)
    assert total >= MINIMUM_REQUESTS, summary
    assert not [key for key in statuses if key[2] >= 500], summary
    # The fuzzer reached the real code: conversations and messages stored,
    # pages of real messages read.
    assert statuses["POST /api/v1/users/{user_id}/chat", "positive", 200] > 100
    messages = "GET /api/v1/users/{user_id}/conversations/{conversation_id}/messages"
    assert statuses[messages, "positive", 200] > 100
    assert conversations_before_deletes > 10
    listed = "GET /api/v1/users/{user_id}/conversations/list"
    assert statuses[listed, "positive", 200] > 50
    renamed = "PATCH /api/v1/users/{user_id}/conversations/{conversation_id}"
    assert statuses[renamed, "positive", 200] > 100
    deleted = "DELETE /api/v1/users/{user_id}/conversations/{conversation_id}"
    assert statuses[deleted, "positive", 204] > 0
    assert statuses[DELETE_ALL, "positive", 200] > 0
