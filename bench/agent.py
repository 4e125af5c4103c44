"""What a reply with the real model costs beyond the model's own time
(CONTRACT §10, docs/AGENT.md).

    python -m bench.agent [--replies 200] [--database-url URL]

In this process, through the whole WSGI app, POST .../chat replies made by
the stub, then by agent.backends.openai.OpenAIAgent against the tests'
scripted OpenAI-compatible server (agent.tests.scripted_model, which answers
at once: its own time is a localhost round trip) and their MCP todo server
(agent.tests.todo_mcp): without MCP servers; with one (sessions opened and
tools listed per reply); with one tool call (one more model call); and the
stub and the last one streamed (POST .../chat/stream: the statements counted
are the request thread's, the reply is stored by the producer's). Prints,
per case, the median and 90th percentile of a reply's wall time and the SQL
statements per reply, as JSON. Default database: a throwaway SQLite file.
"""

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.inapp import app_load, session_token, wsgi_request

WARM_UP = 20
USER = "bench-agent"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=200)
    parser.add_argument("--database-url")
    args = parser.parse_args()

    from agent.tests.scripted_model import ScriptedModel, Text, ToolCalls
    from agent.tests.todo_mcp import TodoMCP

    model, todo = ScriptedModel(), TodoMCP()
    application = app_load(
        args.database_url,
        OPENAI_BASE_URL=model.url,
        OPENAI_API_KEY="bench",
        AGENT_MODEL="scripted-model",
    )
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    token = session_token(USER)
    tool = ToolCalls([("add_task", json.dumps({"title": "milk"}))])

    def reply(path: str) -> Callable[[], int]:
        def send() -> int:
            return wsgi_request(
                application,
                f"/api/v1/users/{USER}/{path}",
                method="POST",
                body=b'{"message": "add milk"}',
                HTTP_AUTHORIZATION=f"Bearer {token}",
            )

        return send

    stub, real, mcp = "agent.backends.stub.StubAgent", "openai", [todo.url]
    cases: list[tuple[str, str, list[str], list[Any], str]] = [
        ("stub", stub, [], [], "chat"),
        ("stub, streamed", stub, [], [], "chat/stream"),
        ("model, no MCP server", real, [], [Text("Hi.")], "chat"),
        ("model, 1 MCP server, no tool call", real, mcp, [Text("Hi.")], "chat"),
        ("model, 1 MCP server, 1 tool call", real, mcp, [tool, Text("OK.")], "chat"),
        (
            "model, 1 MCP server, 1 tool call, streamed",
            real,
            mcp,
            [tool, Text("OK.")],
            "chat/stream",
        ),
    ]
    results = {}
    for name, backend, servers, steps, path in cases:
        settings.AGENT_BACKEND = backend
        settings.AGENT_MCP_SERVERS = servers
        send = reply(path)
        model.reset()
        todo.reset()
        model.script(*steps * (WARM_UP + args.replies))
        for _ in range(WARM_UP):
            _ok(send())
        times, statements = [], []
        for _ in range(args.replies):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                _ok(send())
                times.append(time.perf_counter() - started)
            statements.append(len(queries))
        results[name] = {
            "median_ms": round(statistics.median(times) * 1000, 2),
            "p90_ms": round(statistics.quantiles(times, n=10)[-1] * 1000, 2),
            "statements": sorted(set(statements)),
            "model_requests": len(model.requests) // (WARM_UP + args.replies),
        }
    model.close()
    todo.close()
    print(json.dumps({"replies": args.replies, "cases": results}, indent=2))  # noqa: T201


def _ok(status: int) -> None:
    if status != 200:
        raise SystemExit(f"a reply answered {status}")


if __name__ == "__main__":
    main()
