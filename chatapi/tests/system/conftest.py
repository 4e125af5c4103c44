"""Fixtures that start gunicorn and a private PostgreSQL instance.

Their logs are attached to the report of a test that fails; their processes
are stopped and their directories removed whatever happens.
"""

import os
import shutil
import subprocess
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from .servers import (
    FIGURES,
    LOGS,
    Gunicorn,
    PrivatePostgres,
    attach_log,
    log_tail,
    migrate,
    os_user_exists,
    postgres_bin,
    server_environment,
)

# Set in CI: a private PostgreSQL instance that cannot start fails the test.
REQUIRED_BY = "CHATAPI_REQUIRE_POSTGRES_BINARIES"

# --- reporting --------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing (or xfailing) test's report carries its servers' logs."""
    report = yield
    if call.excinfo is not None and call.when in ("call", "teardown"):
        for name, path in item.stash.get(LOGS, []):
            report.sections.append((name, log_tail(path)))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures the system tests measured, shown in every run (CI logs)."""
    if FIGURES:
        terminalreporter.section("chatapi system tests: figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


# --- fixtures ----------------------------------------------------------------


@pytest.fixture
def gunicorn(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., Gunicorn]]:
    """Start a server with `gunicorn(database_url, **environment)`."""
    servers: list[Gunicorn] = []

    def start(database_url: str, **env: str) -> Gunicorn:
        logs = tmp_path / f"gunicorn-{len(servers)}"
        logs.mkdir()
        server = Gunicorn(server_environment(database_url, **env), logs)
        servers.append(server)
        attach_log(request, "gunicorn stderr", server.stderr)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def private_postgres(
    request: pytest.FixtureRequest, unavailable: Callable[..., NoReturn]
) -> Iterator[PrivatePostgres]:
    """A migrated PostgreSQL instance that the test may stop and start."""
    bindir = postgres_bin()
    # PostgreSQL refuses to run as root: root runs it as the postgres user.
    as_root = os.geteuid() == 0
    runuser = shutil.which("runuser")
    if bindir is None:
        unavailable(
            "PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are missing",
            required_by=REQUIRED_BY,
        )
    if as_root and (runuser is None or not os_user_exists("postgres")):
        unavailable(
            "running as root, without runuser and a `postgres` OS user to run "
            "PostgreSQL as",
            required_by=REQUIRED_BY,
        )
    assert bindir is not None
    as_user = [runuser, "-u", "postgres", "--"] if as_root and runuser else []

    postgres = PrivatePostgres(bindir, as_user)
    attach_log(request, "postgres log", postgres.log)
    try:
        try:
            postgres.create()
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            unavailable(
                f"a private PostgreSQL instance cannot be started: {exc}",
                required_by=REQUIRED_BY,
            )
        migrate(postgres)
        yield postgres
    finally:
        postgres.destroy()
