"""GET .../chat/stream/{conversation_id}/stream (CONTRACT §9): the reply in
progress from its first event, then live; 204 otherwise. In this process
without REDIS_URL, through Redis with it."""

import json
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import pytest
from pytest_django import Settings
from rest_framework.test import APIClient

from agent.tests.fakes import StreamingAgent
from better_auth.models import BetterAuthSession
from better_auth.tests.factories import BetterAuthSessionFactory
from conversations import streaming
from conversations.tests import sse
from conversations.tests.paths import resume_url, stream_url

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def held_reply(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    stream_producers: Callable[[], None],
) -> tuple[Iterator[bytes], list[Any]]:
    """A reply in progress: its response's chunks and the events read so
    far (the agent waits for StreamingAgent.release after its first item)."""
    settings.AGENT_BACKEND = "agent.tests.fakes.StreamingAgent"
    StreamingAgent.hold = True
    response: Any = api.post(
        stream_url(session.user_id),
        json.dumps({"id": str(uuid.uuid4()), "messages": [sse_message("hi")]}),
        content_type="application/json",
    )
    chunks = iter(response.streaming_content)
    events = sse.parse(next(chunks))
    while "text-delta" not in sse.types(events):
        events += sse.parse(next(chunks))
    return chunks, events


def sse_message(text: str) -> dict[str, Any]:
    return {"id": "m", "role": "user", "parts": [{"type": "text", "text": text}]}


def resume_in_progress(
    api: APIClient,
    session: BetterAuthSession,
    held_reply: tuple[Iterator[bytes], list[Any]],
    stream_producers: Callable[[], None],
) -> None:
    chunks, events = held_reply
    conversation_id = events[0]["messageMetadata"]["conversationId"]

    resumed: Any = api.get(resume_url(session.user_id, conversation_id))

    assert resumed.status_code == 200
    assert resumed["Content-Type"] == "text/event-stream"
    assert resumed["x-vercel-ai-ui-message-stream"] == "v1"
    resumed_chunks = iter(resumed.streaming_content)
    replayed = sse.parse(next(resumed_chunks))
    # From the start: the same events the POST sent so far.
    assert replayed == events[: len(replayed)]
    StreamingAgent.release.set()
    rest = sse.parse(b"".join(chunks))
    replayed += sse.parse(b"".join(resumed_chunks))
    assert replayed == events + rest
    assert sse.types(replayed)[-2:] == ["finish", sse.DONE]
    stream_producers()
    # Finished: nothing to resume.
    assert api.get(resume_url(session.user_id, conversation_id)).status_code == 204


def test_resume_replays_the_reply_in_progress_then_follows_it(
    api: APIClient,
    session: BetterAuthSession,
    held_reply: tuple[Iterator[bytes], list[Any]],
    stream_producers: Callable[[], None],
) -> None:
    resume_in_progress(api, session, held_reply, stream_producers)


@pytest.mark.parametrize("conversation", ["unknown", "malformed", "someone-elses"])
def test_resume_without_a_reply_in_progress_is_204(
    api: APIClient,
    session: BetterAuthSession,
    held_reply: tuple[Iterator[bytes], list[Any]],
    conversation: str,
) -> None:
    _, events = held_reply
    other = BetterAuthSessionFactory.create()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {other.token}")
    in_progress = events[0]["messageMetadata"]["conversationId"]
    conversation_id = {
        "unknown": str(uuid.uuid4()),
        "malformed": "not-a-uuid",
        "someone-elses": in_progress,
    }[conversation]

    response = client.get(resume_url(other.user_id, conversation_id))

    assert response.status_code == 204
    assert response.content == b""


def test_resume_needs_authentication_and_the_users_own_path(
    api: APIClient,
    session: BetterAuthSession,
    assert_error: Callable[..., Any],
) -> None:
    conversation_id = uuid.uuid4()
    assert_error(
        APIClient().get(resume_url(session.user_id, conversation_id)),
        401,
        "not_authenticated",
    )
    assert_error(api.get(resume_url("someone-else", conversation_id)), 404, "not_found")


def test_reply_buffer_sends_keep_alives_while_the_agent_is_silent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streaming, "KEEP_ALIVE_SECONDS", 0.05)
    buffer = streaming.ReplyBuffer()
    buffer.append(b"data: 1\n\n")
    reader = buffer.follow()

    assert next(reader) == b"data: 1\n\n"
    assert next(reader) == streaming.KEEP_ALIVE
    buffer.append(b"data: 2\n\n")
    buffer.close()
    assert list(reader) == [b"data: 2\n\n"]


# --- Redis -------------------------------------------------------------------


def redis_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture
def redis_relay(settings: Settings, unavailable: Callable[..., NoReturn]) -> None:
    if not redis_reachable():
        unavailable(
            "Redis not reachable at 127.0.0.1:6379",
            required_by="CHATAPI_REQUIRE_REDIS",
        )
    settings.REDIS_URL = REDIS_URL


def test_resume_through_redis_replays_and_follows(
    redis_relay: None,
    api: APIClient,
    session: BetterAuthSession,
    held_reply: tuple[Iterator[bytes], list[Any]],
    stream_producers: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another worker or server has none of this process's replies: resuming
    # can only go through Redis.
    monkeypatch.setattr(streaming.Relay, "_active", {})

    resume_in_progress(api, session, held_reply, stream_producers)


def test_redis_keys_of_a_reply_expire(
    redis_relay: None,
    session: BetterAuthSession,
    held_reply: tuple[Iterator[bytes], list[Any]],
    stream_producers: Callable[[], None],
) -> None:
    chunks, events = held_reply
    client = streaming.redis_client()
    key = (session.user_id, uuid.UUID(events[0]["messageMetadata"]["conversationId"]))
    active = streaming._active_key(key)
    reply = f"chat:stream:reply:{events[0]['messageId']}"

    assert client.get(active) == events[0]["messageId"].encode()
    assert 0 < client.ttl(active) <= 30 + streaming.FINISHED_TTL_SECONDS
    assert 0 < client.ttl(reply)
    StreamingAgent.release.set()
    b"".join(chunks)
    stream_producers()
    assert client.get(active) is None
    assert 0 < client.ttl(reply) <= streaming.FINISHED_TTL_SECONDS


def test_unreachable_redis_still_streams_and_stores(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    stream_producers: Callable[[], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # discard port: nothing listens

    response: Any = api.post(
        stream_url(session.user_id), {"message": "hi"}, format="json"
    )
    events = sse.parse(b"".join(response.streaming_content))
    stream_producers()

    assert sse.types(events)[-2:] == ["finish", sse.DONE]
    assert "not relayed to Redis" in caplog.text
    conversation_id = events[0]["messageMetadata"]["conversationId"]
    assert api.get(resume_url(session.user_id, conversation_id)).status_code == 204
