"""The app called in this process, for the measurements of the app alone
(bench.inprocess, bench.charset, bench.auth_failures): no gunicorn, wrk or
network, every middleware included."""

import io
import logging
import os
import secrets
import tempfile
from collections.abc import Callable
from datetime import timedelta
from typing import Any

WsgiApp = Callable[..., Any]


def app_load(database_url: str | None = None, **environment: str) -> WsgiApp:
    """`chatapi.wsgi.application` with production settings (debug off, rate
    limits off unless `environment` says otherwise) on `database_url`, or on
    a throwaway SQLite file; the log silenced."""
    if database_url is None:
        database_url = f"sqlite:///{tempfile.mkdtemp(prefix='bench-')}/db.sqlite3"
    os.environ.update(
        DJANGO_SETTINGS_MODULE="chatapi.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-" + "k" * 50,
        BETTER_AUTH_SECRET="bench-" + "s" * 32,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=database_url,
        RATE_LIMIT_CHAT="off",
        RATE_LIMIT_READ="off",
    )
    os.environ.update(environment)
    from chatapi.wsgi import application

    logging.disable(logging.CRITICAL)
    return application


def session_token(user_id: str) -> str:
    """Migrate, then a new session of the user `user_id` (made if missing):
    its bearer token."""
    from django.core.management import call_command
    from django.utils import timezone

    from better_auth.models import BetterAuthSession, BetterAuthUser
    from better_auth.tables import better_auth_tables_ensure

    call_command("migrate", verbosity=0)
    better_auth_tables_ensure()
    user, _ = BetterAuthUser.objects.get_or_create(
        id=user_id, defaults={"email": f"{user_id}@example.com", "name": "B"}
    )
    token = secrets.token_urlsafe(24)
    BetterAuthSession.objects.create(
        id=secrets.token_hex(16),
        token=token,
        user=user,
        expires_at=timezone.now() + timedelta(days=1),
    )
    return token


def wsgi_request(
    application: WsgiApp,
    path: str,
    *,
    method: str = "GET",
    query: str = "",
    body: bytes = b"",
    content_type: str = "application/json",
    **headers: str,
) -> int:
    """One request through the whole app; its status code. `headers` are
    WSGI environ keys (`HTTP_AUTHORIZATION=...`, `REMOTE_ADDR=...`)."""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        **headers,
    }
    status: list[str] = []

    def start_response(line: str, response_headers: object) -> None:
        status.append(line)

    b"".join(application(environ, start_response))
    return int(status[0].split()[0])
