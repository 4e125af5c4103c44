"""WSGI entry point: `gunicorn chatapi.wsgi:application`."""

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatapi.settings")

application = get_wsgi_application()

# Import the URLconf now (views, DRF, serializers, the admin), then move
# every object loaded so far out of the cyclic garbage collector's reach:
# they live as long as the process. A full collection then scans only what
# requests allocate, instead of pausing every thread of the worker to scan
# the whole framework (docs/PERFORMANCE.md has the figures).
get_resolver().url_patterns  # noqa: B018 (loads the URLconf)
gc.freeze()
