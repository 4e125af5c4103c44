"""The agent interface: what the chat service gives a backend and gets back.

Backends receive plain, immutable data and return it: never ORM objects, so
a backend can neither query lazily nor hold a database connection.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["user", "assistant"]
ToolCallStatus = Literal["success", "error"]


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    """One earlier message of the conversation."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool the agent called while answering, with its outcome.

    `parameters` and `result` must be JSON-serialisable; they are stored as
    JSON next to the assistant message.
    """

    tool_name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    status: ToolCallStatus = "success"


@dataclass(frozen=True, slots=True)
class AgentReply:
    """The assistant's answer: its text and the tool calls behind it."""

    content: str
    tool_calls: tuple[ToolCall, ...] = ()


class AgentBackend(Protocol):
    """What `AGENT_BACKEND` must name: a class built without arguments.

    One instance serves a whole process, from several threads at once, so
    keep per-request state out of `self`.
    """

    def generate_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> AgentReply:
        """Answer `message` from user `user_id`.

        `history` holds the previous messages of the conversation, oldest
        first (at most AGENT_CONTEXT_MESSAGES, and at most
        AGENT_CONTEXT_MAX_CHARS characters of content: the newest whole
        messages that fit), not including `message`.
        Raise `agent.exceptions.AgentError` when no answer can be given.
        The caller enforces AGENT_TIMEOUT_SECONDS.
        """
        ...
