"""The agent interface: what the chat service gives a backend and gets back.

Backends receive plain, immutable data and return it: never ORM objects, so
a backend can neither query lazily nor hold a database connection.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

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
class ModelUsage:
    """What answering cost: the model that answered and the tokens it used,
    summed over every model call of the reply (None when the API did not
    say). Stored with the assistant message, for operators; never shown to
    the user."""

    model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class AgentReply:
    """The assistant's answer: its text, the tool calls behind it and, from
    a real model, what it cost."""

    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: ModelUsage | None = None


# An item of a streamed reply: a `str` is the next piece of the reply's
# text; a ToolCall is a tool the agent called, in the order it called them;
# a ModelUsage (at most one, usually last) is what the reply cost.
StreamItem: TypeAlias = str | ToolCall | ModelUsage


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


class StreamingAgentBackend(AgentBackend, Protocol):
    """A backend that can also stream its reply (optional: CONTRACT §7).

    Streaming requests (POST .../chat/stream) call `stream_response` when
    the backend has it, and otherwise `generate_response`, whose reply they
    send as one piece.
    """

    def stream_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> Iterable[StreamItem]:
        """Answer `message` as it is produced: the same arguments as
        `generate_response`; items in order, each a `str` (the next piece
        of the text), a `ToolCall`, or the reply's `ModelUsage`.

        The reply is the pieces joined, with the tool calls in the order
        they came. Raise `agent.exceptions.AgentError` (at any point) when
        no answer can be given; what was already sent is then not stored.
        The caller enforces AGENT_TIMEOUT_SECONDS over the whole iteration
        and stops iterating (closing a generator) once it gives up.
        """
        ...
