"""Fixtures shared by the conversations tests (the root conftest.py has the
session, the API client and the database set-up)."""

from collections.abc import Callable
from typing import Any

import pytest

from conversations.models import Conversation, Message, ToolCall


@pytest.fixture
def row_counts() -> Callable[[], tuple[int, int, int]]:
    """Counts conversations, messages and tool calls: called before and after
    a request, it shows what the request wrote."""

    def count() -> tuple[int, int, int]:
        return (
            Conversation.objects.count(),
            Message.objects.count(),
            ToolCall.objects.count(),
        )

    return count


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
