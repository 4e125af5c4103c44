"""CPU per request of the app alone: the WSGI app called in this process.

    python -m bench.inprocess [--requests 500] [scenario ...]

No gunicorn, wrk or network: each request of the bench's scenarios
(bench.run.scenarios) goes straight to `chatapi.wsgi.application`, on the
database `make bench` seeded (run it once first). Prints the process CPU
milliseconds per request of each scenario as JSON. Comparing two checkouts
means running this in each, alternating, several times.
"""

import argparse
import io
import json
import logging
import os
import time
from collections.abc import Callable

from bench import seed
from bench.run import Scenario, scenarios

WARM_UP = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--database-url", default=seed.DEFAULT_DATABASE_URL)
    parser.add_argument("names", nargs="*", help="scenarios (default: all)")
    args = parser.parse_args()
    os.environ.update(
        DJANGO_SETTINGS_MODULE="chatapi.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-" + "k" * 50,
        BETTER_AUTH_SECRET="bench-" + "s" * 32,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=args.database_url,
        RATE_LIMIT_CHAT="off",
        RATE_LIMIT_READ="off",
    )
    from chatapi.wsgi import application

    logging.disable(logging.CRITICAL)
    found = {scenario.name: scenario for scenario in scenarios()}
    results = {}
    for name in args.names or list(found):
        request = _caller(application, found[name])
        for number in range(WARM_UP):
            request(number)
        started = time.process_time()
        for number in range(args.requests):
            request(number)
        elapsed = time.process_time() - started
        results[name] = round(elapsed / args.requests * 1000, 3)
    print(json.dumps(results))  # noqa: T201 (the command's output)


def _caller(
    application: Callable[..., object], scenario: Scenario
) -> Callable[[int], None]:
    def request(number: int) -> None:
        bodies = scenario.bodies or ("",)
        body = bodies[number % len(bodies)].encode()
        path, _, query = scenario.path.partition("?")
        environ = {
            "REQUEST_METHOD": scenario.method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_AUTHORIZATION": f"Bearer {seed.token(scenario.user)}",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
        }
        status: list[str] = []

        def start_response(line: str, headers: object) -> None:
            status.append(line)

        b"".join(application(environ, start_response))  # type: ignore[arg-type]
        if not status[0].startswith("200"):
            raise RuntimeError(f"{scenario.name}: {status[0]}")

    return request


if __name__ == "__main__":
    main()
