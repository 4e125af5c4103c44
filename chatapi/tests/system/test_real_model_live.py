"""The real model (agent.backends.openai.OpenAIAgent) through gunicorn:
two forked workers, each starting its own event loop, against the scripted
OpenAI-compatible server and the todo MCP server of this test process; the
stream read by the AI SDK's own client (interop/ai-sdk/chat.mjs).
"""

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from agent.tests.scripted_model import ScriptedModel, Text, ToolCalls
from agent.tests.todo_mcp import TodoMCP
from better_auth.tests.factories import BetterAuthSessionFactory
from conversations.models import Message, ToolCall

from .servers import Gunicorn, attach_log, server_environment
from .test_chat_stream_live import (
    ai_sdk_chat,
    api,
    assert_same_as_stored,
    node,  # noqa: F401  (a fixture)
    server_database_url,
)

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def model_and_tools() -> Iterator[tuple[ScriptedModel, TodoMCP]]:
    model, tools = ScriptedModel(), TodoMCP()
    yield model, tools
    model.close()
    tools.close()


@pytest.fixture
def scripted(model_and_tools: tuple[ScriptedModel, TodoMCP]) -> ScriptedModel:
    model, tools = model_and_tools
    model.reset()
    tools.reset()
    return model


@pytest.fixture(scope="module")
def server(
    django_db_setup: None,
    model_and_tools: tuple[ScriptedModel, TodoMCP],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gunicorn]:
    model, tools = model_and_tools
    env = server_environment(
        server_database_url(),
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="8",
        AGENT_BACKEND="agent.backends.openai.OpenAIAgent",
        OPENAI_BASE_URL=model.url,
        OPENAI_API_KEY="live-key",
        AGENT_MODEL="scripted-model",
        AGENT_MCP_SERVERS=tools.url,
    )
    running = Gunicorn(env, tmp_path_factory.mktemp("gunicorn-real-model"))
    try:
        yield running.start()
    finally:
        running.stop()


def test_ai_sdk_chat_with_the_real_model_and_its_tools(
    node: str,  # noqa: F811
    server: Gunicorn,
    scripted: ScriptedModel,
    model_and_tools: tuple[ScriptedModel, TodoMCP],
    request: pytest.FixtureRequest,
) -> None:
    attach_log(request, "gunicorn stderr", server.stderr)
    tools = model_and_tools[1]
    session = BetterAuthSessionFactory.create()
    scripted.script(
        ToolCalls([("add_task", json.dumps({"title": "milk", "user_id": "x"}))]),
        Text("Added milk to your tasks.", usage=(40, 6)),
    )

    answer = ai_sdk_chat(
        node,
        api=api(server, session.user_id),
        token=session.token,
        chatId=str(uuid.uuid4()),
        text="add milk",
    )

    assert answer["status"] == "ready", answer
    assert answer["chunkTypes"].count("text-delta") > 1
    reply = Message.objects.get(pk=answer["message"]["id"])
    assert_same_as_stored(answer["message"], reply)
    assert reply.content == "Added milk to your tasks."
    assert (reply.model, reply.prompt_tokens) == ("scripted-model", 40)
    assert tools.calls == [("add_task", {"title": "milk", "user_id": session.user_id})]
    assert ToolCall.objects.get(message=reply).parameters["user_id"] == session.user_id


def test_concurrent_json_chats_through_two_workers(
    server: Gunicorn, scripted: ScriptedModel, request: pytest.FixtureRequest
) -> None:
    attach_log(request, "gunicorn stderr", server.stderr)
    sessions = [BetterAuthSessionFactory.create() for _ in range(12)]
    scripted.script(*[Text("Hello.")] * len(sessions))

    with ThreadPoolExecutor(len(sessions)) as pool:
        results = list(
            pool.map(lambda s: server.chat(s.user_id, s.token, "hi"), sessions)
        )

    assert [r.status for r in results] == [200] * len(sessions)
    assert {r.json()["response"] for r in results} == {"Hello."}
    assert len(scripted.requests) == len(sessions)
