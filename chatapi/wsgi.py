"""WSGI entry point: `gunicorn chatapi.wsgi:application`."""

import gc
import os

import django
from django.urls import get_resolver

from chatapi.handlers import WSGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatapi.settings")

# As django.core.wsgi.get_wsgi_application(), with the app's own handler.
django.setup(set_prefix=False)
application = WSGIHandler()

# Import the URLconf now (views, DRF, serializers, the admin), then move
# every object loaded so far out of the cyclic garbage collector's reach:
# they live as long as the process. A full collection then scans only what
# requests allocate, instead of pausing every thread of the worker to scan
# the whole framework (docs/PERFORMANCE.md has the figures).
get_resolver().url_patterns  # noqa: B018 (loads the URLconf)
gc.freeze()
