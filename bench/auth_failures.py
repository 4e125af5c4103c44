"""Cost of requests with made-up credentials, and of valid ones, with the
failed-authentication limit off and on (docs/SECURITY.md).

    python -m bench.auth_failures [--requests 1000] [--database-url URL]

Sends, in this process and through the whole WSGI app, bearer requests from
one address to GET .../conversations: made-up tokens, then a valid session's
token. Prints, for RATE_LIMIT_AUTH_FAILURES off and 30/minute, the statuses,
database queries and process CPU per request. Default database: a throwaway
SQLite file (a PostgreSQL URL is migrated and gets a bench user).
"""

import argparse
import io
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

WARM_UP = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-auth-")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="chatapi.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-" + "k" * 50,
        BETTER_AUTH_SECRET="bench-" + "s" * 32,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=args.database_url or f"sqlite:///{folder}/db.sqlite3",
        RATE_LIMIT_READ="off",
    )
    import django

    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, override_settings
    from django.utils import timezone

    from better_auth.models import BetterAuthSession, BetterAuthUser
    from better_auth.tables import better_auth_tables_ensure
    from chatapi.wsgi import application

    logging.disable(logging.CRITICAL)
    call_command("migrate", verbosity=0)
    better_auth_tables_ensure()
    user, _ = BetterAuthUser.objects.get_or_create(
        id="bench-auth", defaults={"email": "bench-auth@example.com", "name": "B"}
    )
    token = secrets.token_urlsafe(24)
    BetterAuthSession.objects.create(
        id=secrets.token_hex(16),
        token=token,
        user=user,
        expires_at=timezone.now() + timedelta(days=1),
    )
    request = _caller(application, f"/api/v1/users/{user.id}/conversations")
    results: dict[str, Any] = {}
    for rate in ["off", "30/minute"]:
        with override_settings(RATE_LIMIT_AUTH_FAILURES=rate):
            for name, credential in [
                ("made_up_token", lambda: secrets.token_urlsafe(24)),
                ("valid_token", lambda: token),
            ]:
                cache.clear()
                for _ in range(WARM_UP):
                    request(credential())
                statuses: set[int] = set()
                with CaptureQueriesContext(connection) as queries:
                    started = time.process_time()
                    for _ in range(args.requests):
                        statuses.add(request(credential()))
                    elapsed = time.process_time() - started
                results[f"{rate} {name}"] = {
                    "statuses": sorted(statuses),
                    "queries": round(len(queries.captured_queries) / args.requests, 2),
                    "cpu_ms": round(elapsed / args.requests * 1000, 3),
                }
    print(json.dumps(results, indent=1))  # noqa: T201 (the command's output)


def _caller(application: Callable[..., Any], path: str) -> Callable[[str], int]:
    def request(token: str) -> int:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "HTTP_HOST": "127.0.0.1",
            "REMOTE_ADDR": "203.0.113.7",
            "HTTP_AUTHORIZATION": f"Bearer {token}",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.url_scheme": "http",
        }
        status: list[str] = []

        def start_response(line: str, headers: object) -> None:
            status.append(line)

        b"".join(application(environ, start_response))
        return int(status[0].split()[0])

    return request


if __name__ == "__main__":
    main()
