"""The OpenAPI schema's project-wide hooks (drf-spectacular).

SPECTACULAR_SETTINGS names them: canonical paths, and the X-Request-ID
header (chatapi.middleware) on every operation. Each operation's text is
its view's docstring; the API's shared parts (error envelope, parameters)
are in conversations.openapi, the security schemes in better_auth.schema.
`/api/schema/` serves the result and `/api/docs/` renders it.
"""

from typing import Any


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
