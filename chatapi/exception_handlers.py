"""One error envelope for the whole API: `{"detail", "code"[, "errors"]}`."""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404

from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from chatapi.parsers import RequestTooLarge
from core.exceptions import ApplicationError, InvalidInputError

logger = logging.getLogger(__name__)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        data: dict[str, Any] = {"detail": exc.detail, "code": exc.code}
        if isinstance(exc, InvalidInputError):
            data["errors"] = exc.errors
        return Response(data, status=exc.status_code)
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database is unreachable or restarting: tell the client to
        # retry rather than fail with a 500. Django drops the broken
        # connection at the end of the request and reconnects on the next.
        logger.error("Database unavailable: %s", _first_line(exc))
        exc = DatabaseUnavailable()
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge()

    # DRF's handler sets WWW-Authenticate and Retry-After; only the body
    # is reshaped here.
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # unexpected: handler500 answers with the same envelope
    if isinstance(exc, exceptions.ValidationError):
        errors = (
            exc.detail
            if isinstance(exc.detail, dict)
            else {"non_field_errors": exc.detail}
        )
        field, first = _first_error(errors)
        detail = str(first) if field == "non_field_errors" else f"{field}: {first}"
        response.data = {
            "detail": detail,
            "code": getattr(first, "code", None) or "invalid",
            "errors": errors,
        }
    elif isinstance(exc, exceptions.APIException):
        response.data = {
            "detail": str(exc.detail),
            "code": getattr(exc.detail, "code", None) or exc.default_code,
        }
    return response


def _first_error(errors: Any, field: str = "") -> tuple[str, Any]:
    """The first leaf of a (possibly nested) DRF error structure."""
    if isinstance(errors, dict) and errors:
        key, value = next(iter(errors.items()))
        return _first_error(value, f"{field}.{key}" if field else str(key))
    if isinstance(errors, list) and errors:
        return _first_error(errors[0], field)
    return field, errors


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else exc.__class__.__name__


class DatabaseUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "The service is briefly unavailable; try again shortly."
    default_code = "database_unavailable"
