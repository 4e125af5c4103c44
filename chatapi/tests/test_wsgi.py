"""The WSGI entry point, loaded as gunicorn loads it (a fresh process)."""

import pytest

from chatapi.tests.environment import run_python

pytestmark = pytest.mark.slow  # a fresh interpreter

SCRIPT = """
import gc, sys
import chatapi.wsgi
print(gc.get_freeze_count(), len(gc.get_objects()))
print("conversations.views" in sys.modules)
"""


def test_wsgi_loads_the_urlconf_and_freezes_what_it_loaded() -> None:
    done = run_python(
        ["-c", SCRIPT],
        DJANGO_SECRET_KEY="test-only-secret-key-" + "x" * 40,
        BETTER_AUTH_SECRET="test-only-better-auth-secret",
        DATABASE_URL="sqlite:///:memory:",
    )

    assert done.returncode == 0, done.stderr
    counts, urlconf_loaded = done.stdout.split("\n")[:2]
    frozen, still_collected = map(int, counts.split())
    # Django, DRF and the project's modules: tens of thousands of objects,
    # none left for the collector to scan.
    assert frozen > 50_000
    assert still_collected < 1_000
    assert urlconf_loaded == "True"
