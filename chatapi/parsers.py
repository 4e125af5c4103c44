import io
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from rest_framework import exceptions, parsers, status


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class LimitedJSONParser(parsers.JSONParser):
    """JSON parser that refuses bodies over DATA_UPLOAD_MAX_MEMORY_SIZE and
    decodes them as UTF-8 only.

    DRF reads the request stream directly, bypassing the limit Django
    applies to `request.body`; this puts it back, for bodies with or
    without a Content-Length.
    """

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        if request is not None:
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = 0
            if declared > limit:
                raise RequestTooLarge()
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise RequestTooLarge()
        # UTF-8 whatever the request declares (Utf8OnlyMiddleware refuses
        # other charsets; this holds without it too).
        context = {**(parser_context or {}), "encoding": "utf-8"}
        try:
            return super().parse(io.BytesIO(body), media_type, context)
        except RecursionError:
            # The json module raises this, not ValueError, for deep nesting
            # ([[[…]]] a few thousand levels down): a client error, not a 500.
            raise exceptions.ParseError(
                "JSON parse error - nested too deeply."
            ) from None
