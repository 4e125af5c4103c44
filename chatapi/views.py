"""Django-level error pages, as JSON: nothing a client sends gets HTML."""

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse


def error_response(detail: str, code: str, status: int) -> JsonResponse:
    """The API's error envelope, from outside DRF."""
    # Compact, like DRF's renderer: a 404 reads the same from either layer.
    return JsonResponse(
        {"detail": detail, "code": code},
        status=status,
        json_dumps_params={"separators": (",", ":")},
    )


def bad_request(request: HttpRequest, exception: Exception, *args: Any) -> JsonResponse:
    if isinstance(exception, RequestDataTooBig):
        return error_response(
            "The request body is too large.", "request_too_large", 413
        )
    return error_response("Bad request.", "bad_request", 400)


def permission_denied(
    request: HttpRequest, exception: Exception, *args: Any
) -> JsonResponse:
    return error_response(
        "You do not have permission to perform this action.", "permission_denied", 403
    )


def page_not_found(
    request: HttpRequest, exception: Exception, *args: Any
) -> JsonResponse:
    return error_response("Not found.", "not_found", 404)


def server_error(request: HttpRequest, *args: Any) -> JsonResponse:
    return error_response("Internal server error.", "server_error", 500)
