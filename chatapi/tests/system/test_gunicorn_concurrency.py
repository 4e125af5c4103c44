"""Concurrent chat requests through gunicorn, on the PostgreSQL test database.

The server runs with production settings and its own connections, so these
tests see what clients see: real threads and processes racing for the same
conversation row.
"""

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import connection

import pytest

from better_auth.tests.factories import BetterAuthSessionFactory, signed_token
from conversations.models import Conversation, Message, ToolCall
from conversations.tests.factories import ConversationFactory

from .servers import (
    PACED_AGENT,
    Gunicorn,
    HttpResult,
    attach_log,
    database_url,
    record_figures,
    server_environment,
)

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

PARALLEL = 50
# 2 processes x 16 threads: 32 requests run at once, each thread with its
# own database connection; the rest queue in gunicorn.
WORKERS = 2
THREADS = 16


def server_database_url() -> str:
    settings = connection.settings_dict
    return database_url(
        name=settings["NAME"],
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        password=settings["PASSWORD"],
    )


@pytest.fixture(scope="module")
def server(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    """One server for the module, on the test database; the paced agent
    answers a message starting with "slow" in 3 s, any other in 0.2 s."""
    env = server_environment(
        server_database_url(),
        AGENT_BACKEND=PACED_AGENT,
        WEB_CONCURRENCY=str(WORKERS),
        GUNICORN_THREADS=str(THREADS),
    )
    running = Gunicorn(env, tmp_path_factory.mktemp("gunicorn"))
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture(autouse=True)
def _server_log(server: Gunicorn, request: pytest.FixtureRequest) -> None:
    attach_log(request, "gunicorn stderr", server.stderr)


def all_at_once(count: int, send: Callable[[int], HttpResult]) -> list[HttpResult]:
    """`send(i)` for i in range(count), from `count` threads released together."""
    barrier = threading.Barrier(count)

    def run(index: int) -> HttpResult:
        barrier.wait(timeout=10)
        return send(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def failures(results: list[HttpResult]) -> list[Any]:
    return [
        (result.status, result.body[:200], result.error)
        for result in results
        if result.status != 200
    ]


def test_parallel_messages_into_one_conversation_are_stored_once_in_order(
    server: Gunicorn, request: pytest.FixtureRequest
) -> None:
    session = BetterAuthSessionFactory.create()
    conversation = ConversationFactory.create(owner_id=session.user_id)
    questions = [f"parallel {index}" for index in range(PARALLEL)]

    started = time.monotonic()
    results = all_at_once(
        PARALLEL,
        lambda index: server.chat(
            session.user_id,
            signed_token(session),
            questions[index],
            str(conversation.id),
        ),
    )
    elapsed = time.monotonic() - started

    assert failures(results) == []
    rows = {
        message.id: message
        for message in Message.objects.filter(conversation=conversation)
    }
    assert sorted(message.sequence for message in rows.values()) == list(
        range(1, 2 * PARALLEL + 1)
    )
    conversation.refresh_from_db()
    assert conversation.last_sequence == 2 * PARALLEL
    user_contents = Counter(
        message.content for message in rows.values() if message.role == "user"
    )
    assert user_contents == Counter(questions)
    assert ToolCall.objects.filter(message__conversation=conversation).count() == (
        PARALLEL
    )
    for question, result in zip(questions, results, strict=True):
        body = result.json()
        assert body["conversation_id"] == str(conversation.id)
        asked = rows[uuid.UUID(body["user_message_id"])]
        answer = rows[uuid.UUID(body["assistant_message_id"])]
        assert (asked.role, asked.content) == ("user", question)
        assert (answer.role, answer.content) == ("assistant", f"echo: {question}")
        assert answer.reply_to_id == asked.id
        assert answer.sequence > asked.sequence
        assert body["response"] == answer.content
        assert [call["tool_name"] for call in body["tool_calls"]] == ["echo"]
    # The agent calls overlapped: some questions were stored while others
    # were still being answered, so not every reply directly follows its
    # question. (Serialised agent calls would alternate question, answer.)
    interleaved = len(
        [
            message
            for message in rows.values()
            if message.role == "assistant"
            and message.reply_to_id is not None
            and rows[message.reply_to_id].sequence != message.sequence - 1
        ]
    )
    assert interleaved > 0
    record_figures(
        request,
        requests=PARALLEL,
        all_200=True,
        seconds=round(elapsed, 2),
        replies_not_next_to_question=interleaved,
    )


def test_first_messages_of_many_users_at_once_each_start_one_conversation(
    server: Gunicorn, request: pytest.FixtureRequest
) -> None:
    sessions = BetterAuthSessionFactory.create_batch(PARALLEL)

    started = time.monotonic()
    results = all_at_once(
        PARALLEL,
        lambda index: server.chat(
            sessions[index].user_id, signed_token(sessions[index]), f"first {index}"
        ),
    )
    elapsed = time.monotonic() - started

    assert failures(results) == []
    assert Conversation.objects.count() == PARALLEL
    assert Message.objects.count() == 2 * PARALLEL
    assert ToolCall.objects.count() == PARALLEL
    for index, (session, result) in enumerate(zip(sessions, results, strict=True)):
        body = result.json()
        conversation = Conversation.objects.get(owner_id=session.user_id)
        assert body["conversation_id"] == str(conversation.id)
        assert conversation.last_sequence == 2
        asked, answer = Message.objects.filter(conversation=conversation).order_by(
            "sequence"
        )
        assert (asked.sequence, asked.role, asked.content) == (
            1,
            "user",
            f"first {index}",
        )
        assert (answer.sequence, answer.role, answer.content) == (
            2,
            "assistant",
            f"echo: first {index}",
        )
        assert answer.reply_to_id == asked.id
        assert (body["user_message_id"], body["assistant_message_id"]) == (
            str(asked.id),
            str(answer.id),
        )
    record_figures(request, requests=PARALLEL, all_200=True, seconds=round(elapsed, 2))


def test_slow_agent_call_holds_no_lock_on_its_conversation(
    server: Gunicorn, request: pytest.FixtureRequest
) -> None:
    session = BetterAuthSessionFactory.create()
    token = signed_token(session)
    conversation = ConversationFactory.create(owner_id=session.user_id)
    stored = Message.objects.filter(conversation=conversation, role="user")

    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(
            server.chat, session.user_id, token, "slow question", str(conversation.id)
        )
        # The slow question is committed: its agent call is under way.
        deadline = time.monotonic() + 10
        while not stored.filter(content="slow question").exists():
            assert time.monotonic() < deadline, "the slow question was never stored"
            assert not slow.done(), slow.result()
            time.sleep(0.02)

        quick = server.chat(
            session.user_id, token, "quick question", str(conversation.id)
        )
        # Seen from this test's own connection while the slow call still runs.
        quick_stored = stored.filter(content="quick question").exists()
        slow_running = not slow.done()
        slow_result = slow.result(timeout=30)

    assert (quick.status, slow_result.status) == (200, 200)
    assert quick_stored is True
    assert slow_running is True
    assert quick.finished < slow_result.finished
    rows = list(
        Message.objects.filter(conversation=conversation)
        .order_by("sequence")
        .values_list("sequence", "role", "content", "reply_to__content", "created_at")
    )
    assert [row[:4] for row in rows] == [
        (1, "user", "slow question", None),
        (2, "user", "quick question", None),
        (3, "assistant", "echo: quick question", "quick question"),
        (4, "assistant", "echo: slow question", "slow question"),
    ]
    created = [row[4] for row in rows]
    assert created == sorted(created)
    record_figures(
        request,
        quick_seconds=round(quick.seconds, 2),
        slow_seconds=round(slow_result.seconds, 2),
        quick_answered_before_slow_by=round(slow_result.finished - quick.finished, 2),
    )
