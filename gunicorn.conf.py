"""Gunicorn settings, read automatically by `gunicorn chatapi.wsgi:application`.

Gunicorn itself binds to 0.0.0.0:$PORT when PORT is set (127.0.0.1:8000
otherwise) and takes the worker count from WEB_CONCURRENCY.
"""

import os

# Threads: a chat request mostly waits on the agent, not on the CPU, and a
# streamed reply (POST .../chat/stream, its resume) holds its thread until
# the reply ends. 64 per worker keep 100 streams open on 2 workers with
# threads to spare for the JSON endpoints (docs/STREAMING.md, "Serving").
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "64"))
# Above the agent's deadline, so a slow agent answers 504 instead of the
# worker being killed mid-request. (gthread's timeout watches the worker's
# main loop, not each request: a long stream is never cut by it.)
timeout = int(float(os.environ.get("AGENT_TIMEOUT_SECONDS", "30"))) + 30
# A stopping worker lets its replies finish and be stored (each is bounded
# by AGENT_TIMEOUT_SECONDS) before it exits.
graceful_timeout = timeout
# No gunicorn access log: the app writes one JSON line per request
# (chatapi.middleware.RequestLogMiddleware), with its request id and user.
accesslog = None
