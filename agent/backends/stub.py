"""A deterministic stand-in for the AI agent. It is a stub, not a model.

It answers from canned replies, and for messages that read as task commands
("add …", "list …", "complete …", "delete …", "update …") it returns the
tool call a real agent would make, with a plausible result, so that tool-call
storage works end to end. It keeps no state and calls nothing: the same
message always gets the same reply.

It streams too (`stream_response`): its tool calls, then its text a word
at a time, AGENT_STUB_STREAM_DELAY_SECONDS apart (0 by default; set it to
watch a reply arrive in `make run`).

To plug in a real model, write a class with the same `generate_response`
method (see `agent.backends.base.AgentBackend`), raise
`agent.exceptions.AgentError` when the model fails, and point
`AGENT_BACKEND` at its dotted path. Views and models do not change.
"""

import hashlib
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

from django.conf import settings

from agent.backends.base import AgentReply, HistoryMessage, StreamItem, ToolCall

_COMMAND = re.compile(
    r"^\s*(?P<verb>add|create|list|show|complete|finish|done|delete|remove|update"
    r"|rename)\b[\s:]*(?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_GREETING = re.compile(r"^\s*(hi|hello|hey|good (morning|afternoon|evening))\b", re.I)
_UPDATE = re.compile(
    r"^(?P<task>[^\s:]+)(?:\s+(?:to|as)\s+|\s*:\s*|\s+)(?P<title>.+)$", re.DOTALL
)
_TASK_WORD = re.compile(r"^(?:the\s+)?(?:task|todo)\b[\s:#]*", re.IGNORECASE)
_LIST_FILTERS = {"pending", "completed", "all"}
# A word and the white space after it: the pieces of a streamed reply.
_PIECE = re.compile(r"\S+\s*|\s+")

HELP = (
    'I can manage your tasks. Try: "add buy milk", "list tasks", '
    '"complete <task id>", "update <task id> to <new title>" or '
    '"delete <task id>".'
)


class StubAgent:
    """Canned replies and task tool calls, decided by the message alone."""

    def generate_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> AgentReply:
        match = _COMMAND.match(message)
        if match:
            verb = match["verb"].lower()
            rest = match["rest"].strip()
            if verb in {"add", "create"}:
                return _add(rest)
            if verb in {"list", "show"}:
                return _list(rest)
            if verb in {"complete", "finish", "done"}:
                return _on_task("complete_task", rest, "Marked {task} as complete.")
            if verb in {"delete", "remove"}:
                return _on_task("delete_task", rest, "Deleted {task}.")
            return _update(rest)
        if _GREETING.match(message):
            return AgentReply(content=f"Hello! {HELP}")
        turns = len(history) // 2 + 1
        return AgentReply(
            content=f"(stub assistant, turn {turns}) You said: {_clip(message)}\n{HELP}"
        )

    def stream_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> Iterator[StreamItem]:
        """The reply of `generate_response`: its tool calls, then its text
        a word at a time."""
        reply = self.generate_response(
            user_id=user_id, message=message, history=history
        )
        yield from reply.tool_calls
        delay = settings.AGENT_STUB_STREAM_DELAY_SECONDS
        for number, piece in enumerate(_PIECE.findall(reply.content)):
            if delay and number:
                time.sleep(delay)
            yield piece


def _add(title: str) -> AgentReply:
    title = _TASK_WORD.sub("", title).strip()
    if not title:
        return _missing("add_task", {"title": ""}, "What should the task be called?")
    task = {"task_id": _task_id(title), "title": title, "completed": False}
    return AgentReply(
        content=f"Added “{_clip(title)}” to your tasks.",
        tool_calls=(ToolCall("add_task", {"title": title}, task, "success"),),
    )


def _list(rest: str) -> AgentReply:
    words = set(rest.lower().split())
    status = next(iter(words & _LIST_FILTERS), "all")
    return AgentReply(
        content=f"Here are your tasks ({status}). The stub keeps no tasks, "
        "so the list is empty.",
        tool_calls=(
            ToolCall("list_tasks", {"status": status}, {"tasks": []}, "success"),
        ),
    )


def _on_task(tool: str, rest: str, done: str) -> AgentReply:
    task = _TASK_WORD.sub("", rest).strip()
    if not task:
        return _missing(tool, {"task_id": ""}, "Which task? Give its id.")
    result = {"task_id": task, "ok": True}
    return AgentReply(
        content=done.format(task=f"task {_clip(task)}"),
        tool_calls=(ToolCall(tool, {"task_id": task}, result, "success"),),
    )


def _update(rest: str) -> AgentReply:
    match = _UPDATE.match(_TASK_WORD.sub("", rest).strip())
    if not match:
        return _missing(
            "update_task",
            {"task_id": rest, "title": ""},
            "Tell me the task id and its new title: update <task id> to <title>.",
        )
    task, title = match["task"], match["title"].strip()
    result = {"task_id": task, "title": title, "ok": True}
    return AgentReply(
        content=f"Renamed task {_clip(task)} to “{_clip(title)}”.",
        tool_calls=(
            ToolCall("update_task", {"task_id": task, "title": title}, result),
        ),
    )


def _missing(tool: str, parameters: dict[str, Any], question: str) -> AgentReply:
    """A tool call that failed validation, as a real agent would report it."""
    return AgentReply(
        content=question,
        tool_calls=(
            ToolCall(tool, parameters, {"error": "missing argument"}, "error"),
        ),
    )


def _task_id(title: str) -> str:
    return hashlib.sha256(title.encode()).hexdigest()[:8]


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
