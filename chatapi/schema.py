"""The OpenAPI schema's project-wide parts (drf-spectacular).

The security schemes of the API's authentication classes, and the hooks
SPECTACULAR_SETTINGS names: canonical paths and the X-Request-ID header
(chatapi.middleware) on every operation. Settings name this module's
hooks, so drf-spectacular imports it, registering the extensions, before
it reads any operation. Each operation's text is its view's docstring; the
API's shared parts (error envelope, parameters) are in
conversations.openapi. `/api/schema/` serves the result and `/api/docs/`
renders it.
"""

from typing import Any

from django.conf import settings

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

# The same scheme names in the schema and in the docs page's "Authorize".
SESSION_BEARER = "sessionBearer"
SESSION_COOKIE = "sessionCookie"
JWT_BEARER = "jwtBearer"


class SessionAuthenticationScheme(OpenApiAuthenticationExtension):
    """Better Auth sessions: a bearer token, or the session cookie."""

    target_class = "conversations.authentication.BetterAuthSessionAuthentication"
    name = [SESSION_BEARER, SESSION_COOKIE]

    def get_security_requirement(
        self, auto_schema: AutoSchema
    ) -> list[dict[str, list[Any]]]:
        # Alternatives (either credential will do), not both at once.
        return [{SESSION_BEARER: []}, {SESSION_COOKIE: []}]

    def get_security_definition(self, auto_schema: AutoSchema) -> list[dict[str, Any]]:
        cookie = f"{settings.BETTER_AUTH_COOKIE_PREFIX}.session_token"
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "Better Auth session token",
                "description": (
                    "`Authorization: Bearer <token>`: the Better Auth session "
                    "token, raw or in the signed form `<token>.<signature>` "
                    "that the bearer plugin hands out in `set-auth-token`. "
                    "Raw tokens are refused when the server requires signed "
                    "ones (`BETTER_AUTH_REQUIRE_SIGNATURE=1`)."
                ),
            },
            {
                "type": "apiKey",
                "in": "cookie",
                "name": cookie,
                "description": (
                    f"Better Auth's session cookie `{cookie}` (or "
                    f"`__Secure-{cookie}`), URL-encoded `<token>.<signature>`, "
                    "sent by the browser. A request that changes state with "
                    "it must come from the frontend's origin (otherwise 403 "
                    "`untrusted_origin`). A bearer credential, when present, "
                    "wins over the cookie."
                ),
            },
        ]


class JWTAuthenticationScheme(OpenApiAuthenticationExtension):
    """Stateless mode: a JWT from Better Auth's JWT plugin."""

    target_class = "conversations.jwt.BetterAuthJWTAuthentication"
    name = JWT_BEARER

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                "`Authorization: Bearer <jwt>` signed by the frontend's "
                "Better Auth JWT plugin, verified with its public keys. "
                "Accepted only when the server is configured for it "
                "(`BETTER_AUTH_JWKS_URL` or `BETTER_AUTH_JWKS_TABLE`)."
            ),
        }


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
