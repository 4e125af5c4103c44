"""Gunicorn settings, read automatically by `gunicorn chatapi.wsgi:application`.

Gunicorn itself binds to 0.0.0.0:$PORT when PORT is set (127.0.0.1:8000
otherwise) and takes the worker count from WEB_CONCURRENCY.
"""

import os

# Threads: a chat request mostly waits on the agent, not on the CPU.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Above the agent's deadline, so a slow agent answers 504 instead of the
# worker being killed mid-request.
timeout = int(float(os.environ.get("AGENT_TIMEOUT_SECONDS", "30"))) + 30
graceful_timeout = timeout
# No gunicorn access log: the app writes one JSON line per request
# (chatapi.middleware.RequestLogMiddleware), with its request id and user.
accesslog = None
