"""The streamed chat with a real model behind the interface (CONTRACT §9,
§10): agent.backends.openai.OpenAIAgent against the scripted
OpenAI-compatible server and the todo MCP server. The reply is stored by the
producer thread, on its own connection: these tests commit.
"""

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pytest_django import Settings
from rest_framework.test import APIClient

from agent.tests.scripted_model import (
    Error,
    HangMidStream,
    ScriptedModel,
    Text,
    ToolCalls,
)
from agent.tests.todo_mcp import TodoMCP
from better_auth.models import BetterAuthSession
from better_auth.tests.factories import BetterAuthSessionFactory
from conversations.models import Message, ToolCall
from conversations.tests import sse
from conversations.tests.paths import stream_url

pytestmark = pytest.mark.django_db(transaction=True)


def post(api: APIClient, user_id: str, message: str) -> Any:
    return api.post(stream_url(user_id), {"message": message}, format="json")


def events_of(chunks: Any) -> list[Any]:
    return sse.parse(b"".join(chunks))


def test_the_text_arrives_as_the_model_streams_it(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    stream_producers: Callable[[], None],
) -> None:
    gate = threading.Event()
    real_model.script(
        Text("Here are your tasks.", pieces=["Here ", "are ", "your tasks."], gate=gate)
    )

    response = post(api, session.user_id, "list my tasks")
    assert response.status_code == 200
    chunks = iter(response.streaming_content)
    early: list[Any] = []
    # The model holds the rest of its answer until the gate opens: the first
    # piece must reach the client before that.
    while not any(isinstance(e, dict) and e["type"] == "text-delta" for e in early):
        early += sse.parse(next(chunks))
    gate.set()
    events = early + events_of(chunks)
    stream_producers()

    deltas = [
        e["delta"] for e in events if isinstance(e, dict) and e["type"] == "text-delta"
    ]
    assert deltas[0] == "Here "
    assert "".join(deltas) == "Here are your tasks."
    assert real_model.requests[0]["stream"] is True
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.content == "Here are your tasks."
    assert sse.types(events)[-3:] == ["text-end", "finish", sse.DONE]


def test_streamed_tool_calls_act_for_the_requesting_user_and_are_stored(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    todo_mcp: TodoMCP,
    stream_producers: Callable[[], None],
) -> None:
    other = BetterAuthSessionFactory.create()
    real_model.script(
        ToolCalls(
            [
                ("add_task", json.dumps({"title": "milk", "user_id": other.user_id})),
                ("complete_task", json.dumps({"task_id": 42})),
            ],
            usage=(50, 9),
        ),
        Text("Added milk; task 42 does not exist.", usage=(80, 8)),
    )

    response = post(api, session.user_id, "add milk and complete 42")
    events = events_of(response.streaming_content)
    stream_producers()

    assert todo_mcp.calls[0] == (
        "add_task",
        {"title": "milk", "user_id": session.user_id},
    )
    assert other.user_id not in todo_mcp.tasks
    message = sse.assembled(events)
    added, completed = message["tools"]
    assert added["name"] == "add_task"
    assert added["input"] == {"title": "milk", "user_id": session.user_id}
    assert added["output"]["title"] == "milk"
    assert completed["name"] == "complete_task"
    assert "no task 42" in completed["errorText"]
    assert message["text"] == "Added milk; task 42 does not exist."
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert str(reply.id) == message["id"]
    assert reply.content == message["text"]
    assert list(
        ToolCall.objects.filter(message=reply)
        .order_by("position")
        .values_list("tool_name", "status")
    ) == [("add_task", "success"), ("complete_task", "error")]
    assert (reply.model, reply.prompt_tokens, reply.completion_tokens) == (
        "scripted-model",
        130,
        17,
    )
    # Both model calls streamed, and asked for the usage.
    assert all(
        r["stream"] and r["stream_options"]["include_usage"]
        for r in real_model.requests
    )


@pytest.mark.parametrize(
    ("step", "timeout"),
    [
        (Error(500, headers={"retry-after": "0"}), 10.0),
        (HangMidStream("Let me look", after_pieces=1, seconds=5), 1.0),
    ],
    ids=["model-error", "model-hangs-mid-stream"],
)
def test_a_model_failing_mid_stream_sends_an_error_and_stores_no_reply(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    settings: Settings,
    stream_producers: Callable[[], None],
    step: Any,
    timeout: float,
) -> None:
    settings.AGENT_TIMEOUT_SECONDS = timeout
    real_model.script(*[step] * 3)

    started = time.monotonic()
    response = post(api, session.user_id, "hello?")
    events = events_of(response.streaming_content)
    stream_producers()

    assert response.status_code == 200
    assert "error" in sse.types(events)
    assert time.monotonic() - started < 5
    assert list(Message.objects.values_list("role", flat=True)) == ["user"]
    assert not ToolCall.objects.exists()
