"""Cost of a request body declared in a slow charset (docs/SECURITY.md).

    python -m bench.charset [--charset punycode] [--size 1048576]

Sends, in this process and through the whole WSGI app (every middleware),
a body of `--size` bytes declared `charset=<--charset>` to the admin's login
form (multipart; no account: a well-formed csrftoken cookie and a matching Origin) and
to the chat API (a valid session), on a throwaway SQLite database. Prints
each request's status, wall-clock and process-CPU seconds as JSON.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--charset", default="punycode")
    parser.add_argument("--size", type=int, default=1024 * 1024)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-charset-")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="chatapi.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-" + "k" * 50,
        BETTER_AUTH_SECRET="bench-" + "s" * 32,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=f"sqlite:///{folder}/db.sqlite3",
        RATE_LIMIT_CHAT="off",
        RATE_LIMIT_READ="off",
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from better_auth.models import BetterAuthSession, BetterAuthUser
    from better_auth.tables import better_auth_tables_ensure
    from chatapi.wsgi import application

    logging.disable(logging.CRITICAL)
    call_command("migrate", verbosity=0)
    better_auth_tables_ensure()
    user = BetterAuthUser.objects.create(id="bench", email="b@example.com", name="B")
    token = secrets.token_urlsafe(24)
    now = timezone.now()
    BetterAuthSession.objects.create(
        id="bench-session",
        token=token,
        user=user,
        expires_at=now + timedelta(days=1),
        created_at=now,
        updated_at=now,
    )
    body = b"a" * args.size
    # Django refuses a urlencoded form in any charset but UTF-8; a
    # multipart form's fields are decoded with the declared charset.
    boundary = "bench-boundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="f"\r\n\r\n'
    tail = f"\r\n--{boundary}--\r\n"
    form = head.encode() + body[: args.size - len(head) - len(tail)] + tail.encode()
    csrf = "a" * 32
    results = {
        "admin_login": _timed(
            application,
            "/admin/login/",
            form,
            f"multipart/form-data; boundary={boundary}; charset={args.charset}",
            HTTP_COOKIE=f"csrftoken={csrf}",
            HTTP_ORIGIN="http://127.0.0.1",
        ),
        "chat_api": _timed(
            application,
            f"/api/v1/users/{user.id}/chat",
            body,
            "application/json; charset=" + args.charset,
            HTTP_AUTHORIZATION=f"Bearer {token}",
        ),
    }
    print(json.dumps({"charset": args.charset, "bytes": args.size, **results}))  # noqa: T201


def _timed(
    application: Callable[..., Any],
    path: str,
    body: bytes,
    content_type: str,
    **headers: str,
) -> dict[str, Any]:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": "",
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

    wall, cpu = time.perf_counter(), time.process_time()
    b"".join(application(environ, start_response))
    return {
        "status": int(status[0].split()[0]),
        "wall_s": round(time.perf_counter() - wall, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
    }


if __name__ == "__main__":
    main()
