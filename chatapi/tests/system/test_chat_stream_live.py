"""Streamed replies through gunicorn, read by the AI SDK's own client.

interop/ai-sdk/chat.mjs runs the `ai` package's AbstractChat (the code
useChat wraps) with DefaultChatTransport against a server on the
PostgreSQL test database; what it assembles is compared with what is
stored. A client that hangs up, and resuming on any worker through Redis,
are driven from Python over plain sockets.
"""

import http.client
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

from django.conf import settings
from django.db import connection

import pytest

from better_auth.models import BetterAuthSession
from better_auth.tests.factories import BetterAuthSessionFactory
from better_auth.tests.interop.node import NodeMissing, node_and_npm, npm_ci_when_stale
from conversations.models import Message, ToolCall

from .servers import (
    Gunicorn,
    PrivatePostgres,
    attach_log,
    database_url,
    record_figures,
    server_environment,
    user_with_session,
)

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

AI_SDK_DIR = Path(settings.BASE_DIR) / "interop" / "ai-sdk"
PACED = "agent.tests.fakes.PacedStreamAgent"
REDIS = ("127.0.0.1", 6379)
# A message the paced agent answers in about 2 s (a word every 0.2 s).
LONG_MESSAGE = "one two three four five six seven eight nine ten"


def server_database_url() -> str:
    db = connection.settings_dict
    return database_url(
        name=db["NAME"],
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        password=db["PASSWORD"],
    )


@pytest.fixture(scope="module")
def node(unavailable: Callable[..., NoReturn]) -> str:
    try:
        node, npm = node_and_npm()
    except NodeMissing as missing:
        unavailable(str(missing), required_by="CHATAPI_REQUIRE_NODE")
    npm_ci_when_stale(AI_SDK_DIR, npm)
    return node


@pytest.fixture(scope="module")
def redis_url(unavailable: Callable[..., NoReturn]) -> str:
    try:
        socket.create_connection(REDIS, timeout=0.5).close()
    except OSError:
        unavailable(
            "Redis not reachable at 127.0.0.1:6379", required_by="CHATAPI_REQUIRE_REDIS"
        )
    return "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def server(
    django_db_setup: None, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    """Two workers sharing Redis; the stub streams a word every 20 ms."""
    env = server_environment(
        server_database_url(),
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="8",
        REDIS_URL=redis_url,
        AGENT_STUB_STREAM_DELAY_SECONDS="0.02",
    )
    running = Gunicorn(env, tmp_path_factory.mktemp("gunicorn"))
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture(scope="module")
def paced_server(
    django_db_setup: None, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    """Two workers sharing Redis; the agent streams a word every 0.2 s."""
    env = server_environment(
        server_database_url(),
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="8",
        REDIS_URL=redis_url,
        AGENT_BACKEND=PACED,
    )
    running = Gunicorn(env, tmp_path_factory.mktemp("gunicorn-paced"))
    try:
        yield running.start()
    finally:
        running.stop()


def api(server: Gunicorn, user_id: str) -> str:
    return f"http://127.0.0.1:{server.port}/api/v1/users/{user_id}/chat/stream"


def ai_sdk_chat(node: str, **config: Any) -> dict[str, Any]:
    """chat.mjs with `config`; its JSON answer."""
    result = subprocess.run(  # noqa: S603 (fixed arguments)
        [node, "chat.mjs", json.dumps(config)],
        cwd=AI_SDK_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def stream_open(
    server: Gunicorn,
    session: BetterAuthSession | tuple[str, str],
    body: dict[str, Any],
) -> http.client.HTTPResponse:
    """POST a chat stream as `session` (or a (user id, token) pair); the
    response, to read its events from."""
    user_id, token = (
        session if isinstance(session, tuple) else (session.user_id, session.token)
    )
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(
        "POST",
        f"/api/v1/users/{user_id}/chat/stream",
        body=json.dumps(body),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        },
    )
    response = conn.getresponse()
    assert response.status == 200
    return response


def events_until(response: http.client.HTTPResponse, kind: str) -> list[dict[str, Any]]:
    """Events read from `response` up to the first of type `kind`."""
    found: list[dict[str, Any]] = []
    while not any(event.get("type") == kind for event in found):
        line = response.readline()
        assert line, f"the stream ended before a {kind} event"
        if line.startswith(b"data: {"):
            found.append(json.loads(line[6:]))
    return found


def wait_for_reply(conversation_id: str, timeout: float = 15) -> Message:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = Message.objects.filter(
            conversation_id=conversation_id, role=Message.Role.ASSISTANT
        ).first()
        if reply is not None:
            return reply
        time.sleep(0.1)
    pytest.fail("the reply was not stored")


def assert_same_as_stored(message: dict[str, Any], reply: Message) -> None:
    """The AI SDK's assembled message is the stored reply."""
    calls = list(ToolCall.objects.filter(message=reply).order_by("position"))
    text = "".join(p["text"] for p in message["parts"] if p["type"] == "text")
    tools = [p for p in message["parts"] if p["type"].startswith("tool-")]
    assert message["id"] == str(reply.id)
    assert message["metadata"] == {"conversationId": str(reply.conversation_id)}
    assert text == reply.content
    assert [
        (t["type"], t["toolCallId"], t["state"], t["input"], t.get("output"))
        for t in tools
    ] == [
        (f"tool-{c.tool_name}", str(c.id), "output-available", c.parameters, c.result)
        for c in calls
    ]


def test_ai_sdk_chat_assembles_exactly_the_stored_reply(
    node: str, server: Gunicorn, request: pytest.FixtureRequest
) -> None:
    attach_log(request, "gunicorn stderr", server.stderr)
    session = BetterAuthSessionFactory.create()
    chat_id = str(uuid.uuid4())

    first = ai_sdk_chat(
        node,
        api=api(server, session.user_id),
        token=session.token,
        chatId=chat_id,
        text="add buy milk",
    )
    second = ai_sdk_chat(
        node,
        api=api(server, session.user_id),
        token=session.token,
        chatId=chat_id,
        text="hello",
    )

    for answer in (first, second):
        assert answer["status"] == "ready", answer
        assert answer["error"] is None
        assert answer["finished"]["finishReason"] == "stop"
        assert answer["chunkTypes"][0] == "start"
        assert answer["chunkTypes"][-2:] == ["finish", "[DONE]"]
        assert answer["chunkTypes"].count("text-delta") > 1
    first_reply = Message.objects.get(pk=first["message"]["id"])
    second_reply = Message.objects.get(pk=second["message"]["id"])
    assert_same_as_stored(first["message"], first_reply)
    assert_same_as_stored(second["message"], second_reply)
    assert ToolCall.objects.filter(message=first_reply).count() == 1
    # One conversation, the SDK's chat id, continued by the second message.
    assert (
        str(first_reply.conversation_id) == str(second_reply.conversation_id) == chat_id
    )
    assert Message.objects.filter(conversation_id=chat_id).count() == 4


def test_ai_sdk_error_answers_reach_the_sdk_as_errors(
    node: str, server: Gunicorn
) -> None:
    session = BetterAuthSessionFactory.create()

    answer = ai_sdk_chat(
        node,
        api=api(server, session.user_id),
        token="not-a-session",
        chatId=str(uuid.uuid4()),
        text="hi",
    )

    assert answer["status"] == "error"
    assert "authentication_failed" in answer["error"]
    assert not Message.objects.exists()


def test_first_text_arrives_long_before_the_reply_ends(
    paced_server: Gunicorn, request: pytest.FixtureRequest
) -> None:
    attach_log(request, "gunicorn stderr", paced_server.stderr)
    session = BetterAuthSessionFactory.create()

    started = time.monotonic()
    response = stream_open(paced_server, session, {"message": LONG_MESSAGE})
    events_until(response, "text-delta")
    first_text = time.monotonic() - started
    events_until(response, "finish")
    whole = time.monotonic() - started

    record_figures(request, first_text_s=round(first_text, 3), whole_s=round(whole, 3))
    assert whole > 1.5
    assert first_text < whole / 4


def test_client_that_hangs_up_does_not_lose_the_reply(
    paced_server: Gunicorn, request: pytest.FixtureRequest
) -> None:
    attach_log(request, "gunicorn stderr", paced_server.stderr)
    session = BetterAuthSessionFactory.create()

    response = stream_open(paced_server, session, {"message": LONG_MESSAGE})
    start = events_until(response, "text-delta")[0]
    response.close()  # the socket goes: a closed tab, a lost network

    reply = wait_for_reply(start["messageMetadata"]["conversationId"])
    assert str(reply.id) == start["messageId"]
    assert reply.content == f"echo: {LONG_MESSAGE}"
    assert ToolCall.objects.filter(message=reply).count() == 1


def test_ai_sdk_resume_follows_the_reply_from_any_worker(
    node: str, paced_server: Gunicorn, request: pytest.FixtureRequest
) -> None:
    attach_log(request, "gunicorn stderr", paced_server.stderr)
    session = BetterAuthSessionFactory.create()
    chat_id = str(uuid.uuid4())
    message = {
        "id": "m",
        "role": "user",
        "parts": [{"type": "text", "text": LONG_MESSAGE}],
    }

    response = stream_open(
        paced_server, session, {"id": chat_id, "messages": [message]}
    )
    events_until(response, "text-delta")
    # Each resume may land on either worker: Redis has the reply for both.
    with ThreadPoolExecutor(4) as pool:
        resumed = list(
            pool.map(
                lambda _: ai_sdk_chat(
                    node,
                    api=api(paced_server, session.user_id),
                    token=session.token,
                    chatId=chat_id,
                    resume=True,
                ),
                range(4),
            )
        )
    events_until(response, "finish")
    reply = wait_for_reply(chat_id)
    after = ai_sdk_chat(
        node,
        api=api(paced_server, session.user_id),
        token=session.token,
        chatId=chat_id,
        resume=True,
    )

    for answer in resumed:
        assert answer["status"] == "ready", answer
        assert answer["chunkTypes"][-2:] == ["finish", "[DONE]"]
        assert_same_as_stored(answer["message"], reply)
    # Nothing in progress: 204, and the SDK is simply ready.
    assert after["status"] == "ready"
    assert after["messages"] == 0


def test_a_stopping_worker_finishes_and_stores_the_replies_in_progress(
    gunicorn: Callable[..., Gunicorn],
) -> None:
    server = gunicorn(server_database_url(), AGENT_BACKEND=PACED, WEB_CONCURRENCY="1")
    session = BetterAuthSessionFactory.create()

    response = stream_open(server, session, {"message": LONG_MESSAGE})
    start = events_until(response, "text-delta")[0]
    response.close()
    started = time.monotonic()
    server.stop()  # SIGTERM: a deploy, a scale-down

    assert time.monotonic() - started < 10  # it did not wait to be killed
    reply = wait_for_reply(start["messageMetadata"]["conversationId"], timeout=1)
    assert reply.content == f"echo: {LONG_MESSAGE}"


def test_a_database_restart_before_the_reply_is_stored_loses_nothing(
    gunicorn: Callable[..., Gunicorn], private_postgres: PrivatePostgres
) -> None:
    server = gunicorn(private_postgres.url, AGENT_BACKEND=PACED, DB_CONNECT_TIMEOUT="2")
    credentials = user_with_session(private_postgres)

    response = stream_open(server, credentials, {"message": LONG_MESSAGE})
    start = events_until(response, "text-delta")[0]
    private_postgres.stop()
    time.sleep(2.5)  # the reply ends, and its store fails, meanwhile
    private_postgres.start()
    rest = events_until(response, "finish")

    assert rest[-1] == {"type": "finish", "finishReason": "stop"}
    with private_postgres.connect() as db:
        row = db.execute(
            "SELECT content FROM messages WHERE id = %s", [start["messageId"]]
        ).fetchone()
    assert row == (f"echo: {LONG_MESSAGE}",)
