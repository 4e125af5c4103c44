"""Log records as JSON lines, one per record, for a log collector to parse.

Stdlib only: the LOGGING setting loads this before Django's apps are ready.
"""

import json
import logging
import math
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# The id of the request being served by this thread, set by
# chatapi.middleware.RequestLogMiddleware; every record logged while it
# runs carries it, so a failure's lines join the request's access line.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# The same id, kept in the request's META (a WSGI environ extension key).
REQUEST_ID_META = "chatapi.request_id"

# Attributes every LogRecord has; anything else came in through `extra=`.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))
) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message"}`, plus the record's extra
    fields, its request id, and its exception and stack when it has them.

    Only plain values among the extra fields are written (strings, numbers,
    booleans, None): an object such as the HttpRequest that Django's
    `django.request` logger attaches is left out, so neither its headers nor
    its cookies can reach the log through its repr.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                if _plain(value):
                    entry.setdefault(key, value)
        if "request_id" not in entry:
            request_id = _request_id_of(record)
            if request_id is not None:
                entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry)


def _request_id_of(record: logging.LogRecord) -> str | None:
    # Django logs a 4xx/5xx answer (django.request) after the middleware has
    # returned, with the request attached: its id is in the request's META.
    meta = getattr(getattr(record, "request", None), "META", None)
    if isinstance(meta, dict) and isinstance(meta.get(REQUEST_ID_META), str):
        return meta[REQUEST_ID_META]
    return request_id_var.get()


def _plain(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)  # NaN and Infinity are not JSON
    return value is None or isinstance(value, str | int | bool)
