"""A real model: any OpenAI-compatible Chat Completions API, with the tools
of MCP servers (CONTRACT §10). `AGENT_BACKEND=agent.backends.openai.OpenAIAgent`.

A reply is one coroutine: it connects to the MCP servers (AGENT_MCP_SERVERS)
and lists their tools, then calls the model (the official `openai` SDK)
with the system prompt, the history and the message; while the model asks
for tools, calls each on the server that lists it (the official `mcp` SDK)
and gives the results back, at most AGENT_MAX_TOOL_ROUNDS times, then asks
once more without tools. A tool whose input schema has `user_id` always
gets the requesting user's id there; the model never sees that property.

Why a coroutine: the MCP SDK is async only, and cancelling a coroutine is
what lets one deadline (AGENT_TIMEOUT_SECONDS) cut everything short, the
model SDK's retries and back-off included. Each process runs one event
loop in a thread of its own, started at its first reply; the sync callers
(agent.runner's thread) hand it a reply and read what it produces from a
queue. The loop keeps the model client and its pooled connections.
"""

import asyncio
import json
import logging
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

import anyio
import httpx2
import openai
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import TextContent

from agent.backends.base import (
    AgentReply,
    HistoryMessage,
    ModelUsage,
    StreamItem,
    ToolCall,
)
from agent.exceptions import AgentError, AgentTimeoutError

logger = logging.getLogger(__name__)

# The argument that names the user: always the requesting user's.
USER_ID = "user_id"
# The function names Chat Completions accepts.
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Put between the texts of two model calls of one reply.
ROUND_SEPARATOR = "\n\n"


def settings_missing() -> list[str]:
    """The settings this backend requires that are not set."""
    return [
        name
        for name in ("OPENAI_API_KEY", "AGENT_MODEL")
        if not getattr(settings, name)
    ]


class OpenAIAgent:
    """A model behind an OpenAI-compatible API, with tools from MCP servers."""

    def __init__(self) -> None:
        missing = settings_missing()
        if missing:
            raise ImproperlyConfigured(
                f"{' and '.join(missing)} must be set for {type(self).__name__}."
            )
        self._lock = threading.Lock()
        self._loop: _EventLoop | None = None

    def generate_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> AgentReply:
        text: list[str] = []
        calls: list[ToolCall] = []
        usage = None
        for item in self._reply(user_id, message, history, stream=False):
            if isinstance(item, str):
                text.append(item)
            elif isinstance(item, ToolCall):
                calls.append(item)
            else:
                usage = item
        return AgentReply(content="".join(text), tool_calls=tuple(calls), usage=usage)

    def stream_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> Iterator[StreamItem]:
        yield from self._reply(user_id, message, history, stream=True)

    def _reply(
        self,
        user_id: str,
        message: str,
        history: Sequence[HistoryMessage],
        *,
        stream: bool,
    ) -> Iterator[StreamItem]:
        """The reply's items, from the event loop, as they are produced.
        Closing the iterator cancels the reply."""
        loop = self._event_loop()
        items: queue.SimpleQueue[StreamItem | _End] = queue.SimpleQueue()
        reply = _Reply(
            loop.client,
            loop.mcp_http,
            user_id=user_id,
            message=message,
            history=history,
            stream=stream,
            emit=items.put,
        )
        future = asyncio.run_coroutine_threadsafe(reply.run(), loop.loop)
        future.add_done_callback(lambda _: items.put(_END))
        try:
            while not isinstance(item := items.get(), _End):
                yield item
            future.result()
        finally:
            future.cancel()

    def _event_loop(self) -> "_EventLoop":
        """This process's loop (a forked worker starts its own)."""
        with self._lock:
            if self._loop is None or self._loop.pid != os.getpid():
                self._loop = _EventLoop()
            return self._loop

    def close(self) -> None:
        """Stop the event loop (tests that swap backends call this)."""
        with self._lock:
            if self._loop is not None and self._loop.pid == os.getpid():
                self._loop.stop()
            self._loop = None


def model_client(**options: Any) -> openai.AsyncOpenAI:
    """A client of the model API of the settings (`options` override)."""
    return openai.AsyncOpenAI(
        **{
            "api_key": settings.OPENAI_API_KEY,
            "base_url": settings.OPENAI_BASE_URL or None,
            # The deadline cancels whatever is still running; this only
            # keeps a single request from hanging longer than a reply may.
            "timeout": settings.AGENT_TIMEOUT_SECONDS,
            **options,
        }
    )


def mcp_http_client() -> httpx2.AsyncClient:
    """The HTTP client of MCP sessions: each request bounded by
    AGENT_MCP_TIMEOUT_SECONDS."""
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(settings.AGENT_MCP_TIMEOUT_SECONDS)
    )


class _End:
    """Put on a reply's queue when its coroutine has ended."""


_END = _End()


class _EventLoop:
    """An asyncio loop running in a daemon thread, with the clients that
    live on it: the model's, and the HTTP client of the MCP connections."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="agent-openai-loop", daemon=True
        )
        self.thread.start()
        self.client = model_client()
        self.mcp_http = mcp_http_client()

    def stop(self) -> None:
        """Cancel the replies in progress, close the clients, end the thread."""

        async def close() -> None:
            replies = asyncio.all_tasks() - {asyncio.current_task()}
            for reply in replies:
                reply.cancel()
            await asyncio.gather(*replies, return_exceptions=True)
            await self.client.close()
            await self.mcp_http.aclose()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@dataclass
class _Turn:
    """What one model call answered."""

    text: str = ""
    tool_calls: list["_Requested"] = field(default_factory=list)
    model: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class _Requested:
    """A tool call the model asked for."""

    id: str = ""
    name: str = ""
    arguments: str = ""


class _Reply:
    """One reply: the tool loop of CONTRACT §10, its items passed to `emit`."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        mcp_http: httpx2.AsyncClient,
        *,
        user_id: str,
        message: str,
        history: Sequence[HistoryMessage],
        stream: bool,
        emit: Callable[[StreamItem], None],
    ) -> None:
        self.client = client
        self.mcp_http = mcp_http
        self.user_id = user_id
        self.stream = stream
        self.emit = emit
        self.messages: list[dict[str, Any]] = [
            {"role": "system", "content": settings.AGENT_SYSTEM_PROMPT},
            *({"role": turn.role, "content": turn.content} for turn in history),
            {"role": "user", "content": message},
        ]
        self.text_sent = self.turn_has_text = False
        self.usage = ModelUsage(model=settings.AGENT_MODEL)

    async def run(self) -> None:
        failure: Exception | None = None
        try:
            with anyio.fail_after(settings.AGENT_TIMEOUT_SECONDS):
                # No tool rounds: no tools to list.
                urls = (
                    settings.AGENT_MCP_SERVERS if settings.AGENT_MAX_TOOL_ROUNDS else []
                )
                servers = [McpServer(url, self.mcp_http) for url in urls]
                async with anyio.create_task_group() as sessions:
                    for server in servers:
                        sessions.start_soon(server.serve)
                    toolbox = Toolbox(self.user_id)
                    for server in servers:
                        await server.ready.wait()
                        if server.client is not None:
                            toolbox.add(server.client, server.url, server.tools)
                    try:
                        await self._converse(toolbox)
                    except Exception as exc:
                        # Raised below, once the sessions are closed: out of
                        # the task group it would come wrapped in a group.
                        failure = exc
                    finally:
                        for server in servers:
                            server.done.set()
        except TimeoutError:
            raise AgentTimeoutError() from None
        if failure is not None:
            raise failure
        self.emit(self.usage)

    async def _converse(self, toolbox: "Toolbox") -> None:
        rounds = settings.AGENT_MAX_TOOL_ROUNDS
        for number in range(rounds + 1):
            tools = toolbox.specs if number < rounds else []
            turn = await self._model_call(tools)
            self._count(turn)
            if not (tools and turn.tool_calls):
                return
            self.messages.append(
                {
                    "role": "assistant",
                    "content": turn.text or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {
                                "name": call.name,
                                "arguments": call.arguments,
                            },
                        }
                        for call in turn.tool_calls
                    ],
                }
            )
            for call in turn.tool_calls:
                stored, for_model = await toolbox.call(call.name, call.arguments)
                self.emit(stored)
                self.messages.append(
                    {"role": "tool", "tool_call_id": call.id, "content": for_model}
                )

    async def _model_call(self, tools: list[dict[str, Any]]) -> _Turn:
        """One Chat Completions call; its text is emitted as it arrives."""
        self.turn_has_text = False
        options: dict[str, Any] = {
            "model": settings.AGENT_MODEL,
            "messages": self.messages,
        }
        if tools:
            options["tools"] = tools
        try:
            if self.stream:
                return await self._streamed(options)
            return self._answered(await self.client.chat.completions.create(**options))
        except (openai.APIError, httpx2.HTTPError) as exc:
            logger.warning("The model API failed: %r", exc)
            raise AgentError() from exc
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            logger.warning("The model API answered something malformed: %r", exc)
            raise AgentError() from exc

    async def _streamed(self, options: dict[str, Any]) -> _Turn:
        turn = _Turn()
        requested: dict[int, _Requested] = {}
        stream = await self.client.chat.completions.create(
            **options, stream=True, stream_options={"include_usage": True}
        )
        async with stream:
            async for chunk in stream:
                turn.model = chunk.model or turn.model
                if chunk.usage is not None:
                    turn.prompt_tokens = chunk.usage.prompt_tokens
                    turn.completion_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        turn.text += self._text(_string(delta.content))
                    for part in delta.tool_calls or ():
                        call = requested.setdefault(part.index, _Requested())
                        call.id += part.id or ""
                        if part.function is not None:
                            call.name += _string(part.function.name or "")
                            call.arguments += _string(part.function.arguments or "")
        turn.tool_calls = [requested[index] for index in sorted(requested)]
        for number, call in enumerate(turn.tool_calls):
            call.id = call.id or f"call_{number}"
        return turn

    def _answered(self, completion: Any) -> _Turn:
        message = completion.choices[0].message
        turn = _Turn(model=completion.model or "")
        if message.content:
            turn.text = self._text(_string(message.content))
        turn.tool_calls = [
            _Requested(
                id=call.id or f"call_{number}",
                name=_string(call.function.name),
                arguments=_string(call.function.arguments or ""),
            )
            for number, call in enumerate(message.tool_calls or ())
        ]
        if completion.usage is not None:
            turn.prompt_tokens = completion.usage.prompt_tokens
            turn.completion_tokens = completion.usage.completion_tokens
        return turn

    def _text(self, piece: str) -> str:
        """Emit a piece of the reply's text, after a blank line when it
        starts the text of a later model call; return it."""
        if not self.turn_has_text and self.text_sent:
            self.emit(ROUND_SEPARATOR)
        self.turn_has_text = self.text_sent = True
        self.emit(piece)
        return piece

    def _count(self, turn: _Turn) -> None:
        usage = self.usage
        self.usage = ModelUsage(
            model=turn.model or usage.model,
            prompt_tokens=_add(usage.prompt_tokens, turn.prompt_tokens),
            completion_tokens=_add(usage.completion_tokens, turn.completion_tokens),
        )


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(
            f"expected a string from the model API, got {type(value).__name__}"
        )
    return value


def _add(total: int | None, more: int | None) -> int | None:
    if more is None:
        return total
    return (total or 0) + more


@dataclass
class _Tool:
    client: Client
    server: str
    takes_user_id: bool


class Toolbox:
    """The tools of the reachable MCP servers, for one user's reply."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.tools: dict[str, _Tool] = {}
        self.specs: list[dict[str, Any]] = []

    def add(self, client: Client, server: str, tools: Sequence[Any]) -> dict[str, str]:
        """Offer `tools` of `server`, but those whose name is not a valid
        function name or is taken, which are logged; those left out, each
        with why."""
        left_out = {}
        for tool in tools:
            if not FUNCTION_NAME.match(tool.name):
                left_out[tool.name] = "a function name is 1-64 letters, digits, _ or -"
            elif tool.name in self.tools:
                left_out[tool.name] = f"{self.tools[tool.name].server} offers it too"
            if tool.name in left_out:
                logger.warning(
                    "MCP tool %r of %s left out: %s",
                    tool.name,
                    server,
                    left_out[tool.name],
                )
                continue
            schema = dict(tool.input_schema)
            properties = schema.get("properties")
            properties = dict(properties) if isinstance(properties, dict) else {}
            takes_user_id = properties.pop(USER_ID, None) is not None
            schema["properties"] = properties
            if isinstance(schema.get("required"), list):
                schema["required"] = [
                    name for name in schema["required"] if name != USER_ID
                ]
            self.tools[tool.name] = _Tool(client, server, takes_user_id)
            self.specs.append(
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description or "",
                        "parameters": schema,
                    },
                }
            )
        return left_out

    async def call(self, name: str, arguments: str) -> tuple[ToolCall, str]:
        """Call tool `name` as the model asked; the call to store, and what
        to tell the model."""
        try:
            parameters = json.loads(arguments or "{}")
        except ValueError:
            parameters = None
        if not isinstance(parameters, dict):
            return _failed(name, {}, "The arguments are not a JSON object.")
        # Whatever the model wrote, a tool acts for the requesting user only.
        parameters.pop(USER_ID, None)
        tool = self.tools.get(name)
        if tool is None:
            return _failed(name, parameters, f"No server offers the tool {name!r}.")
        if tool.takes_user_id:
            parameters[USER_ID] = self.user_id
        try:
            with anyio.fail_after(settings.AGENT_MCP_TIMEOUT_SECONDS):
                result = await tool.client.call_tool(name, parameters)
        except TimeoutError:
            logger.warning("MCP tool %r of %s timed out", name, tool.server)
            return _failed(name, parameters, "The tool did not answer in time.")
        except Exception as exc:
            logger.warning("MCP tool %r of %s failed: %r", name, tool.server, exc)
            return _failed(name, parameters, "The tool's server could not be reached.")
        text = "\n".join(
            block.text for block in result.content if isinstance(block, TextContent)
        )
        if result.is_error:
            return _failed(name, parameters, text or "The tool failed.")
        stored = (
            result.structured_content if result.structured_content is not None else text
        )
        for_model = text or json.dumps(result.structured_content)
        return ToolCall(name, parameters, stored, "success"), for_model


def _failed(name: str, parameters: dict[str, Any], error: str) -> tuple[ToolCall, str]:
    return ToolCall(name, parameters, error, "error"), f"Error: {error}"


class McpServer:
    """A session with one MCP server for the length of a reply, in a task of
    its own, so that a server failing mid-reply fails its own tool calls
    only. `ready` is set once its tools are listed (`client` set) or it
    cannot be reached (left out, logged); `done` ends the session."""

    def __init__(self, url: str, http: httpx2.AsyncClient) -> None:
        self.url = url
        self.http = http
        self.client: Client | None = None
        self.tools: list[Any] = []
        self.ready = anyio.Event()
        self.done = anyio.Event()

    async def serve(self) -> None:
        try:
            async with mcp_client(self.url, self.http) as client:
                self.tools = await mcp_tools_list(client)
                self.client = client
                self.ready.set()
                await self.done.wait()
        except Exception as exc:
            if self.client is None:
                logger.warning(
                    "MCP server %s cannot be reached; its tools are left out: %r",
                    self.url,
                    exc,
                )
            else:
                logger.warning(
                    "The session with MCP server %s failed: %r", self.url, exc
                )
        finally:
            self.ready.set()


def mcp_client(url: str, http: httpx2.AsyncClient) -> Client:
    """A client of the MCP server at `url` (streamable HTTP), to enter."""
    return Client(
        streamable_http_client(url, http_client=http),
        read_timeout_seconds=settings.AGENT_MCP_TIMEOUT_SECONDS,
    )


async def mcp_tools_list(client: Client) -> list[Any]:
    tools: list[Any] = []
    cursor = None
    with anyio.fail_after(settings.AGENT_MCP_TIMEOUT_SECONDS):
        while True:
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                return tools
