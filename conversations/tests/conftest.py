"""Fixtures shared by the conversations tests (the root conftest.py has the
session, the API client, row_counts and the database set-up)."""

from collections.abc import Callable
from typing import Any

import pytest


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
