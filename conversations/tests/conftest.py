"""Fixtures shared by the conversations tests (the root conftest.py has the
session, the API client, row_counts and the database set-up)."""

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.tests.fakes import StreamingAgent


@pytest.fixture
def assert_error() -> Callable[[Any, int, str], dict[str, Any]]:
    """Checks that a response is the JSON error envelope with `status` and
    `code` and a non-empty detail; returns its body."""

    def check(response: Any, status: int, code: str) -> dict[str, Any]:
        assert response.status_code == status
        assert response["Content-Type"] == "application/json"
        body: dict[str, Any] = response.json()
        assert body["code"] == code
        assert isinstance(body["detail"], str)
        assert body["detail"]
        return body

    return check


def producers_join(timeout: float = 10) -> None:
    """Wait for every streamed reply of this process to be finished."""
    for thread in threading.enumerate():
        if thread.name == "chat-stream":
            thread.join(timeout)
            assert not thread.is_alive(), "a streamed reply did not finish"


@pytest.fixture
def stream_producers() -> Iterator[Callable[..., None]]:
    """`stream_producers()` waits for the streamed replies in progress;
    they are waited for after the test too, so none outlives it."""
    StreamingAgent.reset()
    yield producers_join
    StreamingAgent.release.set()
    producers_join()
