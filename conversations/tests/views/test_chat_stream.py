"""POST .../chat/stream (CONTRACT §9): the AI SDK's UI message stream,
storage as in the JSON chat, failures, disconnects and Idempotency-Key.

The reply is stored by a thread of its own, on its own database
connection: these tests commit (`transaction=True`).
"""

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.db import connection

import pytest
from pytest_django import Settings
from rest_framework.test import APIClient

from agent.tests.fakes import StreamingAgent
from better_auth.models import BetterAuthSession
from better_auth.tests.factories import BetterAuthSessionFactory
from conversations import streaming
from conversations.models import Conversation, IdempotencyKey, Message, ToolCall
from conversations.tests import sse
from conversations.tests.factories import ConversationFactory
from conversations.tests.paths import chat_url, stream_url

pytestmark = pytest.mark.django_db(transaction=True)

STREAMING = "agent.tests.fakes.StreamingAgent"


def post(api: APIClient, user_id: str, body: Any, **extra: Any) -> Any:
    return api.post(
        stream_url(user_id), json.dumps(body), content_type="application/json", **extra
    )


def read_all(response: Any) -> list[Any]:
    return sse.parse(b"".join(response.streaming_content))


def ui_message(text: str) -> dict[str, Any]:
    return {
        "id": "msg-1",
        "role": "user",
        "parts": [{"type": "text", "text": text}],
    }


def stored_reply(conversation_id: str) -> Message:
    return Message.objects.get(
        conversation_id=conversation_id, role=Message.Role.ASSISTANT
    )


def test_stream_answers_the_ui_message_stream_protocol(
    api: APIClient, session: BetterAuthSession, stream_producers: Callable[[], None]
) -> None:
    response = post(api, session.user_id, {"message": "add buy milk"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["x-vercel-ai-ui-message-stream"] == "v1"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    assert not response.has_header("Connection")
    events = read_all(response)
    kinds = sse.types(events)
    assert kinds[:3] == ["start", "tool-input-available", "tool-output-available"]
    assert kinds[3] == "text-start"
    assert set(kinds[4:-3]) == {"text-delta"}
    assert len(kinds[4:-3]) > 1  # the stub streams word by word
    assert kinds[-3:] == ["text-end", "finish", sse.DONE]
    start, finish = events[0], events[-2]
    assert finish == {"type": "finish", "finishReason": "stop"}
    stream_producers()
    reply = stored_reply(start["messageMetadata"]["conversationId"])
    assert start["messageId"] == str(reply.id)


def test_stream_stores_what_the_sdk_assembles(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    stream_producers: Callable[[], None],
) -> None:
    settings.AGENT_BACKEND = STREAMING

    events = read_all(post(api, session.user_id, {"message": "hi"}))

    stream_producers()
    message = sse.assembled(events)
    reply = stored_reply(message["metadata"]["conversationId"])
    calls = list(ToolCall.objects.filter(message=reply).order_by("position"))
    assert message["id"] == str(reply.id)
    assert message["text"] == reply.content == "Hello, world"
    assert message["tools"] == [
        {
            "id": str(calls[0].id),
            "name": "add_task",
            "input": {"title": "milk"},
            "output": {"task_id": 7},
        },
        {
            "id": str(calls[1].id),
            "name": "audit",
            "input": {},
            "errorText": "no audit log",
        },
    ]
    assert [c.status for c in calls] == ["success", "error"]
    # Text interrupted by a tool call is closed first: ids never overlap.
    kinds = sse.types(events)
    assert kinds[1:5] == [
        "text-start",
        "text-delta",
        "text-end",
        "tool-input-available",
    ]


def test_stream_accepts_the_ai_sdk_request_with_a_new_chat_id(
    api: APIClient, session: BetterAuthSession, stream_producers: Callable[[], None]
) -> None:
    chat_id = str(uuid.uuid4())
    first = {
        "id": chat_id,
        "messages": [ui_message("hello")],
        "trigger": "submit-message",
        "messageId": None,
    }
    events = read_all(post(api, session.user_id, first))
    stream_producers()
    # The earlier messages the SDK sends are not read: the stored history is.
    second = {
        "id": chat_id,
        "messages": [ui_message("ignored"), ui_message("again")],
        "trigger": "submit-message",
    }
    read_all(post(api, session.user_id, second))
    stream_producers()

    assert events[0]["messageMetadata"] == {"conversationId": chat_id}
    conversation = Conversation.objects.get(pk=chat_id)
    assert conversation.owner_id == session.user_id
    contents = list(
        Message.objects.filter(conversation=conversation)
        .order_by("sequence")
        .values_list("role", "content")
    )
    assert [c for r, c in contents if r == "user"] == ["hello", "again"]
    assert len(contents) == 4


@pytest.mark.parametrize("with_chat_id", [True, False], ids=["sdk-id", "no-id"])
def test_stream_titles_a_new_conversation_from_its_first_message(
    api: APIClient,
    session: BetterAuthSession,
    stream_producers: Callable[[], None],
    with_chat_id: bool,
) -> None:
    body: dict[str, Any] = {"message": "  add   buy\nmilk  "}
    if with_chat_id:
        body = {
            "id": str(uuid.uuid4()),
            "messages": [ui_message("  add   buy\nmilk  ")],
            "trigger": "submit-message",
        }
    events = read_all(post(api, session.user_id, body))
    stream_producers()

    conversation_id = events[0]["messageMetadata"]["conversationId"]
    assert Conversation.objects.get(pk=conversation_id).title == "add buy milk"


def test_stream_accepts_the_single_message_form(
    api: APIClient, session: BetterAuthSession, stream_producers: Callable[[], None]
) -> None:
    chat_id = str(uuid.uuid4())
    message = {
        "id": "m",
        "role": "user",
        "parts": [
            {"type": "text", "text": "add "},
            {"type": "file", "mediaType": "image/png", "url": "data:,"},
            {"type": "text", "text": "milk"},
        ],
    }
    events = read_all(post(api, session.user_id, {"id": chat_id, "message": message}))
    stream_producers()

    assert sse.types(events)[-1] == sse.DONE
    user = Message.objects.get(conversation_id=chat_id, role=Message.Role.USER)
    assert user.content == "add milk"


def test_stream_continues_a_conversation_with_conversation_id(
    api: APIClient, session: BetterAuthSession, stream_producers: Callable[[], None]
) -> None:
    conversation = ConversationFactory.create(owner_id=session.user_id)

    events = read_all(
        post(
            api,
            session.user_id,
            {"message": "hi", "conversation_id": str(conversation.id)},
        )
    )
    stream_producers()

    assert events[0]["messageMetadata"] == {"conversationId": str(conversation.id)}
    assert Message.objects.filter(conversation=conversation).count() == 2


@pytest.mark.parametrize("form", ["sdk", "json"])
def test_stream_someone_elses_conversation_is_404_and_stores_nothing(
    api: APIClient,
    session: BetterAuthSession,
    row_counts: Callable[[], tuple[int, int, int]],
    assert_error: Callable[..., Any],
    form: str,
) -> None:
    other = ConversationFactory.create(owner_id="someone-else")
    body = (
        {"id": str(other.id), "messages": [ui_message("hi")]}
        if form == "sdk"
        else {"message": "hi", "conversation_id": str(other.id)}
    )
    before = row_counts()

    assert_error(post(api, session.user_id, body), 404, "not_found")
    assert row_counts() == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            {"id": str(uuid.uuid4()), "messages": [], "trigger": "submit-message"},
            "empty",
        ),
        (
            {
                "id": str(uuid.uuid4()),
                "messages": [ui_message("hi")],
                "trigger": "regenerate-message",
            },
            "invalid_choice",
        ),
        ({"id": "not-a-uuid", "messages": [ui_message("hi")]}, "invalid"),
        ({"id": str(uuid.uuid4()), "messages": [ui_message("   ")]}, "blank"),
        (
            {"id": str(uuid.uuid4()), "messages": [ui_message("a\x00b")]},
            "null_characters_not_allowed",
        ),
        (
            {"id": str(uuid.uuid4()), "message": {"role": "user", "parts": "x"}},
            "invalid",
        ),
        (
            {
                "id": str(uuid.uuid4()),
                "message": {**ui_message("x"), "role": "assistant"},
            },
            "invalid",
        ),
        ({"id": str(uuid.uuid4()), "messages": ["text"]}, "not_a_dict"),
        ({"message": 3}, "invalid"),
        ({}, "required"),
        ([], "invalid"),
    ],
)
def test_stream_bad_request_is_400_and_stores_nothing(
    api: APIClient,
    session: BetterAuthSession,
    row_counts: Callable[[], tuple[int, int, int]],
    assert_error: Callable[..., Any],
    body: Any,
    code: str,
) -> None:
    before = row_counts()

    assert_error(post(api, session.user_id, body), 400, code)
    assert row_counts() == before


def test_stream_message_too_long_is_400(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    assert_error: Callable[..., Any],
) -> None:
    settings.CHAT_MAX_MESSAGE_CHARS = 5
    body = {"id": str(uuid.uuid4()), "messages": [ui_message("123456")]}

    assert_error(post(api, session.user_id, body), 400, "message_too_long")


def test_stream_refusals_before_the_message_are_json(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    row_counts: Callable[[], tuple[int, int, int]],
    assert_error: Callable[..., Any],
) -> None:
    before = row_counts()
    anonymous = APIClient().post(
        stream_url(session.user_id), {"message": "hi"}, format="json"
    )
    assert_error(anonymous, 401, "not_authenticated")
    assert anonymous["WWW-Authenticate"] == "Bearer"
    assert_error(post(api, "someone-else", {"message": "hi"}), 404, "not_found")
    assert_error(
        api.post(stream_url(session.user_id), "hi", content_type="text/plain"),
        415,
        "unsupported_media_type",
    )
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    assert_error(
        post(api, session.user_id, {"message": "x" * 2000}), 413, "request_too_large"
    )
    settings.RATE_LIMIT_CHAT = "1/minute"
    cache.clear()  # the refused requests above were counted too
    read_all(post(api, session.user_id, {"message": "one"}))
    throttled = post(api, session.user_id, {"message": "two"})
    assert_error(throttled, 429, "throttled")
    assert row_counts()[1] == before[1] + 2


def test_stream_accepting_only_event_streams_still_gets_json_errors(
    api: APIClient, session: BetterAuthSession, assert_error: Callable[..., Any]
) -> None:
    response = post(api, session.user_id, {}, HTTP_ACCEPT="text/event-stream")

    assert_error(response, 400, "required")


def test_stream_user_message_is_committed_before_the_first_byte_and_text_streams(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    stream_producers: Callable[[], None],
) -> None:
    settings.AGENT_BACKEND = STREAMING
    StreamingAgent.hold = True

    response = post(api, session.user_id, {"message": "hi"})
    chunks = iter(response.streaming_content)
    received = sse.parse(next(chunks))
    while "text-delta" not in sse.types(received):
        received += sse.parse(next(chunks))

    # The first text arrived while the agent is still working.
    assert not StreamingAgent.finished.is_set()
    conversation_id = received[0]["messageMetadata"]["conversationId"]
    stored = Message.objects.filter(conversation_id=conversation_id)
    assert list(stored.values_list("role", "content")) == [("user", "hi")]
    StreamingAgent.release.set()
    rest = sse.parse(b"".join(chunks))
    assert sse.types(rest)[-2:] == ["finish", sse.DONE]


def test_stream_reply_is_stored_when_the_client_goes_away(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    stream_producers: Callable[[], None],
) -> None:
    settings.AGENT_BACKEND = STREAMING
    StreamingAgent.hold = True

    response = post(api, session.user_id, {"message": "hi"})
    first = sse.parse(next(iter(response.streaming_content)))
    response.close()  # what the server does when the client disconnects
    StreamingAgent.release.set()
    stream_producers()

    reply = stored_reply(first[0]["messageMetadata"]["conversationId"])
    assert str(reply.id) == first[0]["messageId"]
    assert reply.content == "Hello, world"
    assert ToolCall.objects.filter(message=reply).count() == 2


def test_stream_agent_failure_is_an_error_event_and_stores_as_a_502(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    stream_producers: Callable[[], None],
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.FailingStreamAgent"

    events = read_all(post(api, session.user_id, {"message": "hi"}))
    stream_producers()

    assert sse.types(events) == [
        "start",
        "text-start",
        "text-delta",
        "error",
        sse.DONE,
    ]
    assert (
        events[-2]["errorText"] == "The assistant could not answer. Please try again."
    )
    conversation_id = events[0]["messageMetadata"]["conversationId"]
    stored = Message.objects.filter(conversation_id=conversation_id)
    assert list(stored.values_list("role", flat=True)) == ["user"]
    assert not ToolCall.objects.exists()
    # The next message in the conversation works normally.
    settings.AGENT_BACKEND = "agent.tests.fakes.RecordingAgent"
    again = read_all(
        post(api, session.user_id, {"message": "b", "conversation_id": conversation_id})
    )
    stream_producers()
    assert sse.types(again)[-2:] == ["finish", sse.DONE]
    assert stored.count() == 3


def test_stream_timeout_covers_the_whole_reply(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    stream_producers: Callable[[], None],
) -> None:
    settings.AGENT_BACKEND = STREAMING
    settings.AGENT_TIMEOUT_SECONDS = 0.5
    StreamingAgent.hold = True

    started = time.monotonic()
    events = read_all(post(api, session.user_id, {"message": "hi"}))
    stream_producers()
    StreamingAgent.release.set()  # the agent goes on late: dropped, stopped
    for thread in threading.enumerate():
        if thread.name == "agent-stream":
            thread.join(5)

    assert time.monotonic() - started < 5
    assert not StreamingAgent.finished.is_set()
    assert sse.types(events)[-2:] == ["error", sse.DONE]
    assert events[-2]["errorText"] == (
        "The assistant took too long to answer. Please try again."
    )
    conversation_id = events[0]["messageMetadata"]["conversationId"]
    stored = Message.objects.filter(conversation_id=conversation_id)
    assert list(stored.values_list("role", flat=True)) == ["user"]


def test_stream_backend_without_stream_response_sends_one_piece(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    stream_producers: Callable[[], None],
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.RecordingAgent"

    events = read_all(post(api, session.user_id, {"message": "hi"}))
    stream_producers()

    assert sse.types(events) == [
        "start",
        "tool-input-available",
        "tool-output-available",
        "tool-input-available",
        "tool-output-error",
        "text-start",
        "text-delta",
        "text-end",
        "finish",
        sse.DONE,
    ]
    assert events[6]["delta"] == "echo: hi"
    assert events[4]["errorText"] == "null"  # the failed call's result, as JSON


def test_stream_idempotency_key_replays_the_stored_reply_as_a_stream(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    stream_producers: Callable[[], None],
) -> None:
    settings.AGENT_BACKEND = STREAMING
    body = {"message": "hi"}

    first = read_all(post(api, session.user_id, body, HTTP_IDEMPOTENCY_KEY="k1"))
    stream_producers()
    replay = post(api, session.user_id, body, HTTP_IDEMPOTENCY_KEY="k1")

    assert replay.status_code == 200
    assert replay["Idempotent-Replayed"] == "true"
    assert replay["Content-Type"] == "text/event-stream"
    again = read_all(replay)
    assert sse.assembled(again) == sse.assembled(first)
    assert Message.objects.filter(role=Message.Role.USER).count() == 1
    # The JSON chat replays the same reply under the same key.
    json_replay = api.post(
        chat_url(session.user_id), body, format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert json_replay.json()["response"] == "Hello, world"
    assert json_replay.json()["assistant_message_id"] == first[0]["messageId"]


def test_stream_idempotency_key_replays_a_failure_as_an_error_event(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    stream_producers: Callable[[], None],
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.FailingStreamAgent"
    body = {"message": "hi"}

    read_all(post(api, session.user_id, body, HTTP_IDEMPOTENCY_KEY="k2"))
    stream_producers()
    replay = read_all(post(api, session.user_id, body, HTTP_IDEMPOTENCY_KEY="k2"))

    assert sse.types(replay) == ["error", sse.DONE]
    assert IdempotencyKey.objects.get(key="k2").response_status == 502
    assert Message.objects.count() == 1


def test_stream_idempotency_key_in_progress_is_409_and_bad_key_400(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    assert_error: Callable[..., Any],
    stream_producers: Callable[[], None],
) -> None:
    settings.AGENT_BACKEND = STREAMING
    StreamingAgent.hold = True
    body = {"message": "hi"}

    running = post(api, session.user_id, body, HTTP_IDEMPOTENCY_KEY="k3")
    next(iter(running.streaming_content))
    assert_error(
        post(api, session.user_id, body, HTTP_IDEMPOTENCY_KEY="k3"),
        409,
        "idempotency_key_in_progress",
    )
    assert_error(
        post(api, session.user_id, {"message": "other"}, HTTP_IDEMPOTENCY_KEY="k3"),
        422,
        "idempotency_key_reused",
    )
    assert_error(
        post(api, session.user_id, body, HTTP_IDEMPOTENCY_KEY="é"), 400, "invalid"
    )
    StreamingAgent.release.set()
    stream_producers()
    assert IdempotencyKey.objects.get(key="k3").response_status == 200


def test_stream_refused_conversation_releases_the_idempotency_key(
    api: APIClient, session: BetterAuthSession, assert_error: Callable[..., Any]
) -> None:
    body = {"message": "hi", "conversation_id": str(uuid.uuid4())}

    assert_error(
        post(api, session.user_id, body, HTTP_IDEMPOTENCY_KEY="k4"), 404, "not_found"
    )

    assert not IdempotencyKey.objects.exists()


def test_stream_other_users_sessions_never_see_each_others_ids(
    api: APIClient, session: BetterAuthSession, stream_producers: Callable[[], None]
) -> None:
    chat_id = str(uuid.uuid4())
    read_all(post(api, session.user_id, {"id": chat_id, "messages": [ui_message("a")]}))
    stream_producers()
    other = BetterAuthSessionFactory.create()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {other.token}")

    response = post(
        client, other.user_id, {"id": chat_id, "messages": [ui_message("b")]}
    )

    assert response.status_code == 404
    assert Message.objects.filter(conversation_id=chat_id).count() == 2


# SQLite's in-memory test database is never closed (Django keeps it).
@pytest.mark.postgresql
def test_stream_holds_no_database_connection_while_it_streams(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    stream_producers: Callable[[], None],
) -> None:
    settings.AGENT_BACKEND = STREAMING
    StreamingAgent.hold = True

    response = post(api, session.user_id, {"message": "hi"})
    chunks = iter(response.streaming_content)
    next(chunks)

    # This thread served the request: its connection went back before the
    # reply, which may take as long as AGENT_TIMEOUT_SECONDS.
    assert connection.connection is None
    StreamingAgent.release.set()
    b"".join(chunks)


def test_stream_reply_for_a_deleted_conversation_is_dropped(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    stream_producers: Callable[[], None],
) -> None:
    settings.AGENT_BACKEND = STREAMING
    StreamingAgent.hold = True

    response = post(api, session.user_id, {"message": "hi"})
    chunks = iter(response.streaming_content)
    first = sse.parse(next(chunks))
    Conversation.objects.filter(
        pk=first[0]["messageMetadata"]["conversationId"]
    ).delete()
    StreamingAgent.release.set()
    rest = sse.parse(b"".join(chunks))
    stream_producers()

    assert sse.types(rest)[-2:] == ["error", sse.DONE]
    assert rest[-2]["errorText"] == streaming.DELETED
    assert not Message.objects.exists()
