"""A real MCP server of todo tasks, for tests of the OpenAI agent backend.

Built with the `mcp` SDK (`MCPServer`) and served over streamable HTTP by
uvicorn in a daemon thread on 127.0.0.1; `TodoMCP().url` ends in `/mcp`.
Tasks live in memory per user id; `calls` records every tool call received,
in order, with its arguments as sent (before validation: defaults not filled
in, unknown tools and invalid arguments recorded too), so a test can check
what the backend sent.

Tools (each but `server_time` takes `user_id` first):
`add_task(user_id, title, description="")`, `list_tasks(user_id,
status="all")`, `complete_task(user_id, task_id)`, `update_task(user_id,
task_id, title)`, `delete_task(user_id, task_id)`, `server_time()` and
`slow_task(user_id, seconds)` (sleeps, for deadline tests).

What an `mcp.Client` receives from `call_tool` (mcp 2.3.0):
- a tool returning a dict (every task tool): `is_error` False,
  `structured_content` the dict itself, and `content` one `TextContent` whose
  `text` is the dict as indented JSON;
- a tool returning a str (`server_time`, `slow_task`): `structured_content`
  `{"result": "<the str>"}` and one `TextContent` holding the str;
- an unknown task (a `ToolError`): `is_error` True, `structured_content`
  None, one `TextContent` with the SDK's prefix and the message:
  "Error executing tool complete_task: no task 7 for user u-1";
- an unknown tool ("Unknown tool: NAME") or arguments failing the input
  schema ("Error executing tool NAME: 1 validation error ..."): `is_error`
  True, as results, not protocol errors.
Every tool also declares an `output_schema` (dict returns: an open object;
str returns: `{"result": str}`).
"""

import asyncio
import dataclasses
import socket
import threading
import time
from typing import Any, Literal

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, InputRequiredResult

SERVER_TIME = "2030-01-01T12:00:00+00:00"


@dataclasses.dataclass
class Task:
    task_id: int
    title: str
    description: str = ""
    completed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class RecordingMCPServer(MCPServer[Any]):
    """An MCPServer appending (tool name, arguments as sent) to `calls`."""

    def __init__(self, calls: list[tuple[str, dict[str, Any]]]) -> None:
        super().__init__("todo", log_level="WARNING")
        self.calls = calls

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        context: Context[Any, Any] | None = None,
    ) -> CallToolResult | InputRequiredResult:
        self.calls.append((name, dict(arguments)))
        return await super().call_tool(name, arguments, context)


class TodoMCP:
    """The todo MCP server, started on construction; `close()` stops it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.tasks: dict[str, list[Task]] = {}
        self._next_id = 1
        self._lock = threading.Lock()
        self.server = self._build()
        app = self.server.streamable_http_app()
        # IPPROTO_TCP given explicitly: asyncio sets TCP_NODELAY on accepted
        # connections only then; without it each call waits ~40 ms (Nagle's
        # algorithm against delayed ACKs).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/mcp"
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
        )
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._uvicorn.run,
            kwargs={"sockets": [sock]},
            name="todo-mcp",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the todo MCP server did not start")
            time.sleep(0.005)

    def reset(self) -> None:
        """Forget every task and recorded call; task ids start at 1 again."""
        with self._lock:
            self.calls.clear()
            self.tasks.clear()
            self._next_id = 1

    def close(self) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(10)

    def _task(self, user_id: str, task_id: int) -> Task:
        for task in self.tasks.get(user_id, []):
            if task.task_id == task_id:
                return task
        raise ToolError(f"no task {task_id} for user {user_id}")

    def _build(self) -> RecordingMCPServer:
        server = RecordingMCPServer(self.calls)

        @server.tool()
        def add_task(user_id: str, title: str, description: str = "") -> dict[str, Any]:
            """Add a task to the user's list."""
            with self._lock:
                task = Task(self._next_id, title, description)
                self._next_id += 1
                self.tasks.setdefault(user_id, []).append(task)
            return task.as_dict()

        @server.tool()
        def list_tasks(
            user_id: str, status: Literal["all", "pending", "completed"] = "all"
        ) -> dict[str, Any]:
            """List the user's tasks: all, pending or completed ones."""
            tasks = [
                task.as_dict()
                for task in self.tasks.get(user_id, [])
                if status == "all" or task.completed == (status == "completed")
            ]
            return {"tasks": tasks}

        @server.tool()
        def complete_task(user_id: str, task_id: int) -> dict[str, Any]:
            """Mark one of the user's tasks as completed."""
            task = self._task(user_id, task_id)
            task.completed = True
            return task.as_dict()

        @server.tool()
        def update_task(user_id: str, task_id: int, title: str) -> dict[str, Any]:
            """Change the title of one of the user's tasks."""
            task = self._task(user_id, task_id)
            task.title = title
            return task.as_dict()

        @server.tool()
        def delete_task(user_id: str, task_id: int) -> dict[str, Any]:
            """Delete one of the user's tasks."""
            task = self._task(user_id, task_id)
            self.tasks[user_id].remove(task)
            return task.as_dict()

        @server.tool()
        def server_time() -> str:
            """The server's current time (fixed, so that tests can compare)."""
            return SERVER_TIME

        @server.tool()
        async def slow_task(user_id: str, seconds: float) -> str:
            """Answer after `seconds` seconds."""
            await asyncio.sleep(seconds)
            return f"slept {seconds} s"

        return server
