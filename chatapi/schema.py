"""The OpenAPI schema's project-wide hooks (drf-spectacular).

SPECTACULAR_SETTINGS names them: canonical paths, and the X-Request-ID
header (chatapi.middleware) on every operation. Each operation's text is
its view's docstring; the API's shared parts (error envelope, parameters)
are in conversations.openapi, the security schemes in better_auth.schema.
`/api/schema/` serves the result (SchemaView: built once per process) and
`/api/docs/` renders it.
"""

import threading
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from conversations.throttles import AddressRateThrottle

_lock = threading.Lock()
_built: dict[str, Any] = {}


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI document, built on first use and kept for the process.

    The schema depends only on the code and the settings, never on the
    request, so one build serves every request.
    """
    schema = _built.get("schema")
    if schema is None:
        with _lock:
            schema = _built.get("schema")
            if schema is None:
                schema = SchemaGenerator().get_schema(request=None, public=True)
                _built["schema"] = schema
    return schema


def openapi_schema_clear() -> None:
    """Forget the document: the next request builds it again."""
    _built.clear()


@receiver(setting_changed)
def _settings_changed(**kwargs: Any) -> None:
    # Tests change settings that the schema reflects.
    openapi_schema_clear()


class SchemaView(SpectacularAPIView):
    """`/api/schema/`: the document built once per process (rendered as
    YAML, or JSON with ?format=json), throttled per client address
    (RATE_LIMIT_SCHEMA); errors are the API's JSON envelope.

    Unlike drf-spectacular's view, `?lang=` and `?version=` are ignored:
    the API has one version and its texts are English, and each distinct
    value would have built (and, for `lang`, kept) a schema of its own.
    """

    throttle_classes = [AddressRateThrottle]
    throttle_scope = "schema"

    def handle_exception(self, exc: Exception) -> Response:
        # Errors (429, 405) in the API's JSON envelope, not in the
        # schema's YAML or OpenAPI JSON.
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        filename = self._get_filename(request, None)
        return Response(
            data=openapi_schema(),
            headers={"Content-Disposition": f'inline; filename="{filename}"'},
        )


def preprocess_canonical_paths(
    endpoints: list[tuple[str, str, str, Any]], **kwargs: Any
) -> list[tuple[str, str, str, Any]]:
    """Paths without the optional trailing slash their routes accept."""
    return [
        (path.rstrip("/") or "/", path_regex, method, callback)
        for path, path_regex, method, callback in endpoints
    ]


def postprocess_request_ids(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """`X-Request-ID` on every operation (chatapi.middleware): an optional
    request header, and a response header on every answer."""
    parameter = {
        "in": "header",
        "name": "X-Request-ID",
        "required": False,
        "description": (
            "The client's id for this request, echoed back and logged; "
            "replaced by a new id unless it is 1 to 200 printable ASCII "
            "characters without spaces."
        ),
        "schema": {"type": "string", "pattern": "^[!-~]{1,200}$"},
    }
    header = {
        "description": "The request's id: the client's X-Request-ID or a new one.",
        "schema": {"type": "string"},
        "required": True,
    }
    for path in result["paths"].values():
        for operation in path.values():
            operation.setdefault("parameters", []).append(parameter)
            for response in operation["responses"].values():
                response.setdefault("headers", {})["X-Request-ID"] = header
    return result
