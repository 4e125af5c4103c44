"""Statements per request on PostgreSQL, the fast path of conversations.postgres.

The budgets hold on PostgreSQL only; on SQLite the chat runs on the ORM and
the tests check behaviour, not counts. pytest-django counts the statements
Django sends on the test thread's connection. Transaction control is counted
too: inside the test transaction an atomic block shows as SAVEPOINT +
RELEASE, and with real transactions (`transaction=True`) Django logs BEGIN
and COMMIT (test_transaction_control_is_counted proves both), so the budgets
are checked in both kinds of test. Django's per-request `SELECT 1`
connection health check is not counted here (docs/PERFORMANCE.md).
"""

from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

import pytest
from pytest_django import DjangoAssertNumQueries, Settings
from rest_framework.test import APIClient

from agent.tests.scripted_model import ScriptedModel, Text, ToolCalls
from better_auth.models import BetterAuthSession
from conversations import streaming
from conversations.models import Conversation, Message, ToolCall
from conversations.tests.factories import (
    ConversationFactory,
    ToolCallFactory,
    conversation_with_messages,
)
from conversations.tests.paths import (
    conversation_url,
    latest_url,
    list_url,
    stream_url,
)

AUTHENTICATION = 1
GET_CONVERSATIONS = AUTHENTICATION + 1
GET_MESSAGES = AUTHENTICATION + 1
GET_LIST = AUTHENTICATION + 1
GET_CONVERSATION = AUTHENTICATION + 1
# The UPDATE, then the renamed conversation read back.
PATCH_CONVERSATION = AUTHENTICATION + 2
# BEGIN, the owner's conversations locked, one DELETE of them with their
# messages and tool calls, COMMIT (SAVEPOINT/RELEASE inside a test's
# transaction).
DELETE_CONVERSATIONS = AUTHENTICATION + 4
# Authentication; the user message (and the new conversation); the history
# (none to read in a new conversation); the assistant message and its tool
# calls. Each write one statement, no BEGIN/COMMIT/SAVEPOINT.
POST_CHAT_NEW = 3
POST_CHAT_EXISTING = 4
TRANSACTION_CONTROL = {"BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"}
STUB = "agent.backends.stub.StubAgent"

both_kinds = pytest.mark.parametrize(
    "django_db_setup_kind",
    [
        pytest.param("in_test_transaction", marks=pytest.mark.django_db),
        pytest.param("committed", marks=pytest.mark.django_db(transaction=True)),
    ],
)


@both_kinds
def test_transaction_control_is_counted(
    django_assert_num_queries: DjangoAssertNumQueries, django_db_setup_kind: str
) -> None:
    with django_assert_num_queries(3) as captured:
        with transaction.atomic():
            ConversationFactory.create(owner_id="owner")

    statements = [q["sql"].split()[0].upper() for q in captured.captured_queries]
    expected = (
        ["SAVEPOINT", "INSERT", "RELEASE"]
        if django_db_setup_kind == "in_test_transaction"
        else ["BEGIN", "INSERT", "COMMIT"]
    )
    assert statements == expected


@pytest.mark.postgresql
@both_kinds
def test_authentication_is_one_statement(
    api: APIClient,
    session: BetterAuthSession,
    django_assert_num_queries: DjangoAssertNumQueries,
    django_db_setup_kind: str,
) -> None:
    # Another user's path: authenticated (1 statement), then 404 unread.
    url = reverse("conversations:conversation-latest", args=["someone-else"])
    with django_assert_num_queries(AUTHENTICATION):
        response = api.get(url)

    assert response.status_code == 404


@pytest.mark.postgresql
@both_kinds
def test_get_conversations_is_one_statement_after_authentication(
    api: APIClient,
    session: BetterAuthSession,
    django_assert_num_queries: DjangoAssertNumQueries,
    django_db_setup_kind: str,
) -> None:
    ConversationFactory.create_batch(30, owner_id=session.user_id)
    url = reverse("conversations:conversation-latest", args=[session.user_id])

    with django_assert_num_queries(GET_CONVERSATIONS):
        response = api.get(url)

    latest = Conversation.objects.filter(owner_id=session.user_id).latest(
        "updated_at", "id"
    )
    assert response.status_code == 200
    assert response.json()["conversation_id"] == str(latest.id)


@pytest.mark.postgresql
@both_kinds
@pytest.mark.parametrize("before", [False, True])
def test_get_messages_is_one_statement_after_authentication(
    api: APIClient,
    session: BetterAuthSession,
    django_assert_num_queries: DjangoAssertNumQueries,
    django_db_setup_kind: str,
    before: bool,
) -> None:
    conversation = conversation_with_messages(session.user_id, 250)
    # Tool calls on every assistant message of the page, two on some.
    for message in Message.objects.filter(
        conversation=conversation, sequence__gt=100, role=Message.Role.ASSISTANT
    ):
        ToolCallFactory.create_batch(1 + message.sequence % 3 // 2, message=message)
    url = reverse(
        "conversations:message-list", args=[session.user_id, str(conversation.id)]
    )
    params = {}
    if before:
        params["before"] = str(
            Message.objects.get(conversation=conversation, sequence=200).id
        )

    with django_assert_num_queries(GET_MESSAGES):
        response = api.get(url, params)

    assert response.status_code == 200
    body = response.json()
    assert len(body["messages"]) == 100
    assert body["has_more"] is True
    if not before:
        calls = sum(len(m["tool_calls"]) for m in body["messages"])
        assert calls == ToolCall.objects.filter(message__sequence__gt=150).count()
        assert calls > 50


@pytest.mark.postgresql
@both_kinds
@pytest.mark.parametrize("existing", [False, True])
def test_post_chat_is_three_statements_new_four_existing(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    django_assert_num_queries: DjangoAssertNumQueries,
    django_db_setup_kind: str,
    existing: bool,
) -> None:
    settings.AGENT_BACKEND = STUB
    payload = {"message": "add buy milk"}
    if existing:
        payload["conversation_id"] = str(
            conversation_with_messages(session.user_id, 40).id
        )
    url = reverse("conversations:chat", args=[session.user_id])

    budget = POST_CHAT_EXISTING if existing else POST_CHAT_NEW
    with django_assert_num_queries(budget) as captured:
        response = api.post(url, payload, format="json")

    assert response.status_code == 200
    # Nothing of it is a transaction: every write is one statement.
    assert not [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"].split()[0].upper() in TRANSACTION_CONTROL
    ]
    body = response.json()
    assistant = Message.objects.get(pk=body["assistant_message_id"])
    assert ToolCall.objects.filter(message=assistant).count() == len(body["tool_calls"])
    assert len(body["tool_calls"]) == 1


@pytest.mark.postgresql
@both_kinds
@pytest.mark.parametrize("existing", [False, True])
def test_post_chat_with_the_real_model_and_its_tools_costs_the_stubs_statements(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    django_assert_num_queries: DjangoAssertNumQueries,
    django_db_setup_kind: str,
    existing: bool,
) -> None:
    """Two model calls and two tool calls: the database sees the same
    statements as for the stub (the model's usage rides on the insert)."""
    real_model.script(
        ToolCalls(
            [("add_task", '{"title": "milk"}'), ("list_tasks", "{}")], usage=(9, 2)
        ),
        Text("Added milk.", usage=(20, 3)),
    )
    payload = {"message": "add milk"}
    if existing:
        payload["conversation_id"] = str(
            conversation_with_messages(session.user_id, 40).id
        )
    url = reverse("conversations:chat", args=[session.user_id])

    with django_assert_num_queries(POST_CHAT_EXISTING if existing else POST_CHAT_NEW):
        response = api.post(url, payload, format="json")

    assert response.status_code == 200
    assert len(response.json()["tool_calls"]) == 2
    reply = Message.objects.get(pk=response.json()["assistant_message_id"])
    assert (reply.prompt_tokens, reply.completion_tokens) == (29, 5)


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("existing", [False, True])
def test_post_chat_stream_costs_the_json_chats_statements(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    django_assert_num_queries: DjangoAssertNumQueries,
    monkeypatch: pytest.MonkeyPatch,
    stream_producers: Callable[[], None],
    existing: bool,
) -> None:
    """The streamed chat: authentication, the user message and the history
    in the request thread; the reply with its tool calls in the producer's,
    one statement: the JSON chat's budget, split between two threads."""
    settings.AGENT_BACKEND = STUB
    stored: list[str] = []
    store = streaming.ReplyProducer._store

    def counted_store(
        producer: streaming.ReplyProducer, write: Callable[[], Any]
    ) -> Any:
        def counted() -> Any:
            # `connection` is the producer thread's own here.
            with CaptureQueriesContext(connection) as captured:
                result = write()
            stored.extend(q["sql"] for q in captured.captured_queries)
            return result

        return store(producer, counted)

    monkeypatch.setattr(streaming.ReplyProducer, "_store", counted_store)
    payload = {"message": "add buy milk"}
    if existing:
        payload["conversation_id"] = str(
            conversation_with_messages(session.user_id, 40).id
        )
    budget = POST_CHAT_EXISTING if existing else POST_CHAT_NEW
    replies = Message.objects.filter(role=Message.Role.ASSISTANT).count()

    with django_assert_num_queries(budget - 1) as captured:
        response: Any = api.post(stream_url(session.user_id), payload, format="json")
    body = b"".join(response.streaming_content)
    stream_producers()

    assert body.endswith(b"data: [DONE]\n\n")
    assert len(stored) == 1
    assert stored[0].split()[:2] == ["WITH", "c"]
    assert not [
        sql
        for sql in [*stored, *(q["sql"] for q in captured.captured_queries)]
        if sql.split()[0].upper() in TRANSACTION_CONTROL
    ]
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == replies + 1


@pytest.mark.postgresql
@both_kinds
def test_post_chat_to_another_users_conversation_is_two_statements(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    django_assert_num_queries: DjangoAssertNumQueries,
    django_db_setup_kind: str,
) -> None:
    settings.AGENT_BACKEND = STUB
    other = conversation_with_messages("someone-else", 2)
    url = reverse("conversations:chat", args=[session.user_id])

    with django_assert_num_queries(AUTHENTICATION + 1):
        response = api.post(
            url,
            {"message": "hi", "conversation_id": str(other.id)},
            format="json",
        )

    assert response.status_code == 404
    other.refresh_from_db()
    assert other.last_sequence == 2
    assert Message.objects.filter(conversation=other).count() == 2
    assert not Conversation.objects.filter(owner_id=session.user_id).exists()


@pytest.mark.postgresql
@pytest.mark.django_db
def test_hot_statements_are_prepared_on_the_server(
    api: APIClient, session: BetterAuthSession
) -> None:
    # The same request a few times: PostgreSQL then holds the statements
    # prepared on this connection (pg_prepared_statements is per session).
    url = f"/api/v1/users/{session.user_id}/conversations"
    for _ in range(3):
        assert api.get(url).status_code == 200

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]

    assert any("FROM conversations WHERE owner_id" in sql for sql in prepared)
    assert any('"session"' in sql for sql in prepared)


@pytest.mark.postgresql
@both_kinds
@pytest.mark.parametrize("page", ["first", "next"])
def test_get_conversation_list_is_one_statement_after_authentication(
    api: APIClient,
    session: BetterAuthSession,
    django_assert_num_queries: DjangoAssertNumQueries,
    django_db_setup_kind: str,
    page: str,
) -> None:
    ConversationFactory.create_batch(60, owner_id=session.user_id)
    params = {"limit": 25}
    if page == "next":
        first = api.get(list_url(session.user_id), params).json()
        params["cursor"] = first["next_cursor"]

    with django_assert_num_queries(GET_LIST):
        response = api.get(list_url(session.user_id), params)

    assert response.status_code == 200
    assert len(response.json()["conversations"]) == 25


@pytest.mark.postgresql
@both_kinds
def test_get_patch_conversation_statements(
    api: APIClient,
    session: BetterAuthSession,
    django_assert_num_queries: DjangoAssertNumQueries,
    django_db_setup_kind: str,
) -> None:
    conversation = conversation_with_messages(session.user_id, 30)
    url = conversation_url(session.user_id, conversation.id)

    with django_assert_num_queries(GET_CONVERSATION):
        assert api.get(url).json()["message_count"] == 30
    with django_assert_num_queries(PATCH_CONVERSATION):
        response = api.patch(url, {"title": "Renamed"}, format="json")

    assert response.json()["title"] == "Renamed"


@pytest.mark.postgresql
@both_kinds
@pytest.mark.parametrize("scope", ["one", "all"])
def test_delete_conversations_is_a_fixed_number_of_statements(
    api: APIClient,
    session: BetterAuthSession,
    django_assert_num_queries: DjangoAssertNumQueries,
    django_db_setup_kind: str,
    scope: str,
) -> None:
    conversations = [conversation_with_messages(session.user_id, 300) for _ in range(3)]
    for message in Message.objects.filter(role=Message.Role.ASSISTANT)[:100]:
        ToolCallFactory.create(message=message)
    url = (
        conversation_url(session.user_id, conversations[0].id)
        if scope == "one"
        else latest_url(session.user_id)
    )

    with django_assert_num_queries(DELETE_CONVERSATIONS):
        response = api.delete(url)

    assert response.status_code == (204 if scope == "one" else 200)
    assert Conversation.objects.count() == (2 if scope == "one" else 0)
