"""Agents for the streaming bench (bench/stream.py), picked with AGENT_BACKEND.

`PacedAgent` takes BENCH_AGENT_SECONDS (default 2) for its whole reply,
streamed as BENCH_AGENT_PIECES (default 20) pieces at even intervals, the
first one at once, as a model that starts answering quickly and writes
for a while. Its reply depends on the message only, so every stored reply
can be checked against the stream that carried it.
"""

import os
import time
from collections.abc import Iterator, Sequence

from agent.backends.base import AgentReply, HistoryMessage, StreamItem, ToolCall


def _pace() -> tuple[float, int]:
    seconds = float(os.environ.get("BENCH_AGENT_SECONDS", "2"))
    pieces = int(os.environ.get("BENCH_AGENT_PIECES", "20"))
    return seconds, max(pieces, 2)


def pieces_of(message: str) -> list[str]:
    _, count = _pace()
    return [f"{message}:{number} " for number in range(count)]


class PacedAgent:
    def generate_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> AgentReply:
        seconds, _ = _pace()
        time.sleep(seconds)
        return AgentReply(
            content="".join(pieces_of(message)),
            tool_calls=(ToolCall("echo", {"message": message}, {"ok": True}),),
        )

    def stream_response(
        self, *, user_id: str, message: str, history: Sequence[HistoryMessage]
    ) -> Iterator[StreamItem]:
        seconds, count = _pace()
        yield ToolCall("echo", {"message": message}, {"ok": True})
        for number, piece in enumerate(pieces_of(message)):
            if number:
                time.sleep(seconds / (count - 1))
            yield piece
