"""CPU per request of the app alone: the WSGI app called in this process.

    python -m bench.inprocess [--requests 500] [scenario ...]

No gunicorn, wrk or network: each request of the bench's scenarios
(bench.run.scenarios) goes straight to `chatapi.wsgi.application`, on the
database `make bench` seeded (run it once first). Prints the process CPU
milliseconds per request of each scenario as JSON. Comparing two checkouts
means running this in each, alternating, several times.
"""

import argparse
import json
import time
from collections.abc import Callable

from bench import seed
from bench.inapp import WsgiApp, app_load, wsgi_request
from bench.run import Scenario, scenarios

WARM_UP = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--database-url", default=seed.DEFAULT_DATABASE_URL)
    parser.add_argument("names", nargs="*", help="scenarios (default: all)")
    args = parser.parse_args()
    application = app_load(args.database_url)
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


def _caller(application: WsgiApp, scenario: Scenario) -> Callable[[int], None]:
    bodies = scenario.bodies or ("",)
    path, _, query = scenario.path.partition("?")
    authorization = f"Bearer {seed.token(scenario.user)}"

    def request(number: int) -> None:
        status = wsgi_request(
            application,
            path,
            method=scenario.method,
            query=query,
            body=bodies[number % len(bodies)].encode(),
            HTTP_AUTHORIZATION=authorization,
        )
        if status != 200:
            raise RuntimeError(f"{scenario.name}: {status}")

    return request


if __name__ == "__main__":
    main()
