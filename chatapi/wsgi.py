"""WSGI entry point: `gunicorn chatapi.wsgi:application`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatapi.settings")

application = get_wsgi_application()
