"""agent.backends.openai.OpenAIAgent called directly, without the runner:
its own deadline, cancellation, and the order of what it streams. The
behaviour over HTTP is in conversations/tests/views/test_chat*_real_model.py.
"""

import asyncio
import concurrent.futures
import json
import threading
import time
from types import SimpleNamespace

import pytest
from mcp import Client
from pytest_django import Settings

from agent.backends import get_backend
from agent.backends.base import ModelUsage, ToolCall
from agent.backends.openai import OpenAIAgent, Toolbox
from agent.exceptions import AgentTimeoutError
from agent.tests.scripted_model import Error, Hang, ScriptedModel, Text, ToolCalls


def agent() -> OpenAIAgent:
    backend = get_backend()
    assert isinstance(backend, OpenAIAgent)
    return backend


def replies_running(backend: OpenAIAgent) -> set[asyncio.Task[object]]:
    assert backend._loop is not None
    return asyncio.all_tasks(backend._loop.loop)


@pytest.mark.parametrize(
    "step",
    [Hang(seconds=5), Error(429, headers={"retry-after": "30"})],
    ids=["model-hangs", "retry-after-past-the-deadline"],
)
def test_the_backend_stops_at_its_own_deadline(
    real_model: ScriptedModel, settings: Settings, step: object
) -> None:
    """Not only the runner's: the work itself stops, the SDK's retry and its
    back-off included, so nothing goes on in the background."""
    settings.AGENT_TIMEOUT_SECONDS = 1
    real_model.script(step)  # type: ignore[arg-type]
    backend = agent()

    started = time.monotonic()
    with pytest.raises(AgentTimeoutError):
        backend.generate_response(user_id="u-1", message="hi", history=[])

    assert time.monotonic() - started < 3
    assert len(real_model.requests) == 1
    assert not replies_running(backend)


def test_a_stream_streams_tool_calls_then_text_then_usage(
    real_model: ScriptedModel,
) -> None:
    real_model.script(
        ToolCalls([("list_tasks", json.dumps({}))], usage=(10, 2)),
        Text("You have none.", usage=(20, 4)),
    )

    items = list(agent().stream_response(user_id="u-1", message="list", history=[]))

    assert isinstance(items[0], ToolCall)
    assert items[0].tool_name == "list_tasks"
    assert items[0].parameters == {"user_id": "u-1"}
    assert "".join(i for i in items if isinstance(i, str)) == "You have none."
    assert items[-1] == ModelUsage("scripted-model", 30, 6)


def test_closing_a_stream_cancels_its_reply(real_model: ScriptedModel) -> None:
    gate = threading.Event()
    real_model.script(Text("one two three", gate=gate))
    backend = agent()
    stream = iter(backend.stream_response(user_id="u-1", message="hi", history=[]))

    assert next(stream) == "one "
    stream.close()  # type: ignore[attr-defined]

    deadline = time.monotonic() + 2
    while replies_running(backend) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not replies_running(backend)
    gate.set()


def test_closing_the_backend_ends_the_replies_in_progress(
    real_model: ScriptedModel,
) -> None:
    gate = threading.Event()
    real_model.script(Text("one two three", gate=gate))
    backend = agent()
    stream = iter(backend.stream_response(user_id="u-1", message="hi", history=[]))
    assert next(stream) == "one "

    threading.Timer(0.1, backend.close).start()
    with pytest.raises(concurrent.futures.CancelledError):
        list(stream)
    gate.set()


def test_a_forked_process_starts_its_own_event_loop(
    real_model: ScriptedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_model.script(Text("a"), Text("b"))
    backend = agent()
    backend.generate_response(user_id="u-1", message="hi", history=[])
    first = backend._loop

    monkeypatch.setattr("os.getpid", lambda: -1)
    backend.generate_response(user_id="u-1", message="hi", history=[])

    assert backend._loop is not first
    assert first is not None
    first.stop()


def test_a_tool_whose_name_the_model_api_refuses_is_left_out() -> None:
    toolbox = Toolbox(user_id="u-1")
    tools = [
        SimpleNamespace(name="todo.add", description="", input_schema={}),
        SimpleNamespace(name="add_task", description="", input_schema={}),
    ]

    left_out = toolbox.add(Client("http://127.0.0.1:9/mcp"), "server", tools)

    assert left_out == {"todo.add": "a function name is 1-64 letters, digits, _ or -"}
    assert [spec["function"]["name"] for spec in toolbox.specs] == ["add_task"]
