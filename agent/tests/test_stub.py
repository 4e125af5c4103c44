import dataclasses
import json
import time

import pytest
from pytest_django import Settings

from agent.backends.base import AgentReply, HistoryMessage, ToolCall
from agent.backends.stub import HELP, StubAgent


def reply_to(message: str, history: tuple[HistoryMessage, ...] = ()) -> AgentReply:
    return StubAgent().generate_response(
        user_id="user-1", message=message, history=history
    )


def test_stub_same_input_gives_equal_reply() -> None:
    history = (HistoryMessage("user", "hi"), HistoryMessage("assistant", "hello"))

    first = reply_to("add buy milk", history)
    second = StubAgent().generate_response(
        user_id="user-1", message="add buy milk", history=history
    )

    assert first == second


def test_stub_same_chat_text_gives_equal_reply() -> None:
    assert reply_to("what is the weather?") == reply_to("what is the weather?")


def test_stub_add_calls_add_task_with_title() -> None:
    reply = reply_to("add buy milk")

    assert len(reply.tool_calls) == 1
    call = reply.tool_calls[0]
    assert call.tool_name == "add_task"
    assert call.parameters == {"title": "buy milk"}
    assert call.status == "success"
    assert call.result["title"] == "buy milk"
    assert reply.content == "Added “buy milk” to your tasks."


def test_stub_add_strips_task_word() -> None:
    reply = reply_to("Add task: Call mom")

    assert [(c.tool_name, c.parameters) for c in reply.tool_calls] == [
        ("add_task", {"title": "Call mom"})
    ]
    assert "Call mom" in reply.content


def test_stub_add_keeps_words_that_start_with_task() -> None:
    reply = reply_to("add taskforce meeting")

    assert reply.tool_calls[0].parameters == {"title": "taskforce meeting"}


def test_stub_add_without_title_reports_error_and_asks() -> None:
    reply = reply_to("add")

    assert len(reply.tool_calls) == 1
    call = reply.tool_calls[0]
    assert (call.tool_name, call.parameters, call.status) == (
        "add_task",
        {"title": ""},
        "error",
    )
    assert call.result == {"error": "missing argument"}
    assert reply.content == "What should the task be called?"


def test_stub_list_pending_calls_list_tasks_with_status() -> None:
    reply = reply_to("list pending")

    assert [(c.tool_name, c.parameters, c.status) for c in reply.tool_calls] == [
        ("list_tasks", {"status": "pending"}, "success")
    ]


def test_stub_list_without_filter_lists_all() -> None:
    reply = reply_to("list tasks")

    assert [(c.tool_name, c.parameters) for c in reply.tool_calls] == [
        ("list_tasks", {"status": "all"})
    ]


@pytest.mark.parametrize(
    ("message", "tool_name", "parameters"),
    [
        ("complete 3", "complete_task", {"task_id": "3"}),
        ("delete 3", "delete_task", {"task_id": "3"}),
        ("update 3 to eggs", "update_task", {"task_id": "3", "title": "eggs"}),
    ],
)
def test_stub_task_command_calls_tool_with_parameters(
    message: str, tool_name: str, parameters: dict[str, str]
) -> None:
    reply = reply_to(message)

    assert [(c.tool_name, c.parameters, c.status) for c in reply.tool_calls] == [
        (tool_name, parameters, "success")
    ]


def test_stub_update_without_to_keeps_whole_title() -> None:
    reply = reply_to("update 3 tomatoes")

    assert reply.tool_calls[0].parameters == {"task_id": "3", "title": "tomatoes"}


@pytest.mark.parametrize(
    "message", ["hello", "Hi", "hey there", "Good morning!", "good evening"]
)
def test_stub_greeting_gets_hello_and_help_without_tool_calls(message: str) -> None:
    reply = reply_to(message)

    assert reply == AgentReply(content=f"Hello! {HELP}")
    assert reply.tool_calls == ()


def test_stub_other_text_gets_canned_reply_without_tool_calls() -> None:
    reply = reply_to("what is the weather?")

    assert reply.content == (
        f"(stub assistant, turn 1) You said: what is the weather?\n{HELP}"
    )
    assert reply.tool_calls == ()


@pytest.mark.parametrize(
    ("message", "tool_name"),
    [
        ("ADD Buy Milk", "add_task"),
        ("List PENDING", "list_tasks"),
        ("Complete 3", "complete_task"),
        ("DELETE 3", "delete_task"),
        ("Update 3 to eggs", "update_task"),
    ],
)
def test_stub_verbs_are_case_insensitive(message: str, tool_name: str) -> None:
    reply = reply_to(message)

    assert [c.tool_name for c in reply.tool_calls] == [tool_name]


def test_stub_uppercase_add_keeps_title_as_written() -> None:
    reply = reply_to("ADD Buy Milk")

    assert reply.tool_calls[0].parameters == {"title": "Buy Milk"}


def test_stub_reply_is_agent_reply_of_tool_calls() -> None:
    reply = reply_to("add buy milk")

    assert isinstance(reply, AgentReply)
    assert isinstance(reply.tool_calls, tuple)
    assert all(isinstance(call, ToolCall) for call in reply.tool_calls)


def test_stub_reply_is_frozen() -> None:
    reply = reply_to("add buy milk")

    with pytest.raises(dataclasses.FrozenInstanceError):
        reply.content = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        reply.tool_calls[0].status = "error"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("message", "tool_names"),
    [
        ("add buy milk", ["add_task"]),
        ("add", ["add_task"]),
        ("list pending", ["list_tasks"]),
        ("complete 3", ["complete_task"]),
        ("complete", ["complete_task"]),
        ("delete 3", ["delete_task"]),
        ("update 3 to eggs", ["update_task"]),
        ("update 3", ["update_task"]),
        ("hello", []),
        ("anything else", []),
    ],
    ids=[
        "add buy milk",
        "add",
        "list pending",
        "complete 3",
        "complete",
        "delete 3",
        "update 3 to eggs",
        "update 3",
        "hello",
        "anything else",
    ],
)
def test_stub_tool_calls_are_json_serialisable(
    message: str, tool_names: list[str]
) -> None:
    reply = reply_to(message)

    assert [call.tool_name for call in reply.tool_calls] == tool_names
    for call in reply.tool_calls:
        assert json.loads(json.dumps(call.parameters, allow_nan=False)) == (
            call.parameters
        )
        assert json.loads(json.dumps(call.result, allow_nan=False)) == call.result


@pytest.mark.parametrize("prefix", ["", "add ", "update 3 to ", "complete "])
def test_stub_long_message_gives_bounded_reply(prefix: str) -> None:
    message = prefix + "x" * 100_000

    reply = reply_to(message)

    assert len(reply.content) < 1_000


@pytest.mark.parametrize(
    "message", ["add buy milk", "hello there", "what is up?", "complete 42"]
)
def test_stub_streams_the_reply_it_generates(message: str) -> None:
    reply = StubAgent().generate_response(user_id="u", message=message, history=[])

    items = list(StubAgent().stream_response(user_id="u", message=message, history=[]))

    calls = [i for i in items if isinstance(i, ToolCall)]
    pieces = [i for i in items if isinstance(i, str)]
    assert items[: len(calls)] == calls  # tool calls first
    assert tuple(calls) == reply.tool_calls
    assert "".join(pieces) == reply.content
    assert len(pieces) > 1


def test_stub_stream_delay_slows_the_pieces(settings: Settings) -> None:
    settings.AGENT_STUB_STREAM_DELAY_SECONDS = 0.05
    stream = StubAgent().stream_response(user_id="u", message="hello", history=[])

    started = time.monotonic()
    pieces = list(stream)

    assert time.monotonic() - started >= 0.05 * (len(pieces) - 1) * 0.9
