"""Running the app as production does, for the system tests.

`Gunicorn` runs `gunicorn chatapi.wsgi:application -c gunicorn.conf.py` with
production settings; `PrivatePostgres` is a PostgreSQL instance of a test's
own, which it may stop and start without disturbing anyone else's tests.
"""

import datetime as dt
import http.client
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings

import psycopg
import pytest

from better_auth.authentication import sign_token

ROOT = Path(__file__).resolve().parents[3]
PACED_AGENT = "agent.tests.fakes.PacedEchoAgent"
DATABASE_UNAVAILABLE = {
    "detail": "The service is briefly unavailable; try again shortly.",
    "code": "database_unavailable",
}
# Variables the app reads. All of them are set or blanked for the server (and
# libpq's PG* variables dropped), so neither the caller's environment nor a
# developer's `.env` (load_dotenv never overrides a variable that is set, even
# to "") leaks in.
APP_PREFIXES = (
    "DJANGO_",
    "BETTER_AUTH_",
    "DATABASE_",
    "DB_",
    "RATE_LIMIT_",
    "REDIS_",
    "FRONTEND_",
    "AGENT_",
    "OPENAI_",
    "CHAT_",
    "LOG_LEVEL",
    "GUNICORN_",
    "WEB_CONCURRENCY",
    "PORT",
)
LOG_TAIL_LINES = 150
LOGS = pytest.StashKey[list[tuple[str, Path]]]()
FIGURES: list[str] = []


# --- figures and logs -------------------------------------------------------


def record_figures(request: pytest.FixtureRequest, **figures: object) -> None:
    """Keep `figures` for the terminal summary and the JUnit XML properties."""
    FIGURES.append(
        f"{request.node.name}: "
        + ", ".join(f"{name}={value}" for name, value in figures.items())
    )
    for name, value in figures.items():
        request.node.user_properties.append((name, value))


def attach_log(request: pytest.FixtureRequest, name: str, path: Path) -> None:
    request.node.stash.setdefault(LOGS, []).append((name, path))


def log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"({path} unreadable: {exc})"
    return "\n".join(lines[-LOG_TAIL_LINES:])


# --- HTTP -------------------------------------------------------------------


@dataclass(frozen=True)
class HttpResult:
    """One request's outcome; `status` is None when no response came."""

    status: int | None
    content_type: str
    body: bytes
    started: float  # time.monotonic()
    finished: float
    error: str = ""

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    def json(self) -> Any:
        return json.loads(self.body)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_request(
    port: int,
    method: str,
    path: str,
    *,
    token: str | None = None,
    payload: Mapping[str, Any] | None = None,
    timeout: float = 30,
) -> HttpResult:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = None
    if payload is not None:
        body = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return HttpResult(
            response.status,
            response.getheader("Content-Type", ""),
            data,
            started,
            time.monotonic(),
        )
    except OSError as exc:
        return HttpResult(None, "", b"", started, time.monotonic(), repr(exc))
    finally:
        conn.close()


# --- gunicorn ---------------------------------------------------------------


def server_environment(database_url: str, **overrides: str) -> dict[str, str]:
    """The environment of a production-settings process on `database_url`.

    Secrets are the test settings' own, so sessions signed in tests verify.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PG") and name != "GUNICORN_CMD_ARGS"
    }
    for name in list(env):
        if name.startswith(APP_PREFIXES):
            env[name] = ""
    env.update(
        DJANGO_SETTINGS_MODULE="chatapi.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        BETTER_AUTH_SECRET=settings.BETTER_AUTH_SECRET,
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url,
        RATE_LIMIT_CHAT="off",
        RATE_LIMIT_READ="off",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def processes_with_parent(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name, which is in parentheses.
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


class Gunicorn:
    """`gunicorn chatapi.wsgi:application -c gunicorn.conf.py` on 127.0.0.1."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.port = free_port()
        self.stderr = logs / "gunicorn.stderr.log"
        self.stdout = logs / "gunicorn.access.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> "Gunicorn":
        """Start the server and wait until every worker runs and it is ready;
        stop it again and fail the test when it does not get there."""
        with self.stderr.open("wb") as err, self.stdout.open("wb") as out:
            self.process = subprocess.Popen(  # noqa: S603 (fixed arguments)
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "chatapi.wsgi:application",
                    "-c",
                    "gunicorn.conf.py",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--no-control-socket",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=err,
                # Its own process group: stop() can end the workers too.
                start_new_session=True,
            )
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        assert self.process is not None
        workers = int(self.env.get("WEB_CONCURRENCY") or "1")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"gunicorn exited with {self.process.returncode}")
            if (
                len(self.worker_pids()) >= workers
                and self.get("/healthz").status == 200
                and self.get("/readyz").status == 200
            ):
                return
            time.sleep(0.2)
        pytest.fail(f"gunicorn was not ready within {timeout} s")

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Workers outlive a killed master; the group is theirs alone.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def worker_pids(self) -> set[int]:
        assert self.process is not None
        return processes_with_parent(self.process.pid)

    def get(self, path: str) -> HttpResult:
        return http_request(self.port, "GET", path, timeout=5)

    def chat(
        self,
        user_id: str,
        token: str,
        message: str,
        conversation_id: str | None = None,
        *,
        timeout: float = 30,
    ) -> HttpResult:
        payload: dict[str, Any] = {"message": message}
        if conversation_id is not None:
            payload["conversation_id"] = conversation_id
        return http_request(
            self.port,
            "POST",
            f"/api/v1/users/{user_id}/chat",
            token=token,
            payload=payload,
            timeout=timeout,
        )


def database_url(
    *, name: str, host: str, port: int | str, user: str, password: str = ""
) -> str:
    credentials = quote(user, safe="")
    if password:
        credentials += ":" + quote(password, safe="")
    return f"postgres://{credentials}@{host or '127.0.0.1'}:{port or 5432}/{name}"


# --- a private PostgreSQL instance -------------------------------------------


def postgres_bin() -> Path | None:
    found = [
        path
        for path in Path("/usr/lib/postgresql").glob("*/bin")
        if (path / "pg_ctl").exists() and path.parent.name.isdigit()
    ]
    return max(found, key=lambda path: int(path.parent.name), default=None)


def os_user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class PrivatePostgres:
    """A throwaway PostgreSQL instance on 127.0.0.1, trust auth, no fsync.

    PostgreSQL refuses to run as root: as root, its commands run as the
    `postgres` OS user.
    """

    database = "chat"

    def __init__(self, bindir: Path, as_user: list[str]) -> None:
        self.bindir = bindir
        self.as_user = as_user
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="chatapi-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.running = False

    @property
    def url(self) -> str:
        return database_url(
            name=self.database, host="127.0.0.1", port=self.port, user="postgres"
        )

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            dbname=self.database,
            autocommit=True,
            connect_timeout=5,
        )

    def _run(self, *args: str) -> None:
        result = subprocess.run(  # noqa: S603 (fixed arguments)
            [*self.as_user, *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode:
            raise RuntimeError(
                f"{Path(args[0]).name} exited with {result.returncode}: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )

    def create(self) -> None:
        if self.as_user:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
            )
        self.start()
        self._run(
            str(self.bindir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            self.database,
        )

    def start(self) -> None:
        self.running = True
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "30",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"
        )
        self.running = False

    def destroy(self) -> None:
        try:
            if self.running:
                self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            pid_file = self.data / "postmaster.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def migrate(postgres: PrivatePostgres) -> None:
    """Migrations, then Better Auth's tables, as a fresh deployment has them."""
    code = (
        "import django; django.setup()\n"
        "from django.core.management import call_command\n"
        "from better_auth.tables import better_auth_tables_ensure\n"
        "call_command('migrate', verbosity=0, interactive=False)\n"
        "better_auth_tables_ensure()\n"
    )
    result = subprocess.run(  # noqa: S603 (fixed arguments)
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=server_environment(postgres.url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def user_with_session(postgres: PrivatePostgres) -> tuple[str, str]:
    """A Better Auth user and session, written as Better Auth writes them."""
    user_id = secrets.token_hex(12)
    token = secrets.token_urlsafe(24)
    now = dt.datetime.now(dt.UTC)
    with postgres.connect() as db:
        db.execute(
            'INSERT INTO "user" (id, name, email, "emailVerified", "createdAt", '
            '"updatedAt") VALUES (%s, %s, %s, false, %s, %s)',
            (user_id, "Restart", f"{user_id}@example.com", now, now),
        )
        db.execute(
            'INSERT INTO "session" (id, token, "userId", "expiresAt", "createdAt", '
            '"updatedAt") VALUES (%s, %s, %s, %s, %s, %s)',
            (
                secrets.token_hex(16),
                token,
                user_id,
                now + dt.timedelta(days=1),
                now,
                now,
            ),
        )
    return user_id, sign_token(token)
