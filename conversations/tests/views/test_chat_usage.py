"""What a reply cost (agent.backends.base.ModelUsage): stored with the
assistant message by the JSON chat and the stream, for operators; never in
a response or an event. A backend's own AgentTimeoutError is a 504."""

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_django import Settings
from rest_framework.test import APIClient

from agent.backends.base import ModelUsage
from agent.tests.fakes import StreamingAgent, UsageAgent
from better_auth.models import BetterAuthSession
from conversations.models import Message
from conversations.tests import sse
from conversations.tests.paths import chat_url, messages_url, stream_url

USAGE = "agent.tests.fakes.UsageAgent"
STREAMING = "agent.tests.fakes.StreamingAgent"
AssertError = Callable[[Any, int, str], dict[str, Any]]


@pytest.fixture(autouse=True)
def _reset_fakes() -> Iterator[None]:
    UsageAgent.reset()
    yield
    UsageAgent.reset()


def chat(api: APIClient, user_id: str, message: str = "add tea") -> Any:
    return api.post(chat_url(user_id), {"message": message}, format="json")


def stream(api: APIClient, user_id: str, message: str = "add tea") -> list[Any]:
    response: Any = api.post(
        stream_url(user_id),
        json.dumps({"message": message}),
        content_type="application/json",
    )
    assert response.status_code == 200
    return sse.parse(b"".join(response.streaming_content))


def usage_of(message: Message) -> tuple[str, int | None, int | None]:
    message.refresh_from_db()
    return (message.model, message.prompt_tokens, message.completion_tokens)


def messages_of(conversation_id: Any) -> list[Message]:
    return list(Message.objects.filter(conversation_id=conversation_id))


@pytest.mark.django_db
def test_chat_stores_the_model_and_tokens_on_the_assistant_message(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> None:
    settings.AGENT_BACKEND = USAGE

    response = chat(api, session.user_id)

    assert response.status_code == 200
    body = response.json()
    question, answer = messages_of(body["conversation_id"])
    assert usage_of(answer) == ("gpt-test-mini", 1200, 34)
    assert usage_of(question) == ("", None, None)
    # For operators only: the API shows neither.
    assert not {"model", "usage", "prompt_tokens"} & set(body)
    page = api.get(messages_url(session.user_id, body["conversation_id"])).json()
    assert all("model" not in m and "prompt_tokens" not in m for m in page["messages"])


@pytest.mark.django_db
def test_chat_stores_unreported_tokens_as_null(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> None:
    settings.AGENT_BACKEND = USAGE
    UsageAgent.usage = ModelUsage("llama3.1:8b")

    response = chat(api, session.user_id)

    _, answer = messages_of(response.json()["conversation_id"])
    assert usage_of(answer) == ("llama3.1:8b", None, None)


@pytest.mark.django_db
def test_chat_stub_reply_stores_no_model_and_null_tokens(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> None:
    settings.AGENT_BACKEND = "agent.backends.stub.StubAgent"

    response = chat(api, session.user_id)

    _, answer = messages_of(response.json()["conversation_id"])
    assert answer.role == Message.Role.ASSISTANT
    assert usage_of(answer) == ("", None, None)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "usage",
    [
        ModelUsage("m" * 256, 1, 1),
        ModelUsage("gpt\x00", 1, 1),
        ModelUsage("gpt", -1, 1),
        ModelUsage("gpt", 1, 2**31),
        ModelUsage("gpt", True, 1),
    ],
    ids=["long-model", "nul-model", "negative", "too-many", "bool"],
)
def test_chat_invalid_usage_answers_502_and_stores_no_reply(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    assert_error: AssertError,
    usage: ModelUsage,
) -> None:
    settings.AGENT_BACKEND = USAGE
    UsageAgent.usage = usage

    response = chat(api, session.user_id)

    assert_error(response, 502, "agent_error")
    assert list(Message.objects.values_list("role", flat=True)) == ["user"]


@pytest.mark.django_db
def test_chat_backend_raising_agent_timeout_answers_504(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    assert_error: AssertError,
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.TimingOutAgent"

    response = chat(api, session.user_id)

    assert_error(response, 504, "agent_timeout")
    assert list(Message.objects.values_list("role", flat=True)) == ["user"]


# --- the stream --------------------------------------------------------------


def without_ids(events: list[Any]) -> list[Any]:
    """The events with the ids a new reply gets each time left out."""
    random = {"messageId", "messageMetadata", "toolCallId"}
    return [
        e if isinstance(e, str) else {k: v for k, v in e.items() if k not in random}
        for e in events
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("where", ["last", "mid-text"])
def test_stream_stores_usage_and_sends_the_same_events(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    stream_producers: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    settings.AGENT_BACKEND = STREAMING
    plain = StreamingAgent.items
    usage = ModelUsage("gpt-test-mini", 80, 7)
    with_usage = (*plain, usage) if where == "last" else (*plain[:3], usage, *plain[3:])
    expected = stream(api, session.user_id)
    stream_producers()

    monkeypatch.setattr(StreamingAgent, "items", with_usage)
    events = stream(api, session.user_id)
    stream_producers()

    assert without_ids(events) == without_ids(expected)
    assert sse.types(events)[-2:] == ["finish", sse.DONE]
    answer = Message.objects.get(pk=events[0]["messageId"])
    assert answer.content == "Hello, world"
    assert usage_of(answer) == ("gpt-test-mini", 80, 7)
    earlier = Message.objects.get(pk=expected[0]["messageId"])
    assert usage_of(earlier) == ("", None, None)


@pytest.mark.django_db(transaction=True)
def test_stream_of_a_backend_without_stream_response_stores_its_usage(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    stream_producers: Callable[[], None],
) -> None:
    settings.AGENT_BACKEND = USAGE

    events = stream(api, session.user_id)
    stream_producers()

    assert sse.types(events) == [
        "start",
        "tool-input-available",
        "tool-output-available",
        "text-start",
        "text-delta",
        "text-end",
        "finish",
        sse.DONE,
    ]
    answer = Message.objects.get(pk=events[0]["messageId"])
    assert usage_of(answer) == ("gpt-test-mini", 1200, 34)


@pytest.mark.django_db(transaction=True)
def test_stream_invalid_usage_is_an_error_event_and_stores_no_reply(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    stream_producers: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.AGENT_BACKEND = STREAMING
    bad = ModelUsage("gpt", -5, 1)
    monkeypatch.setattr(StreamingAgent, "items", (*StreamingAgent.items, bad))

    events = stream(api, session.user_id)
    stream_producers()

    assert sse.types(events)[-2:] == ["error", sse.DONE]
    assert events[-2]["errorText"] == (
        "The assistant could not answer. Please try again."
    )
    assert list(Message.objects.values_list("role", flat=True)) == ["user"]


@pytest.mark.django_db(transaction=True)
def test_stream_backend_raising_agent_timeout_is_a_timeout_error_event(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    stream_producers: Callable[[], None],
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.TimingOutAgent"

    events = stream(api, session.user_id)
    stream_producers()

    assert sse.types(events)[-2:] == ["error", sse.DONE]
    assert events[-2]["errorText"] == (
        "The assistant took too long to answer. Please try again."
    )
    assert list(Message.objects.values_list("role", flat=True)) == ["user"]
