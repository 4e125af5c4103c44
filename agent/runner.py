"""Calling the agent: with a deadline, and with its output checked.

`agent_reply_generate` waits for a whole reply; `agent_reply_stream` yields
it as it is produced (CONTRACT §7, §9). Either way the backend runs in a
thread of its own, so that AGENT_TIMEOUT_SECONDS holds however long the
backend takes: past the deadline the caller gets AgentTimeoutError and
whatever the backend produces later is dropped.
"""

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, cast

from django.conf import settings
from django.db import connections

from agent.backends import get_backend
from agent.backends.base import (
    AgentReply,
    HistoryMessage,
    ModelUsage,
    StreamItem,
    ToolCall,
)
from agent.exceptions import AgentError, AgentTimeoutError

logger = logging.getLogger(__name__)

TOOL_NAME_MAX_LENGTH = 255
MODEL_NAME_MAX_LENGTH = 255
# Token counts are stored in PostgreSQL integer columns.
TOKENS_LIMIT = 2**31


def agent_reply_generate(
    *, user_id: str, message: str, history: Sequence[HistoryMessage]
) -> AgentReply:
    """Ask the configured backend for a reply, waiting AGENT_TIMEOUT_SECONDS.

    The backend's `generate_response` runs in a thread of its own; the
    caller must hold no transaction. Raises AgentTimeoutError when the
    deadline passes (a reply that arrives later is dropped) and AgentError
    when the backend raises or returns something that cannot be stored.
    """
    for _, reply in _agent_run(
        user_id=user_id, message=message, history=history, stream=False
    ):
        return _checked(reply)
    raise AgentError()  # unreachable: the reply comes before the end


def agent_reply_stream(
    *, user_id: str, message: str, history: Sequence[HistoryMessage]
) -> Iterator[StreamItem]:
    """The configured backend's reply, item by item, as it is produced.

    Items are the backend's `stream_response` items (see
    agent.backends.base.StreamingAgentBackend), each checked before it is
    yielded; a backend without `stream_response` gives its tool calls, then
    its text as one piece, then its usage if any. AGENT_TIMEOUT_SECONDS
    bounds the whole iteration: AgentTimeoutError when it passes (the
    backend is told to stop and its later items are dropped); AgentError
    when the backend raises or yields something that cannot be stored (a
    second ModelUsage included). The caller must hold no transaction.
    """
    usage_seen = False
    for kind, value in _agent_run(
        user_id=user_id, message=message, history=history, stream=True
    ):
        if kind == _REPLY:
            reply = _checked(value)
            yield from reply.tool_calls
            yield reply.content
            if reply.usage is not None:
                yield reply.usage
            continue
        problem = _item_problem(value)
        if problem is None and isinstance(value, ModelUsage):
            if usage_seen:
                problem = "more than one ModelUsage"
            usage_seen = True
        if problem:
            logger.error("Agent streamed an unusable item: %s", problem)
            raise AgentError()
        yield value


def _agent_run(
    *, user_id: str, message: str, history: Sequence[HistoryMessage], stream: bool
) -> Iterator[tuple[str, Any]]:
    """The backend's output in a thread of its own, as (`_ITEM` or
    `_REPLY`, value) until it is done, all within AGENT_TIMEOUT_SECONDS.

    Raises AgentTimeoutError when the deadline passes or the backend raises
    one itself, and AgentError when the backend raises anything else;
    either way, or when the caller stops reading, the thread is told to
    stop.
    """
    backend = _backend()
    timeout = settings.AGENT_TIMEOUT_SECONDS
    call = _AgentCall(
        backend, user_id=user_id, message=message, history=history, stream=stream
    )
    started = time.monotonic()
    deadline = started + timeout
    call.start()
    try:
        while True:
            try:
                kind, value = call.items.get(
                    timeout=max(deadline - time.monotonic(), 0)
                )
            except queue.Empty:
                logger.warning(
                    "Agent timed out after %.1fs for user %s; its reply will be "
                    "dropped",
                    timeout,
                    user_id,
                )
                raise AgentTimeoutError() from None
            if kind == _DONE:
                return
            if kind == _FAILED:
                logger.error(
                    "Agent failed for user %s after %.2fs: %r",
                    user_id,
                    time.monotonic() - started,
                    value,
                    exc_info=value,
                )
                # A backend that enforces a deadline of its own (its API
                # client's timeout) says so: still a 504, not a 502.
                if isinstance(value, AgentTimeoutError):
                    raise AgentTimeoutError() from value
                raise AgentError() from value
            yield kind, value
    finally:
        call.stopped.set()


def _backend() -> Any:
    try:
        return get_backend()
    except Exception as exc:
        logger.exception("Agent backend %r cannot be loaded", settings.AGENT_BACKEND)
        raise AgentError() from exc


# What an _AgentCall puts on its queue: (kind, value).
_ITEM, _REPLY, _DONE, _FAILED = "item", "reply", "done", "failed"


class _AgentCall(threading.Thread):
    """Calls the backend's `generate_response`, or iterates its
    `stream_response` (with `stream`, when it has one), putting what it gets
    on `items`, until the reader sets `stopped`."""

    def __init__(
        self,
        backend: Any,
        *,
        user_id: str,
        message: str,
        history: Sequence[HistoryMessage],
        stream: bool,
    ) -> None:
        super().__init__(name="agent-stream" if stream else "agent-call", daemon=True)
        self.backend = backend
        self.stream = stream
        self.kwargs = {"user_id": user_id, "message": message, "history": history}
        self.items: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            stream = getattr(self.backend, "stream_response", None)
            if stream is None or not self.stream:
                self.items.put((_REPLY, self.backend.generate_response(**self.kwargs)))
            else:
                items = stream(**self.kwargs)
                try:
                    for item in items:
                        if self.stopped.is_set():
                            break
                        self.items.put((_ITEM, item))
                finally:
                    close = getattr(items, "close", None)
                    if close is not None:
                        close()
            self.items.put((_DONE, None))
        except BaseException as exc:
            self.items.put((_FAILED, exc))
        finally:
            # A backend that touched the ORM opened connections in this
            # thread; nobody else will close them.
            connections.close_all()


def _item_problem(item: Any) -> str | None:
    if isinstance(item, str):
        return "text must not contain NUL characters" if "\x00" in item else None
    if isinstance(item, ToolCall):
        return _tool_call_problem(item)
    if isinstance(item, ModelUsage):
        return _usage_problem(item)
    return f"expected str, ToolCall or ModelUsage, got {type(item).__name__}"


def _checked(reply: Any) -> AgentReply:
    """The reply, if it can be stored as it is; AgentError otherwise."""
    problem = _problem(reply)
    if problem:
        logger.error("Agent returned an unusable reply: %s", problem)
        raise AgentError()
    return cast(AgentReply, reply)


def _problem(reply: Any) -> str | None:
    if not isinstance(reply, AgentReply):
        return f"expected AgentReply, got {type(reply).__name__}"
    if not isinstance(reply.content, str) or "\x00" in reply.content:
        return "content must be a string without NUL characters"
    if not isinstance(reply.tool_calls, tuple | list):
        return "tool_calls must be a tuple"
    for call in reply.tool_calls:
        if not isinstance(call, ToolCall):
            return f"expected ToolCall, got {type(call).__name__}"
        problem = _tool_call_problem(call)
        if problem:
            return problem
    if reply.usage is not None:
        if not isinstance(reply.usage, ModelUsage):
            return f"expected ModelUsage, got {type(reply.usage).__name__}"
        return _usage_problem(reply.usage)
    return None


def _tool_call_problem(call: ToolCall) -> str | None:
    if (
        not isinstance(call.tool_name, str)
        or not call.tool_name
        or len(call.tool_name) > TOOL_NAME_MAX_LENGTH
        or "\x00" in call.tool_name
    ):
        return "tool_name must be a non-empty string of at most 255 characters"
    if call.status not in ("success", "error"):
        return f"tool call status must be success or error, not {call.status!r}"
    if not isinstance(call.parameters, dict):
        return "tool call parameters must be a dict"
    for value in (call.parameters, call.result):
        if not _storable_json(value):
            return "tool call parameters and result must be storable JSON"
    return None


def _usage_problem(usage: ModelUsage) -> str | None:
    if (
        not isinstance(usage.model, str)
        or len(usage.model) > MODEL_NAME_MAX_LENGTH
        or "\x00" in usage.model
    ):
        return "usage model must be a string of at most 255 characters"
    for tokens in (usage.prompt_tokens, usage.completion_tokens):
        if tokens is not None and (
            isinstance(tokens, bool)
            or not isinstance(tokens, int)
            or not 0 <= tokens < TOKENS_LIMIT
        ):
            return "usage tokens must be None or an integer from 0 to 2**31 - 1"
    return None


def _storable_json(value: Any) -> bool:
    """JSON-serialisable, without NaN/Infinity or NUL (PostgreSQL refuses both)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return not _has_nul(value)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(item) for item in value)
    return False
