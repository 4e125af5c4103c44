"""The OpenAPI security schemes of the authentication classes.

drf-spectacular finds these extensions by their being imported, which
BetterAuthConfig.ready() does.
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

    target_class = "better_auth.authentication.BetterAuthSessionAuthentication"
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

    target_class = "better_auth.jwt.BetterAuthJWTAuthentication"
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
