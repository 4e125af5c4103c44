"""CPU per request of /api/schema/ (docs/SECURITY.md).

    python -m bench.schema [drf-spectacular|SchemaView] [--requests 100]

Calls the view in this process (no middleware, rate limit off), JSON then
YAML, and prints the process CPU of the first request and the mean of the
next ones. Run each view in its own process: the first request of a
process warms what every later one reuses.
"""

import argparse
import logging
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("view", choices=["drf-spectacular", "SchemaView"])
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    os.environ["DJANGO_SETTINGS_MODULE"] = "chatapi.test_settings"
    import django

    django.setup()
    from django.test import RequestFactory
    from django.test.utils import override_settings

    from drf_spectacular.views import SpectacularAPIView

    from chatapi.schema import SchemaView

    logging.disable(logging.CRITICAL)
    view_class = SpectacularAPIView if args.view == "drf-spectacular" else SchemaView
    view = view_class.as_view()
    factory = RequestFactory()
    with override_settings(RATE_LIMIT_SCHEMA="off"):
        for query in ("?format=json", ""):
            started = time.process_time()
            view(factory.get(f"/api/schema/{query}")).render()
            first = time.process_time() - started
            started = time.process_time()
            for _ in range(args.requests):
                view(factory.get(f"/api/schema/{query}")).render()
            mean = (time.process_time() - started) / args.requests
            print(  # noqa: T201 (the command's output)
                f"{args.view} {'json' if query else 'yaml'}: first "
                f"{first * 1000:.1f} ms, then {mean * 1000:.1f} ms per request"
            )


if __name__ == "__main__":
    main()
