"""Agent backends for tests, selected with the `settings` fixture:

    settings.AGENT_BACKEND = "agent.tests.fakes.FailingAgent"

The agent is the one thing tests replace: it is a system outside the app.
Class-level state is shared by the process-wide instance; `reset()` clears it.
"""

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from agent.backends.base import (
    AgentReply,
    HistoryMessage,
    ModelUsage,
    StreamItem,
    ToolCall,
)
from agent.exceptions import AgentTimeoutError


@dataclass(frozen=True)
class RecordedCall:
    user_id: str
    message: str
    history: tuple[HistoryMessage, ...]
    thread: str


class RecordingAgent:
    """Answers "echo: <message>" with one tool call, and records each call."""

    calls: ClassVar[list[RecordedCall]] = []
    lock = threading.Lock()

    @classmethod
    def reset(cls) -> None:
        cls.calls.clear()

    def generate_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> AgentReply:
        with self.lock:
            self.calls.append(
                RecordedCall(
                    user_id, message, tuple(history), threading.current_thread().name
                )
            )
        return AgentReply(
            content=f"echo: {message}",
            tool_calls=(
                ToolCall("echo", {"message": message}, {"ok": True}, "success"),
                ToolCall("audit", {"n": len(history)}, None, "error"),
            ),
        )


class FailingAgent:
    """Always raises, as a backend whose model is down would."""

    def generate_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> AgentReply:
        raise RuntimeError("model unavailable")


class TimingOutAgent:
    """Raises AgentTimeoutError itself, as a backend whose API client gave
    up before AGENT_TIMEOUT_SECONDS would."""

    def generate_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> AgentReply:
        raise AgentTimeoutError()

    def stream_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> Iterator[StreamItem]:
        yield "I was about to"
        raise AgentTimeoutError()


class UsageAgent:
    """Answers "echo: <message>" with one tool call and `usage`, as a real
    model does; no `stream_response`, so a streamed request gets the reply
    in one piece (set `usage` to something invalid to see it refused)."""

    usage: ClassVar[Any] = ModelUsage("gpt-test-mini", 1200, 34)

    @classmethod
    def reset(cls) -> None:
        cls.usage = ModelUsage("gpt-test-mini", 1200, 34)

    def generate_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> AgentReply:
        return AgentReply(
            content=f"echo: {message}",
            tool_calls=(ToolCall("echo", {"message": message}, {"ok": True}),),
            usage=self.usage,
        )


class SlowAgent:
    """Sleeps `delay` seconds, then answers; `finished` is set once it has."""

    delay: ClassVar[float] = 1.0
    finished: ClassVar[threading.Event] = threading.Event()

    @classmethod
    def reset(cls) -> None:
        cls.delay = 1.0
        cls.finished = threading.Event()

    def generate_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> AgentReply:
        time.sleep(self.delay)
        try:
            return AgentReply(
                content="late reply",
                tool_calls=(ToolCall("add_task", {"title": message}, {}, "success"),),
            )
        finally:
            self.finished.set()


class InvalidReplyAgent:
    """Returns whatever `reply` is set to: output that must not be stored."""

    reply: ClassVar[Any] = "not an AgentReply"

    def generate_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> Any:
        return self.reply


class ProbeAgent:
    """Runs `probe()` from inside the agent call and keeps its outcome.

    Lets a test look at the database, from the agent's own thread and
    connection, at the moment the agent runs.
    """

    probe: ClassVar[Any] = None
    outcome: ClassVar[list[Any]] = []

    @classmethod
    def reset(cls) -> None:
        cls.probe = None
        cls.outcome = []

    def generate_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> AgentReply:
        # Read from the class: a function set on it must not become a method.
        probe = type(self).probe
        try:
            self.outcome.append(probe() if probe else None)
        except Exception as exc:
            self.outcome.append(exc)
        return AgentReply(content="probed")


class PacedEchoAgent:
    """Answers "echo: <message>" with one tool call, after a pause.

    The pause is `slow_delay` seconds for a message starting with "slow",
    `delay` otherwise. Keeps no state, so every worker of a server started
    by a test (chatapi/tests/system) behaves alike.
    """

    delay: ClassVar[float] = 0.2
    slow_delay: ClassVar[float] = 3.0

    def generate_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> AgentReply:
        time.sleep(self.slow_delay if message.startswith("slow") else self.delay)
        return AgentReply(
            content=f"echo: {message}",
            tool_calls=(ToolCall("echo", {"message": message}, {"ok": True}),),
        )


class StreamingAgent:
    """Streams `items` (text pieces and tool calls) in order.

    With `hold` set, it waits for `release` after the first item, so a
    test can act while a reply is half sent; `finished` is set once the
    last item was given.
    """

    items: ClassVar[tuple[StreamItem, ...]] = (
        "Hello",
        ToolCall("add_task", {"title": "milk"}, {"task_id": 7}, "success"),
        ", wor",
        "ld",
        ToolCall("audit", {}, "no audit log", "error"),
    )
    hold: ClassVar[bool] = False
    release: ClassVar[threading.Event] = threading.Event()
    finished: ClassVar[threading.Event] = threading.Event()

    @classmethod
    def reset(cls) -> None:
        cls.hold = False
        cls.release = threading.Event()
        cls.finished = threading.Event()

    def generate_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> AgentReply:
        raise AssertionError("streaming requests call stream_response")

    def stream_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> Iterator[StreamItem]:
        release = self.release
        for number, item in enumerate(self.items):
            if number == 1 and self.hold:
                release.wait(30)
            yield item
        self.finished.set()


class FailingStreamAgent:
    """Streams a piece of text, then fails, as a model that drops out."""

    def generate_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> AgentReply:
        raise AssertionError("streaming requests call stream_response")

    def stream_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> Iterator[StreamItem]:
        yield "I was about to"
        raise RuntimeError("model went away")


class PacedStreamAgent:
    """Streams "echo: <message>" a word every `delay` seconds, after
    `first_delay` seconds; keeps no state, so every worker of a server
    started by a test behaves alike."""

    first_delay: ClassVar[float] = 0.0
    delay: ClassVar[float] = 0.2

    def generate_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> AgentReply:
        return AgentReply(content=f"echo: {message}")

    def stream_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> Iterator[StreamItem]:
        time.sleep(self.first_delay)
        yield ToolCall("echo", {"message": message}, {"ok": True})
        for number, word in enumerate(f"echo: {message}".split(" ")):
            if number:
                time.sleep(self.delay)
            yield word if number == 0 else " " + word
