"""The chat with a real model behind the interface (CONTRACT §10), over HTTP:
agent.backends.openai.OpenAIAgent against the scripted OpenAI-compatible
server (agent.tests.scripted_model) and a real MCP server of todo tasks
(agent.tests.todo_mcp). Each test reads what the model and the tools got.

The JSON chat here; the stream in test_chat_stream_real_model.py.
"""

import json
import logging
import time
from typing import Any

import pytest
from pytest_django import Settings
from rest_framework.test import APIClient

from agent.backends.openai import ROUND_SEPARATOR
from agent.tests.scripted_model import (
    Error,
    Hang,
    Malformed,
    ScriptedModel,
    Text,
    ToolCalls,
)
from agent.tests.todo_mcp import TodoMCP
from better_auth.models import BetterAuthSession
from better_auth.tests.factories import BetterAuthSessionFactory
from conversations.models import Message, ToolCall
from conversations.tests.paths import chat_url

pytestmark = pytest.mark.django_db


def chat(api: APIClient, user_id: str, message: str, **body: Any) -> Any:
    return api.post(chat_url(user_id), {"message": message, **body}, format="json")


def arguments(**values: Any) -> str:
    return json.dumps(values)


def offered(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tools a model request offered: name -> JSON Schema of its input."""
    return {
        tool["function"]["name"]: tool["function"]["parameters"]
        for tool in request.get("tools", [])
    }


def test_the_model_gets_the_system_prompt_the_history_and_the_message(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    settings: Settings,
) -> None:
    settings.AGENT_SYSTEM_PROMPT = "You manage todos."
    real_model.script(Text("Hello!"), Text("Still here."))

    first = chat(api, session.user_id, "hi")
    second = chat(
        api,
        session.user_id,
        "are you there?",
        conversation_id=first.json()["conversation_id"],
    )

    assert first.status_code == second.status_code == 200
    assert first.json()["response"] == "Hello!"
    assert second.json()["response"] == "Still here."
    request = real_model.requests[1]
    assert request["model"] == "scripted-model"
    assert not request.get("stream")
    assert request["messages"] == [
        {"role": "system", "content": "You manage todos."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "are you there?"},
    ]
    assert real_model.request_headers[0]["authorization"] == "Bearer test-key"


def test_the_model_is_offered_the_mcp_tools_without_user_id(
    api: APIClient, session: BetterAuthSession, real_model: ScriptedModel
) -> None:
    real_model.script(Text("Hi."))

    assert chat(api, session.user_id, "hi").status_code == 200

    tools = offered(real_model.requests[0])
    assert {"add_task", "list_tasks", "complete_task", "server_time"} <= set(tools)
    for schema in tools.values():
        assert "user_id" not in schema.get("properties", {})
        assert "user_id" not in schema.get("required", [])
    assert tools["add_task"]["required"] == ["title"]


def test_a_tool_call_acts_for_the_requesting_user_whatever_the_model_wrote(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    todo_mcp: TodoMCP,
) -> None:
    other = BetterAuthSessionFactory.create()
    real_model.script(
        ToolCalls([("add_task", arguments(title="buy milk", user_id=other.user_id))]),
        Text("Added buy milk."),
    )

    response = chat(api, session.user_id, "add buy milk for the other user")

    assert response.status_code == 200
    body = response.json()
    assert body["response"] == "Added buy milk."
    # The tool got the requesting user's id, not the one the model wrote.
    assert todo_mcp.calls == [
        ("add_task", {"title": "buy milk", "user_id": session.user_id})
    ]
    assert [task.title for task in todo_mcp.tasks[session.user_id]] == ["buy milk"]
    assert other.user_id not in todo_mcp.tasks
    [call] = body["tool_calls"]
    assert call["tool_name"] == "add_task"
    assert call["parameters"] == {"title": "buy milk", "user_id": session.user_id}
    assert call["status"] == "success"
    assert call["result"]["title"] == "buy milk"
    stored = ToolCall.objects.get()
    assert stored.parameters == call["parameters"]
    assert stored.result == call["result"]
    # The result went back to the model, as the answer to its call.
    assistant, tool = real_model.requests[1]["messages"][-2:]
    assert assistant["tool_calls"][0]["function"]["name"] == "add_task"
    assert tool["role"] == "tool"
    assert tool["tool_call_id"] == assistant["tool_calls"][0]["id"]
    assert json.loads(tool["content"])["title"] == "buy milk"


def test_a_user_id_is_dropped_for_a_tool_that_takes_none(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    todo_mcp: TodoMCP,
) -> None:
    real_model.script(
        ToolCalls([("server_time", arguments(user_id="someone-else"))]), Text("Noon.")
    )

    response = chat(api, session.user_id, "what time is it?")

    assert response.status_code == 200
    assert todo_mcp.calls == [("server_time", {})]
    assert response.json()["tool_calls"][0]["parameters"] == {}


def test_tool_calls_of_several_rounds_are_stored_in_order(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    todo_mcp: TodoMCP,
) -> None:
    real_model.script(
        ToolCalls(
            [
                ("add_task", arguments(title="one")),
                ("add_task", arguments(title="two")),
            ],
            content="Adding both.",
        ),
        ToolCalls([("complete_task", arguments(task_id=1))]),
        Text("Done: two tasks, the first completed."),
    )

    response = chat(api, session.user_id, "add one and two, complete one")

    assert response.status_code == 200
    body = response.json()
    assert [c["tool_name"] for c in body["tool_calls"]] == [
        "add_task",
        "add_task",
        "complete_task",
    ]
    assert all(c["status"] == "success" for c in body["tool_calls"])
    assert body["response"] == (
        "Adding both." + ROUND_SEPARATOR + "Done: two tasks, the first completed."
    )
    assert [t.completed for t in todo_mcp.tasks[session.user_id]] == [True, False]
    assert list(
        ToolCall.objects.order_by("position").values_list("tool_name", flat=True)
    ) == ["add_task", "add_task", "complete_task"]


@pytest.mark.parametrize(
    ("requested", "error"),
    [
        (("complete_task", arguments(task_id=99)), "no task 99"),
        (("launch_rockets", arguments()), "No server offers the tool 'launch_rockets'"),
        (("add_task", "{not json"), "The arguments are not a JSON object"),
        (("add_task", "[1, 2]"), "The arguments are not a JSON object"),
    ],
    ids=["tool-error", "unknown-tool", "malformed-arguments", "arguments-not-object"],
)
def test_a_failed_tool_call_is_stored_as_an_error_and_the_reply_goes_on(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    requested: tuple[str, str],
    error: str,
) -> None:
    real_model.script(ToolCalls([requested]), Text("That did not work."))

    response = chat(api, session.user_id, "do it")

    assert response.status_code == 200
    assert response.json()["response"] == "That did not work."
    [call] = response.json()["tool_calls"]
    assert call["tool_name"] == requested[0]
    assert call["status"] == "error"
    assert error in call["result"]
    # The model was told, so that it can say so.
    tool_message = real_model.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["content"].startswith("Error: ")
    assert error in tool_message["content"]


def test_an_unreachable_mcp_server_is_left_out_and_logged(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    todo_mcp: TodoMCP,
    settings: Settings,
    unreachable_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.AGENT_MCP_SERVERS = [f"{unreachable_url}/mcp", todo_mcp.url]
    real_model.script(ToolCalls([("list_tasks", arguments())]), Text("No tasks."))

    with caplog.at_level(logging.WARNING, logger="agent.backends.openai"):
        response = chat(api, session.user_id, "list my tasks")

    assert response.status_code == 200
    assert "add_task" in offered(real_model.requests[0])
    assert response.json()["tool_calls"][0]["status"] == "success"
    assert f"MCP server {unreachable_url}/mcp cannot be reached" in caplog.text


def test_no_tools_are_offered_when_no_server_can_be_reached(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    settings: Settings,
    unreachable_url: str,
) -> None:
    settings.AGENT_MCP_SERVERS = [f"{unreachable_url}/mcp"]
    real_model.script(Text("I cannot reach your tasks right now."))

    response = chat(api, session.user_id, "list my tasks")

    assert response.status_code == 200
    assert "tools" not in real_model.requests[0]


def test_after_the_last_tool_round_the_model_answers_without_tools(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    todo_mcp: TodoMCP,
    settings: Settings,
) -> None:
    settings.AGENT_MAX_TOOL_ROUNDS = 2
    real_model.script(
        ToolCalls([("list_tasks", arguments())]),
        ToolCalls([("list_tasks", arguments())]),
        Text("Here is what I found."),
    )

    response = chat(api, session.user_id, "list my tasks, again and again")

    assert response.status_code == 200
    assert response.json()["response"] == "Here is what I found."
    assert len(response.json()["tool_calls"]) == 2
    assert [bool(offered(r)) for r in real_model.requests] == [True, True, False]
    assert len(todo_mcp.calls) == 2


def test_with_no_tool_rounds_no_tools_are_offered_nor_servers_contacted(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    todo_mcp: TodoMCP,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.AGENT_MAX_TOOL_ROUNDS = 0
    settings.AGENT_MCP_SERVERS = ["http://127.0.0.1:9/mcp"]  # would be logged
    real_model.script(Text("Just talking."))

    with caplog.at_level(logging.WARNING, logger="agent.backends.openai"):
        response = chat(api, session.user_id, "hi")

    assert response.status_code == 200
    assert "tools" not in real_model.requests[0]
    assert "cannot be reached" not in caplog.text


def test_the_reply_records_the_model_and_its_tokens(
    api: APIClient, session: BetterAuthSession, real_model: ScriptedModel
) -> None:
    real_model.script(
        ToolCalls([("list_tasks", arguments())], model="gpt-x-2026", usage=(100, 7)),
        Text("None.", model="gpt-x-2026", usage=(130, 3)),
    )

    response = chat(api, session.user_id, "list my tasks")

    assert response.status_code == 200
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert (reply.model, reply.prompt_tokens, reply.completion_tokens) == (
        "gpt-x-2026",
        230,
        10,
    )
    user_message = Message.objects.get(role=Message.Role.USER)
    assert (user_message.model, user_message.prompt_tokens) == ("", None)


def test_without_usage_from_the_api_the_model_name_is_still_recorded(
    api: APIClient, session: BetterAuthSession, real_model: ScriptedModel
) -> None:
    real_model.script(Text("Hi.", model="llama3.1"))

    assert chat(api, session.user_id, "hi").status_code == 200

    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert (reply.model, reply.prompt_tokens, reply.completion_tokens) == (
        "llama3.1",
        None,
        None,
    )


@pytest.mark.parametrize(
    "steps",
    [
        # The SDK retries a 5xx twice: three answers, then the error.
        [Error(500, headers={"retry-after": "0"})] * 3,
        [Error(401)],
        [Error(400)],
        [Malformed(b"this is not JSON")],
        [Malformed(b'{"id": "x", "object": "chat.completion"}')],
        [Malformed(b'{"choices": [{"message": {"content": 42}}]}')],
    ],
    ids=["500", "401", "400", "not-json", "no-choices", "content-not-text"],
)
def test_a_failing_or_malformed_model_api_is_502_and_keeps_the_users_message(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    steps: list[Any],
) -> None:
    real_model.script(*steps)

    response = chat(api, session.user_id, "hello?")

    assert response.status_code == 502
    assert response.json()["code"] == "agent_error"
    assert len(real_model.requests) == len(steps)
    assert list(Message.objects.values_list("role", "content")) == [("user", "hello?")]
    assert not ToolCall.objects.exists()


def test_an_unreachable_model_api_is_502(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    settings: Settings,
    unreachable_url: str,
) -> None:
    settings.OPENAI_BASE_URL = f"{unreachable_url}/v1"

    response = chat(api, session.user_id, "hello?")

    assert response.status_code == 502
    assert response.json()["code"] == "agent_error"
    assert Message.objects.filter(role=Message.Role.USER).count() == 1


def test_a_transient_model_error_is_retried_by_the_sdk(
    api: APIClient, session: BetterAuthSession, real_model: ScriptedModel
) -> None:
    real_model.script(Error(503, headers={"retry-after": "0"}), Text("Back."))

    response = chat(api, session.user_id, "hello?")

    assert response.status_code == 200
    assert response.json()["response"] == "Back."
    assert len(real_model.requests) == 2


@pytest.mark.parametrize(
    "step",
    [Hang(seconds=5), Error(429, headers={"retry-after": "30"})],
    ids=["model-hangs", "retry-after-past-the-deadline"],
)
def test_the_deadline_covers_the_model_and_the_sdks_retries(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    settings: Settings,
    step: Any,
) -> None:
    settings.AGENT_TIMEOUT_SECONDS = 1
    real_model.script(step)

    started = time.monotonic()
    response = chat(api, session.user_id, "hello?")

    assert response.status_code == 504
    assert response.json()["code"] == "agent_timeout"
    assert time.monotonic() - started < 4
    assert list(Message.objects.values_list("role", flat=True)) == ["user"]


def test_the_deadline_covers_tool_calls(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    todo_mcp: TodoMCP,
    settings: Settings,
) -> None:
    settings.AGENT_TIMEOUT_SECONDS = 1
    settings.AGENT_MCP_TIMEOUT_SECONDS = 10
    real_model.script(ToolCalls([("slow_task", arguments(seconds=5))]))

    started = time.monotonic()
    response = chat(api, session.user_id, "do the slow thing")

    assert response.status_code == 504
    assert time.monotonic() - started < 4
    assert todo_mcp.calls[0][0] == "slow_task"
    assert not ToolCall.objects.exists()
    assert not Message.objects.filter(role=Message.Role.ASSISTANT).exists()


def test_a_tool_slower_than_its_own_limit_is_an_error_and_the_reply_goes_on(
    api: APIClient,
    session: BetterAuthSession,
    real_model: ScriptedModel,
    settings: Settings,
) -> None:
    settings.AGENT_MCP_TIMEOUT_SECONDS = 0.5
    real_model.script(
        ToolCalls([("slow_task", arguments(seconds=3))]), Text("It took too long.")
    )

    response = chat(api, session.user_id, "do the slow thing")

    assert response.status_code == 200
    [call] = response.json()["tool_calls"]
    assert call["status"] == "error"
    assert call["result"] == "The tool did not answer in time."
