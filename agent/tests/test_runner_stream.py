"""agent_reply_stream: a backend's reply item by item, checked, with
AGENT_TIMEOUT_SECONDS over the whole iteration (CONTRACT §7)."""

import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, cast

import pytest
from pytest_django import Settings

from agent.backends.base import HistoryMessage, ModelUsage, StreamItem, ToolCall
from agent.exceptions import AgentError, AgentTimeoutError
from agent.runner import agent_reply_stream


class TrickleAgent:
    """A piece every `pause` seconds, `count` of them; `given` counts them."""

    pause: ClassVar[float] = 0.1
    count: ClassVar[int] = 3
    given: ClassVar[list[str]] = []
    items: ClassVar[tuple[Any, ...]] = ()

    def generate_response(self, **kwargs: Any) -> Any:
        raise AssertionError("not called when stream_response exists")

    def stream_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> Iterator[StreamItem]:
        yield from self.items
        for number in range(self.count):
            time.sleep(self.pause)
            self.given.append(str(number))
            yield str(number)


@pytest.fixture
def trickle(settings: Settings) -> type[TrickleAgent]:
    settings.AGENT_BACKEND = f"{__name__}.TrickleAgent"
    TrickleAgent.pause, TrickleAgent.count, TrickleAgent.items = 0.1, 3, ()
    TrickleAgent.given = []
    return TrickleAgent


def run(**kwargs: Any) -> list[StreamItem]:
    return list(agent_reply_stream(user_id="u", message="m", history=[], **kwargs))


def test_agent_reply_stream_yields_items_as_they_come(
    trickle: type[TrickleAgent],
) -> None:
    started = time.monotonic()
    stream = agent_reply_stream(user_id="u", message="m", history=[])

    assert next(stream) == "0"
    assert time.monotonic() - started < 0.25  # not after the whole reply
    assert list(stream) == ["1", "2"]


def test_agent_reply_stream_deadline_covers_the_whole_iteration(
    trickle: type[TrickleAgent], settings: Settings
) -> None:
    # Each piece comes well within the deadline; all of them do not.
    settings.AGENT_TIMEOUT_SECONDS = 0.35
    trickle.count = 20
    received: list[StreamItem] = []

    started = time.monotonic()
    with pytest.raises(AgentTimeoutError):
        received.extend(agent_reply_stream(user_id="u", message="m", history=[]))

    assert time.monotonic() - started < 1
    assert 1 <= len(received) < 20
    time.sleep(0.3)
    # Told to stop: the backend's generator was closed.
    assert len(trickle.given) < 20


@pytest.mark.parametrize(
    "item",
    [
        b"bytes",
        3,
        "a\x00b",
        ToolCall("", {}),
        ToolCall("t", {}, float("nan")),
        ModelUsage("m" * 256),
        ModelUsage("gpt", -1, 0),
        ModelUsage("gpt", 0, cast(Any, False)),
        (ModelUsage("gpt"), ModelUsage("gpt")),
    ],
    ids=[
        "bytes",
        "int",
        "nul",
        "empty-tool",
        "nan",
        "long-model",
        "negative-tokens",
        "bool-tokens",
        "two-usages",
    ],
)
def test_agent_reply_stream_unusable_item_raises_agent_error(
    trickle: type[TrickleAgent], item: Any
) -> None:
    trickle.items = ("fine", *(item if isinstance(item, tuple) else (item,)))

    with pytest.raises(AgentError) as raised:
        run()

    assert type(raised.value) is AgentError


def test_agent_reply_stream_without_stream_response_gives_one_piece(
    settings: Settings,
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.RecordingAgent"

    items = run()

    assert [type(i).__name__ for i in items] == ["ToolCall", "ToolCall", "str"]
    assert items[-1] == "echo: m"


def test_agent_reply_stream_raising_backend_raises_agent_error(
    settings: Settings,
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.FailingStreamAgent"
    stream = agent_reply_stream(user_id="u", message="m", history=[])

    assert next(stream) == "I was about to"
    with pytest.raises(AgentError) as raised:
        next(stream)
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_agent_reply_stream_yields_the_usage_item(
    trickle: type[TrickleAgent],
) -> None:
    usage = ModelUsage("gpt-4o-mini", 12, 3)
    trickle.items = ("Hi", usage)
    trickle.count = 1

    assert run() == ["Hi", usage, "0"]


def test_agent_reply_stream_without_stream_response_gives_usage_last(
    settings: Settings,
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.UsageAgent"

    items = run()

    assert [type(i).__name__ for i in items] == ["ToolCall", "str", "ModelUsage"]
    assert items[-1] == ModelUsage("gpt-test-mini", 1200, 34)


def test_agent_reply_stream_backend_timeout_raises_agent_timeout_error(
    settings: Settings,
) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.TimingOutAgent"
    stream = agent_reply_stream(user_id="u", message="m", history=[])

    assert next(stream) == "I was about to"
    with pytest.raises(AgentTimeoutError) as raised:
        next(stream)
    assert raised.value.status_code == 504
