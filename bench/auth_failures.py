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
import json
import secrets
import time
from typing import Any

from bench.inapp import app_load, session_token, wsgi_request

WARM_UP = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    application = app_load(args.database_url)
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, override_settings

    token = session_token("bench-auth")

    def request(credential: str) -> int:
        return wsgi_request(
            application,
            "/api/v1/users/bench-auth/conversations",
            REMOTE_ADDR="203.0.113.7",
            HTTP_AUTHORIZATION=f"Bearer {credential}",
        )

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


if __name__ == "__main__":
    main()
