import itertools
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from django.core.cache import cache
from django.db import connection

import pytest
from pytest_django import DjangoDbBlocker, Settings
from rest_framework.test import APIClient

from agent.tests.fakes import StreamingAgent
from agent.tests.scripted_model import ScriptedModel
from better_auth.models import BetterAuthSession
from better_auth.tables import better_auth_tables_ensure
from better_auth.tests.factories import BetterAuthSessionFactory
from conversations.models import Conversation, Message, ToolCall
from core import ratelimit

if TYPE_CHECKING:
    from agent.tests.todo_mcp import TodoMCP


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: DjangoDbBlocker) -> None:
    """The test database, plus Better Auth's tables (unmanaged, so not migrated).

    Flushes after `transaction=True` tests leave unmanaged tables alone, so
    factories give every Better Auth row a unique id and tests never count
    those tables.
    """
    with django_db_blocker.unblock():
        better_auth_tables_ensure()


# Test directories (under any app's `tests/`) whose every test starts a
# server, a browser or Node.js: marked `slow` by where they live, so a file
# moved or added there is marked too.
SLOW_DIRECTORIES = {"system", "browser", "interop"}


def _in_slow_directory(path: Path) -> bool:
    return any(
        parent == "tests" and child in SLOW_DIRECTORIES
        for parent, child in itertools.pairwise(path.parts)
    )


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    on_postgresql = os.environ.get("DATABASE_URL", "").startswith(
        ("postgres://", "postgresql://")
    )
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
    for item in items:
        if _in_slow_directory(item.path.relative_to(config.rootpath)):
            item.add_marker(pytest.mark.slow)
        if not on_postgresql and "postgresql" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _postgresql_when_asked(
    django_db_setup: None, django_db_blocker: DjangoDbBlocker
) -> None:
    """CI's PostgreSQL run fails loudly if it is not really on PostgreSQL."""
    if os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        with django_db_blocker.unblock():
            assert connection.vendor == "postgresql"


@pytest.fixture(scope="session")
def unavailable() -> Callable[..., NoReturn]:
    """`unavailable(reason, required_by=VARIABLE)`, for a test whose outside
    tool (Node.js, Chromium, Redis, PostgreSQL binaries) is missing: skips the
    test, or fails it where VARIABLE is set, as CI sets it, so that CI cannot
    go green by skipping what it is there to run."""

    def skip_or_fail(reason: str, *, required_by: str) -> NoReturn:
        if os.environ.get(required_by):
            pytest.fail(f"{reason} ({required_by} is set)", pytrace=False)
        pytest.skip(reason)

    return skip_or_fail


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Rate-limit counters live in the cache: every test starts with none."""
    cache.clear()


@pytest.fixture
def advance_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Stops the clock of core.ratelimit's windows (the per-address limits)
    at the start of an hour; the function returned moves it on by as many
    seconds."""
    now = [1_000_000_800.0]  # a multiple of 3600 (and of 60)
    monkeypatch.setattr(ratelimit, "timer", lambda: now[0])

    def advance(seconds: float) -> None:
        now[0] += seconds

    return advance


@pytest.fixture
def session() -> BetterAuthSession:
    """A valid Better Auth session (and its user)."""
    return BetterAuthSessionFactory.create()


@pytest.fixture
def api(session: BetterAuthSession) -> APIClient:
    """A client sending `session`'s raw token as a bearer token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session.token}")
    return client


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


def producers_join(timeout: float = 10) -> None:
    """Wait for every streamed reply of this process to be finished."""
    for thread in threading.enumerate():
        if thread.name == "chat-stream":
            thread.join(timeout)
            assert not thread.is_alive(), "a streamed reply did not finish"


@pytest.fixture
def stream_producers() -> Iterator[Callable[..., None]]:
    """`stream_producers()` waits for the streamed replies in progress
    (conversations.streaming); they are waited for after the test too, so
    none outlives it. Resets the StreamingAgent fake."""
    StreamingAgent.reset()
    yield producers_join
    StreamingAgent.release.set()
    producers_join()


@pytest.fixture(scope="session")
def _scripted_model_server() -> Iterator[ScriptedModel]:
    model = ScriptedModel()
    yield model
    model.close()


@pytest.fixture
def scripted_model(_scripted_model_server: ScriptedModel) -> Iterator[ScriptedModel]:
    """The OpenAI-compatible server of agent.tests.scripted_model (one per
    session), with no script and no records; hanging answers end with the
    test."""
    _scripted_model_server.reset()
    yield _scripted_model_server
    _scripted_model_server.reset()


@pytest.fixture(scope="session")
def _todo_mcp_server() -> Iterator["TodoMCP"]:
    # Imported here: the mcp SDK takes ~0.4 s to import, which runs that
    # never use this server should not pay.
    from agent.tests.todo_mcp import TodoMCP

    server = TodoMCP()
    yield server
    server.close()


@pytest.fixture
def todo_mcp(_todo_mcp_server: "TodoMCP") -> "TodoMCP":
    """The todo MCP server of agent.tests.todo_mcp (one per session), with no
    tasks and no recorded calls."""
    _todo_mcp_server.reset()
    return _todo_mcp_server


@pytest.fixture
def unreachable_url() -> str:
    """`http://127.0.0.1:PORT` where nothing listens (a port just freed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def real_model(
    settings: Settings, scripted_model: ScriptedModel, todo_mcp: "TodoMCP"
) -> ScriptedModel:
    """AGENT_BACKEND set to the real model (agent.backends.openai.OpenAIAgent)
    behind `scripted_model`, with the tools of `todo_mcp`; give the model
    its script. Changing a setting makes a new backend (agent.backends)."""
    settings.AGENT_BACKEND = "agent.backends.openai.OpenAIAgent"
    settings.OPENAI_BASE_URL = scripted_model.url
    settings.OPENAI_API_KEY = "test-key"
    settings.AGENT_MODEL = "scripted-model"
    settings.AGENT_MCP_SERVERS = [todo_mcp.url]
    return scripted_model
