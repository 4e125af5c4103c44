"""Calling the agent: with a deadline, and with its output checked."""

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

from django.conf import settings
from django.db import connections

from agent.backends import get_backend
from agent.backends.base import AgentReply, HistoryMessage, ToolCall
from agent.exceptions import AgentError, AgentTimeoutError

logger = logging.getLogger(__name__)

TOOL_NAME_MAX_LENGTH = 255


def agent_reply_generate(
    *, user_id: str, message: str, history: Sequence[HistoryMessage]
) -> AgentReply:
    """Ask the configured backend for a reply, waiting AGENT_TIMEOUT_SECONDS.

    The backend runs in a thread of its own; the caller must hold no
    transaction. Raises AgentTimeoutError when the deadline passes (a reply
    that arrives later is dropped) and AgentError when the backend raises
    or returns something that cannot be stored.
    """
    try:
        backend = get_backend()
    except Exception as exc:
        logger.exception("Agent backend %r cannot be loaded", settings.AGENT_BACKEND)
        raise AgentError() from exc

    timeout = settings.AGENT_TIMEOUT_SECONDS
    call = _AgentCall(backend, user_id=user_id, message=message, history=history)
    started = time.monotonic()
    call.start()
    call.join(timeout)
    if call.is_alive():
        logger.warning(
            "Agent timed out after %.1fs for user %s; its reply will be dropped",
            timeout,
            user_id,
        )
        raise AgentTimeoutError()
    if call.error is not None:
        logger.error(
            "Agent failed for user %s after %.2fs: %r",
            user_id,
            time.monotonic() - started,
            call.error,
            exc_info=call.error,
        )
        raise AgentError() from call.error
    return _checked(call.reply)


class _AgentCall(threading.Thread):
    def __init__(
        self,
        backend: Any,
        *,
        user_id: str,
        message: str,
        history: Sequence[HistoryMessage],
    ) -> None:
        super().__init__(name="agent-call", daemon=True)
        self.backend = backend
        self.kwargs = {"user_id": user_id, "message": message, "history": history}
        self.reply: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.reply = self.backend.generate_response(**self.kwargs)
        except BaseException as exc:
            self.error = exc
        finally:
            # A backend that touched the ORM opened connections in this
            # thread; nobody else will close them.
            connections.close_all()


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
