"""Agent backends for tests of backend loading (see also `fakes.py`)."""

from collections.abc import Sequence
from typing import Any, ClassVar

from agent.backends.base import AgentReply, HistoryMessage


class ConstructionRecordingAgent:
    """Records the arguments of every construction of the class."""

    constructions: ClassVar[list[tuple[tuple[Any, ...], dict[str, Any]]]] = []

    @classmethod
    def reset(cls) -> None:
        cls.constructions.clear()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.constructions.append((args, kwargs))

    def generate_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> AgentReply:
        return AgentReply(content="constructed")
