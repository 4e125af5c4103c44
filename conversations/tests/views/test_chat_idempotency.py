"""POST chat with `Idempotency-Key`: a repeat gets the first answer and
stores nothing; another body under the key is 422; a repeat while the
first still runs is 409; keys are per user and expire after 24 hours."""

import datetime as dt
import io
import threading
from collections.abc import Callable, Iterator
from typing import Any

from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import pytest
from pytest_django import Settings
from rest_framework.test import APIClient

from agent.tests.fakes import RecordingAgent, SlowAgent
from better_auth.models import BetterAuthSession
from better_auth.tests.factories import BetterAuthSessionFactory
from conversations.idempotency import (
    IDEMPOTENCY_KEY_TTL,
    idempotency_keys_purge,
    request_fingerprint,
)
from conversations.models import IdempotencyKey
from conversations.tests.factories import ConversationFactory
from conversations.tests.paths import chat_url

pytestmark = pytest.mark.django_db

KEY = "3f0c7a8e-5b1d-4c36-9f0e-2d7a1b9c4e51"
# The fixtures of conversations/tests/conftest.py.
RowCounts = Callable[[], tuple[int, int, int]]
AssertError = Callable[[Any, int, str], dict[str, Any]]


@pytest.fixture(autouse=True)
def recording_agent(settings: Settings) -> Iterator[type[RecordingAgent]]:
    settings.AGENT_BACKEND = "agent.tests.fakes.RecordingAgent"
    RecordingAgent.reset()
    yield RecordingAgent
    RecordingAgent.reset()


def send(
    api: APIClient, session: BetterAuthSession, payload: Any, key: str | None = KEY
) -> Any:
    headers = {} if key is None else {"Idempotency-Key": key}
    return api.post(chat_url(session.user_id), payload, format="json", headers=headers)


def test_repeat_returns_the_first_response_and_stores_nothing(
    api: APIClient, session: BetterAuthSession, row_counts: RowCounts
) -> None:
    first = send(api, session, {"message": "add milk"})
    counts = row_counts()

    repeat = send(api, session, {"message": "add milk"})

    assert first.status_code == repeat.status_code == 200
    assert repeat.json() == first.json()
    assert repeat.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert row_counts() == counts
    assert len(RecordingAgent.calls) == 1


def test_repeat_of_a_new_conversation_does_not_start_another(
    api: APIClient, session: BetterAuthSession, row_counts: RowCounts
) -> None:
    first = send(api, session, {"message": "hi", "conversation_id": None})
    repeat = send(api, session, {"message": "hi"})  # absent == null

    assert repeat.json()["conversation_id"] == first.json()["conversation_id"]
    assert row_counts()[0] == 1


def test_repeat_with_json_spelled_differently_is_the_same_request(
    api: APIClient, session: BetterAuthSession
) -> None:
    conversation = ConversationFactory.create(owner_id=session.user_id)
    url = chat_url(session.user_id)
    headers = {"Idempotency-Key": KEY}
    api.post(
        url,
        f'{{"message": "hi", "conversation_id": "{conversation.id}"}}',
        content_type="application/json",
        headers=headers,
    )

    repeat = api.post(
        url,
        f'{{"conversation_id":"{str(conversation.id).upper()}","message":"hi","x":1}}',
        content_type="application/json",
        headers=headers,
    )

    assert repeat.status_code == 200
    assert repeat.headers["Idempotent-Replayed"] == "true"
    assert len(RecordingAgent.calls) == 1


@pytest.mark.parametrize(
    "other",
    [
        pytest.param({"message": "add bread"}, id="other-message"),
        pytest.param({"message": "add milk "}, id="trailing-space"),
        pytest.param(
            {"message": "add milk", "conversation_id": "new"}, id="other-conversation"
        ),
    ],
)
def test_same_key_with_another_body_is_422_and_stores_nothing(
    api: APIClient,
    session: BetterAuthSession,
    other: dict[str, Any],
    row_counts: RowCounts,
    assert_error: AssertError,
) -> None:
    first = send(api, session, {"message": "add milk"})
    if other.get("conversation_id") == "new":
        other["conversation_id"] = str(
            ConversationFactory.create(owner_id=session.user_id).id
        )
    counts = row_counts()

    response = send(api, session, other)

    assert_error(response, 422, "idempotency_key_reused")
    assert row_counts() == counts
    # The key still answers its own request.
    assert send(api, session, {"message": "add milk"}).json() == first.json()


def test_keys_belong_to_one_user(api: APIClient, session: BetterAuthSession) -> None:
    other = BetterAuthSessionFactory.create()
    other_api = APIClient()
    other_api.credentials(HTTP_AUTHORIZATION=f"Bearer {other.token}")

    mine = send(api, session, {"message": "add milk"})
    theirs = send(other_api, other, {"message": "add milk"})

    assert theirs.status_code == 200
    assert theirs.json()["conversation_id"] != mine.json()["conversation_id"]
    assert "Idempotent-Replayed" not in theirs.headers


def test_repeat_while_the_first_runs_is_409(
    api: APIClient,
    session: BetterAuthSession,
    row_counts: RowCounts,
    assert_error: AssertError,
) -> None:
    IdempotencyKey.objects.create(
        owner_id=session.user_id,
        key=KEY,
        fingerprint=request_fingerprint(
            owner_id=session.user_id, message="add milk", conversation_id=None
        ),
        created_at=timezone.now(),
    )
    counts = row_counts()

    response = send(api, session, {"message": "add milk"})

    assert_error(response, 409, "idempotency_key_in_progress")
    assert row_counts() == counts


def test_a_run_abandoned_long_ago_is_taken_over(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> None:
    # The process that claimed the key died before finishing.
    IdempotencyKey.objects.create(
        owner_id=session.user_id,
        key=KEY,
        fingerprint="whatever it was",
        created_at=timezone.now()
        - dt.timedelta(seconds=2 * settings.AGENT_TIMEOUT_SECONDS + 61),
    )

    response = send(api, session, {"message": "add milk"})

    assert response.status_code == 200
    assert len(RecordingAgent.calls) == 1


def test_a_key_expires_after_24_hours(
    api: APIClient, session: BetterAuthSession
) -> None:
    send(api, session, {"message": "add milk"})
    IdempotencyKey.objects.update(created_at=timezone.now() - IDEMPOTENCY_KEY_TTL)

    again = send(api, session, {"message": "add milk"})

    assert again.status_code == 200
    assert "Idempotent-Replayed" not in again.headers
    assert len(RecordingAgent.calls) == 2


def test_purge_deletes_only_expired_keys(
    api: APIClient, session: BetterAuthSession
) -> None:
    send(api, session, {"message": "old"}, key="old")
    send(api, session, {"message": "new"}, key="new")
    IdempotencyKey.objects.filter(key="old").update(
        created_at=timezone.now() - IDEMPOTENCY_KEY_TTL - dt.timedelta(seconds=1)
    )

    assert idempotency_keys_purge() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]


def test_agent_failure_is_replayed_not_rerun(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    row_counts: RowCounts,
    assert_error: AssertError,
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.FailingAgent"
    first = send(api, session, {"message": "add milk"})
    counts = row_counts()
    settings.AGENT_BACKEND = "agent.tests.fakes.RecordingAgent"

    repeat = send(api, session, {"message": "add milk"})

    assert_error(first, 502, "agent_error")
    assert repeat.status_code == 502
    assert repeat.json() == first.json()
    # The user's message was stored once; a new message needs a new key.
    assert row_counts() == counts
    assert RecordingAgent.calls == []


def test_failure_that_stored_nothing_releases_the_key(
    api: APIClient, session: BetterAuthSession
) -> None:
    missing = {
        "message": "hi",
        "conversation_id": "6c1f0d3e-0000-4000-8000-000000000000",
    }

    first = send(api, session, missing)
    second = send(api, session, missing)

    assert first.status_code == second.status_code == 404
    assert "Idempotent-Replayed" not in second.headers
    assert not IdempotencyKey.objects.exists()


def test_invalid_body_claims_no_key(
    api: APIClient, session: BetterAuthSession, assert_error: AssertError
) -> None:
    refused = send(api, session, {"message": ""})

    accepted = send(api, session, {"message": "add milk"})

    assert_error(refused, 400, "blank")
    assert accepted.status_code == 200


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("k" * 256, id="too-long"),
        pytest.param("clé", id="not-ascii"),
        pytest.param("a\tb", id="control-character"),
    ],
)
def test_malformed_key_is_400_and_stores_nothing(
    api: APIClient,
    session: BetterAuthSession,
    key: str,
    row_counts: RowCounts,
    assert_error: AssertError,
) -> None:
    response = send(api, session, {"message": "hi"}, key=key)

    body = assert_error(response, 400, "invalid")
    assert list(body["errors"]) == ["Idempotency-Key"]
    assert row_counts() == (0, 0, 0)
    assert not IdempotencyKey.objects.exists()


def test_longest_key_is_accepted(api: APIClient, session: BetterAuthSession) -> None:
    assert send(api, session, {"message": "hi"}, key="k" * 255).status_code == 200


@pytest.mark.postgresql
def test_without_the_header_nothing_changes(
    api: APIClient, session: BetterAuthSession, row_counts: RowCounts
) -> None:
    with CaptureQueriesContext(connection) as queries:
        first = send(api, session, {"message": "add milk"}, key=None)
    second = send(api, session, {"message": "add milk"}, key=None)

    assert first.status_code == second.status_code == 200
    table = IdempotencyKey._meta.db_table
    assert [q["sql"] for q in queries.captured_queries if table in q["sql"]] == []
    assert row_counts()[0] == 2
    assert not IdempotencyKey.objects.exists()


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_duplicate_arriving_during_the_first_gets_409_then_the_replay(
    settings: Settings,
    row_counts: RowCounts,
    assert_error: AssertError,
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.SlowAgent"
    SlowAgent.reset()
    SlowAgent.delay = 1.5
    session = BetterAuthSessionFactory.create()

    def client() -> APIClient:
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {session.token}")
        return api

    results: dict[str, Any] = {}

    def send_first() -> None:
        try:
            results["first"] = send(client(), session, {"message": "add milk"})
        finally:
            connection.close()

    first = threading.Thread(target=send_first)
    first.start()
    while not IdempotencyKey.objects.exists():  # the first has claimed the key
        threading.Event().wait(0.01)
    during = send(client(), session, {"message": "add milk"})
    first.join()
    after = send(client(), session, {"message": "add milk"})

    assert_error(during, 409, "idempotency_key_in_progress")
    assert results["first"].status_code == 200
    assert after.json() == results["first"].json()
    assert row_counts()[1] == 2


def test_purge_command_reports_what_it_deleted(
    api: APIClient, session: BetterAuthSession
) -> None:
    send(api, session, {"message": "old"}, key="old")
    IdempotencyKey.objects.update(created_at=timezone.now() - IDEMPOTENCY_KEY_TTL)
    out = io.StringIO()

    call_command("purge_idempotency_keys", stdout=out)

    assert out.getvalue() == "Deleted 1 expired idempotency key(s).\n"
    assert not IdempotencyKey.objects.exists()


def test_repeat_after_the_users_data_is_erased_runs_as_new(
    api: APIClient, session: BetterAuthSession
) -> None:
    """The erasure deletes the stored response with the conversation: the
    repeat must not hand the erased reply back."""
    first = send(api, session, {"message": "add milk"})
    call_command("delete_user_data", session.user_id, "--yes", stdout=io.StringIO())

    repeat = send(api, session, {"message": "add milk"})

    assert first.status_code == repeat.status_code == 200
    assert "Idempotent-Replayed" not in repeat.headers
    assert repeat.json()["conversation_id"] != first.json()["conversation_id"]
    assert len(RecordingAgent.calls) == 2
    # The new run's answer is what a further repeat gets.
    again = send(api, session, {"message": "add milk"})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == repeat.json()
