"""The todo MCP server answers the real `mcp` client over streamable HTTP."""

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import mcp
import pytest
from mcp_types import CallToolResult, TextContent

from agent.tests.todo_mcp import SERVER_TIME, TodoMCP

T = TypeVar("T")


def with_client(url: str, use: Callable[[mcp.Client], Awaitable[T]]) -> T:
    """Runs `use` with a client connected to `url`, in a new event loop."""

    async def main() -> T:
        async with mcp.Client(url) as client:
            return await use(client)

    return anyio.run(main)


def call(url: str, *calls: tuple[str, dict[str, Any]]) -> list[CallToolResult]:
    """The results of `calls` (tool name, arguments), made in order."""

    async def use(client: mcp.Client) -> list[CallToolResult]:
        return [await client.call_tool(name, arguments) for name, arguments in calls]

    return with_client(url, use)


def text_of(result: CallToolResult) -> str:
    (content,) = result.content
    assert isinstance(content, TextContent)
    return content.text


def test_tools_are_listed_with_their_schemas(todo_mcp: TodoMCP) -> None:
    async def use(client: mcp.Client) -> Any:
        return await client.list_tools()

    tools = {tool.name: tool for tool in with_client(todo_mcp.url, use).tools}

    assert list(tools) == [
        "add_task",
        "list_tasks",
        "complete_task",
        "update_task",
        "delete_task",
        "server_time",
        "slow_task",
    ]
    add_task = tools["add_task"].input_schema
    assert add_task["required"] == ["user_id", "title"]
    assert add_task["properties"]["user_id"]["type"] == "string"
    assert add_task["properties"]["description"]["default"] == ""
    status = tools["list_tasks"].input_schema["properties"]["status"]
    assert status["enum"] == ["all", "pending", "completed"]
    assert tools["complete_task"].input_schema["properties"]["task_id"]["type"] == (
        "integer"
    )
    assert tools["server_time"].input_schema["properties"] == {}
    assert tools["add_task"].description == "Add a task to the user's list."


def test_add_task_returns_the_task_as_structured_content(todo_mcp: TodoMCP) -> None:
    (result,) = call(todo_mcp.url, ("add_task", {"user_id": "u-1", "title": "milk"}))

    task = {"task_id": 1, "title": "milk", "description": "", "completed": False}
    assert result.is_error is False
    assert result.structured_content == task
    assert '"title": "milk"' in text_of(result)
    assert todo_mcp.calls == [("add_task", {"user_id": "u-1", "title": "milk"})]
    assert [t.as_dict() for t in todo_mcp.tasks["u-1"]] == [task]


def test_tasks_are_kept_per_user_and_filtered_by_status(todo_mcp: TodoMCP) -> None:
    results = call(
        todo_mcp.url,
        ("add_task", {"user_id": "u-1", "title": "milk", "description": "2 l"}),
        ("add_task", {"user_id": "u-1", "title": "bread"}),
        ("add_task", {"user_id": "u-2", "title": "other user's"}),
        ("complete_task", {"user_id": "u-1", "task_id": 1}),
        ("update_task", {"user_id": "u-1", "task_id": 2, "title": "rye bread"}),
        ("list_tasks", {"user_id": "u-1", "status": "pending"}),
        ("list_tasks", {"user_id": "u-1", "status": "completed"}),
        ("delete_task", {"user_id": "u-2", "task_id": 3}),
        ("list_tasks", {"user_id": "u-2"}),
    )

    assert all(result.is_error is False for result in results)
    assert results[3].structured_content == {
        "task_id": 1,
        "title": "milk",
        "description": "2 l",
        "completed": True,
    }
    assert results[5].structured_content == {
        "tasks": [
            {"task_id": 2, "title": "rye bread", "description": "", "completed": False}
        ]
    }
    completed = results[6].structured_content
    assert completed is not None
    assert [task["task_id"] for task in completed["tasks"]] == [1]
    assert results[8].structured_content == {"tasks": []}
    assert todo_mcp.tasks["u-2"] == []


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("complete_task", {"task_id": 1}),
        ("update_task", {"task_id": 1, "title": "new"}),
        ("delete_task", {"task_id": 1}),
        ("complete_task", {"task_id": 99}),
    ],
)
def test_another_users_or_unknown_task_is_a_tool_error(
    todo_mcp: TodoMCP, name: str, arguments: dict[str, Any]
) -> None:
    _, result = call(
        todo_mcp.url,
        ("add_task", {"user_id": "owner", "title": "milk"}),
        (name, {"user_id": "intruder", **arguments}),
    )

    assert result.is_error is True
    assert result.structured_content is None
    task_id = arguments["task_id"]
    assert text_of(result) == (
        f"Error executing tool {name}: no task {task_id} for user intruder"
    )
    assert todo_mcp.tasks["owner"][0].title == "milk"


def test_unknown_tool_and_bad_arguments_are_tool_errors_recorded_as_sent(
    todo_mcp: TodoMCP,
) -> None:
    unknown, invalid = call(
        todo_mcp.url,
        ("no_such_tool", {"x": 1}),
        ("complete_task", {"user_id": "u-1", "task_id": "one"}),
    )

    assert (unknown.is_error, text_of(unknown)) == (True, "Unknown tool: no_such_tool")
    assert invalid.is_error is True
    assert "validation error" in text_of(invalid)
    assert todo_mcp.calls == [
        ("no_such_tool", {"x": 1}),
        ("complete_task", {"user_id": "u-1", "task_id": "one"}),
    ]


def test_server_time_takes_no_user_id(todo_mcp: TodoMCP) -> None:
    (result,) = call(todo_mcp.url, ("server_time", {}))

    assert result.is_error is False
    assert text_of(result) == SERVER_TIME
    assert result.structured_content == {"result": SERVER_TIME}


def test_slow_task_outlasts_a_client_deadline(todo_mcp: TodoMCP) -> None:
    async def use(client: mcp.Client) -> tuple[bool, CallToolResult]:
        with anyio.move_on_after(0.2) as scope:
            await client.call_tool("slow_task", {"user_id": "u-1", "seconds": 5})
        quick = await client.call_tool("slow_task", {"user_id": "u-1", "seconds": 0})
        return scope.cancelled_caught, quick

    started = time.monotonic()
    cancelled, quick = with_client(todo_mcp.url, use)

    assert cancelled is True
    assert time.monotonic() - started < 3
    assert text_of(quick) == "slept 0.0 s"
    assert [name for name, _ in todo_mcp.calls] == ["slow_task", "slow_task"]


def test_reset_forgets_tasks_calls_and_ids(todo_mcp: TodoMCP) -> None:
    call(todo_mcp.url, ("add_task", {"user_id": "u-1", "title": "milk"}))

    todo_mcp.reset()
    (result,) = call(todo_mcp.url, ("add_task", {"user_id": "u-1", "title": "tea"}))

    assert result.structured_content is not None
    assert result.structured_content["task_id"] == 1
    assert todo_mcp.calls == [("add_task", {"user_id": "u-1", "title": "tea"})]


def test_unreachable_url_refuses_connections(unreachable_url: str) -> None:
    async def use(client: mcp.Client) -> None:
        raise AssertionError("connected")

    with pytest.raises(Exception) as raised:  # noqa: PT011
        with_client(f"{unreachable_url}/mcp", use)

    assert "connect" in repr(raised.value).lower()


def test_calls_are_answered_without_a_delayed_ack_wait(todo_mcp: TodoMCP) -> None:
    """Each call takes milliseconds, not the ~40 ms of Nagle's algorithm
    against delayed ACKs (TCP_NODELAY unset on the server's connections)."""

    async def use(client: mcp.Client) -> float:
        await client.call_tool("server_time", {})
        started = time.monotonic()
        for _ in range(20):
            await client.call_tool("server_time", {})
        return time.monotonic() - started

    assert with_client(todo_mcp.url, use) < 0.5
