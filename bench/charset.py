"""Cost of a request body declared in a slow charset (docs/SECURITY.md).

    python -m bench.charset [--charset punycode] [--size 1048576]

Sends, in this process and through the whole WSGI app (every middleware),
a body of `--size` bytes declared `charset=<--charset>` to the admin's login
form (multipart; no account: a well-formed csrftoken cookie and a matching Origin) and
to the chat API (a valid session), on a throwaway SQLite database. Prints
each request's status, wall-clock and process-CPU seconds as JSON.
"""

import argparse
import json
import time
from typing import Any

from bench.inapp import WsgiApp, app_load, session_token, wsgi_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--charset", default="punycode")
    parser.add_argument("--size", type=int, default=1024 * 1024)
    args = parser.parse_args()
    application = app_load()
    token = session_token("bench")
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
            "/api/v1/users/bench/chat",
            body,
            "application/json; charset=" + args.charset,
            HTTP_AUTHORIZATION=f"Bearer {token}",
        ),
    }
    print(json.dumps({"charset": args.charset, "bytes": args.size, **results}))  # noqa: T201


def _timed(
    application: WsgiApp, path: str, body: bytes, content_type: str, **headers: str
) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    status = wsgi_request(
        application,
        path,
        method="POST",
        body=body,
        content_type=content_type,
        **headers,
    )
    return {
        "status": status,
        "wall_s": round(time.perf_counter() - wall, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
    }


if __name__ == "__main__":
    main()
