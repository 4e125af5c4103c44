import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
from pytest_django import Settings

from agent.backends.base import AgentReply, HistoryMessage, ModelUsage, ToolCall
from agent.exceptions import AgentError, AgentTimeoutError
from agent.runner import agent_reply_generate
from agent.tests.fakes import InvalidReplyAgent, RecordingAgent, SlowAgent

HISTORY = (
    HistoryMessage("user", "add buy milk"),
    HistoryMessage("assistant", "Added it."),
)


@pytest.fixture(autouse=True)
def _reset_fakes() -> Iterator[None]:
    RecordingAgent.reset()
    SlowAgent.reset()
    yield
    RecordingAgent.reset()
    SlowAgent.reset()


def generate(message: str = "hello") -> AgentReply:
    return agent_reply_generate(user_id="user-1", message=message, history=HISTORY)


def test_agent_reply_generate_returns_backend_reply(settings: Settings) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.RecordingAgent"

    reply = generate("hello")

    assert reply == AgentReply(
        content="echo: hello",
        tool_calls=(
            ToolCall("echo", {"message": "hello"}, {"ok": True}, "success"),
            ToolCall("audit", {"n": 2}, None, "error"),
        ),
    )
    assert [(c.user_id, c.message, c.history) for c in RecordingAgent.calls] == [
        ("user-1", "hello", HISTORY)
    ]


def test_agent_reply_generate_runs_backend_in_agent_thread(settings: Settings) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.RecordingAgent"

    generate()

    assert [call.thread for call in RecordingAgent.calls] == ["agent-call"]
    assert threading.current_thread().name != "agent-call"


def test_agent_reply_generate_raising_backend_raises_agent_error(
    settings: Settings,
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.FailingAgent"

    with pytest.raises(AgentError) as excinfo:
        generate()

    assert type(excinfo.value) is AgentError
    assert excinfo.value.status_code == 502
    assert excinfo.value.code == "agent_error"
    assert isinstance(excinfo.value.__cause__, RuntimeError)
    assert str(excinfo.value.__cause__) == "model unavailable"


def test_agent_reply_generate_slow_backend_times_out(settings: Settings) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.SlowAgent"
    settings.AGENT_TIMEOUT_SECONDS = 0.2
    SlowAgent.delay = 1.0

    started = time.monotonic()
    with pytest.raises(AgentTimeoutError) as excinfo:
        generate()
    elapsed = time.monotonic() - started

    assert elapsed < 0.9
    assert excinfo.value.status_code == 504
    assert excinfo.value.code == "agent_timeout"
    assert not SlowAgent.finished.is_set()


def test_agent_reply_generate_unimportable_backend_raises_agent_error(
    settings: Settings,
) -> None:
    settings.AGENT_BACKEND = "agent.tests.no_such_module.NoSuchAgent"

    with pytest.raises(AgentError) as excinfo:
        generate()

    assert type(excinfo.value) is AgentError
    assert isinstance(excinfo.value.__cause__, ImportError)


def _tool_call(**overrides: Any) -> ToolCall:
    fields: dict[str, Any] = {
        "tool_name": "add_task",
        "parameters": {"title": "buy milk"},
        "result": {"task_id": "1"},
        "status": "success",
    }
    fields.update(overrides)
    return ToolCall(**fields)


def _reply_with(**overrides: Any) -> AgentReply:
    return AgentReply(content="ok", tool_calls=(_tool_call(**overrides),))


INVALID_REPLIES = {
    "not_an_agent_reply": "just a string",
    "dict_instead_of_reply": {"content": "ok", "tool_calls": []},
    "content_not_str": AgentReply(content=cast(Any, 42)),
    "content_with_nul": AgentReply(content="bad\x00text"),
    "tool_call_not_a_tool_call": AgentReply(
        content="ok", tool_calls=cast(Any, ({"tool_name": "add_task"},))
    ),
    "tool_name_empty": _reply_with(tool_name=""),
    "tool_name_256_chars": _reply_with(tool_name="t" * 256),
    "tool_name_with_nul": _reply_with(tool_name="add\x00task"),
    "status_weird": _reply_with(status="weird"),
    "parameters_not_dict": _reply_with(parameters=["buy milk"]),
    "parameters_with_set": _reply_with(parameters={"tags": {"a", "b"}}),
    "result_nan": _reply_with(result=float("nan")),
    "result_nul_in_nested_dict_key": _reply_with(result={"outer": {"k\x00": 1}}),
    "result_nul_in_nested_list": _reply_with(result={"items": ["ok", ["a\x00"]]}),
    "usage_not_model_usage": AgentReply(
        content="ok", usage=cast(Any, {"model": "gpt", "prompt_tokens": 1})
    ),
    "usage_model_not_str": AgentReply(content="ok", usage=ModelUsage(cast(Any, 4))),
    "usage_model_256_chars": AgentReply(content="ok", usage=ModelUsage("m" * 256)),
    "usage_model_with_nul": AgentReply(content="ok", usage=ModelUsage("gpt\x00")),
    "usage_prompt_tokens_negative": AgentReply(
        content="ok", usage=ModelUsage("gpt", -1, 0)
    ),
    "usage_completion_tokens_2_31": AgentReply(
        content="ok", usage=ModelUsage("gpt", 0, 2**31)
    ),
    "usage_tokens_bool": AgentReply(
        content="ok", usage=ModelUsage("gpt", cast(Any, True), 1)
    ),
    "usage_tokens_float": AgentReply(
        content="ok", usage=ModelUsage("gpt", 1, cast(Any, 2.0))
    ),
    "usage_tokens_str": AgentReply(
        content="ok", usage=ModelUsage("gpt", cast(Any, "12"), 1)
    ),
}


@pytest.mark.parametrize(
    "reply", list(INVALID_REPLIES.values()), ids=list(INVALID_REPLIES)
)
def test_agent_reply_generate_invalid_reply_raises_agent_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, reply: Any
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.InvalidReplyAgent"
    monkeypatch.setattr(InvalidReplyAgent, "reply", reply)

    with pytest.raises(AgentError) as excinfo:
        generate()

    assert type(excinfo.value) is AgentError
    assert excinfo.value.code == "agent_error"


def test_agent_reply_generate_accepts_tool_name_of_255_chars(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = _reply_with(tool_name="t" * 255)
    settings.AGENT_BACKEND = "agent.tests.fakes.InvalidReplyAgent"
    monkeypatch.setattr(InvalidReplyAgent, "reply", reply)

    assert generate() == reply


def test_agent_reply_generate_accepts_null_result_and_nested_json(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = AgentReply(
        content="done",
        tool_calls=(
            _tool_call(result=None),
            _tool_call(
                tool_name="list_tasks",
                parameters={"filter": {"status": ["pending", "all"], "limit": 5}},
                result={"tasks": [{"id": 1, "tags": ["a", None], "done": False}]},
                status="error",
            ),
        ),
    )
    settings.AGENT_BACKEND = "agent.tests.fakes.InvalidReplyAgent"
    monkeypatch.setattr(InvalidReplyAgent, "reply", reply)

    assert generate() == reply


@pytest.mark.parametrize(
    "usage",
    [
        ModelUsage("m" * 255, 0, 2**31 - 1),
        ModelUsage("gpt-4o-mini", None, None),
        ModelUsage("", 10, None),
    ],
    ids=["limits", "no-tokens", "no-model-name"],
)
def test_agent_reply_generate_accepts_usage_within_limits(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, usage: ModelUsage
) -> None:
    reply = AgentReply(content="ok", usage=usage)
    settings.AGENT_BACKEND = "agent.tests.fakes.InvalidReplyAgent"
    monkeypatch.setattr(InvalidReplyAgent, "reply", reply)

    assert generate() == reply


def test_agent_reply_generate_backend_timeout_raises_agent_timeout_error(
    settings: Settings,
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.TimingOutAgent"

    with pytest.raises(AgentTimeoutError) as excinfo:
        generate()

    assert excinfo.value.status_code == 504
    assert excinfo.value.code == "agent_timeout"
    assert isinstance(excinfo.value.__cause__, AgentTimeoutError)
