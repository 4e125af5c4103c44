"""Authentication with Better Auth sessions (CONTRACT §3).

Credentials, first match wins:

1. `Authorization: Bearer <token>`, raw or signed (`<token>.<signature>`,
   as the bearer plugin's `set-auth-token` header hands it out);
2. the session cookie `[__Secure-]<prefix>.session_token`, always signed.

`signature` is base64 of HMAC-SHA256(BETTER_AUTH_SECRET, token). The session
and its user are read in one query; nothing is written. An address that
failed too often gets 429 without the query (better_auth.throttling).
"""

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import unquote

from django.conf import settings
from django.db import connection
from django.db.models import Func, Value
from django.utils import timezone

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from better_auth import postgres
from better_auth.models import BetterAuthSession
from better_auth.throttling import failures_limited

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models.sql.compiler import SQLCompiler, _AsSqlType

# Better Auth's tokens are 32 characters; anything far longer is not one.
MAX_CREDENTIAL_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class ApiUser:
    """The Better Auth user behind a request. Never a Django `auth_user`."""

    id: str
    email: str
    name: str

    is_authenticated: ClassVar[bool] = True
    is_anonymous: ClassVar[bool] = False

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True, slots=True)
class Credential:
    """What a request was authenticated with: its `request.auth`."""

    source: Literal["bearer", "cookie", "jwt"]
    # The Better Auth session's id; None for a JWT, which names no session.
    session_id: str | None = None

    @property
    def via_cookie(self) -> bool:
        """True when the browser sent the credential on its own."""
        return self.source == "cookie"


class BetterAuthSessionAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiUser, Credential] | None:
        parts = get_authorization_header(request).split()
        if parts and parts[0].lower() == self.keyword.lower().encode():
            with failures_limited(request):
                if len(parts) != 2:
                    raise _failed("Malformed Authorization header.")
                user, session_id = self._authenticate_bearer(parts[1])
            return user, Credential("bearer", session_id)

        cookie = self._session_cookie(request)
        if cookie is not None:
            with failures_limited(request):
                token = verified_token(unquote(cookie))
                if token is None:
                    raise _failed()
                user, session_id = self.authenticate_token(token)
            return user, Credential("cookie", session_id)
        return None

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) with this WWW-Authenticate value.
        return self.keyword

    def authenticate_token(self, token: str) -> tuple[ApiUser, str]:
        """The user and session id of a valid session token; 401 otherwise.

        One query: the unexpired session and its user (an inner join, so a
        session whose user row is gone matches nothing).
        """
        if connection.vendor == "postgresql":
            found = postgres.session_by_token(token=token, now=timezone.now())
        else:
            found = (
                BetterAuthSession.objects.alias(expires=AsTime("expires_at"))
                .filter(token=token, expires__gt=AsTime(Value(timezone.now())))
                .values_list("id", "user_id", "user__email", "user__name")
                .first()
            )
        if found is None:
            raise _failed()
        session_id, user_id, email, name = found
        return ApiUser(id=user_id, email=email, name=name), session_id

    def _authenticate_bearer(self, credential: bytes) -> tuple[ApiUser, str]:
        try:
            value = unquote(credential.decode("ascii"))
        except UnicodeDecodeError:
            raise _failed("Malformed Authorization header.") from None
        if "." in value:
            token = verified_token(value)
            if token is None:
                raise _failed()
        elif settings.BETTER_AUTH_REQUIRE_SIGNATURE:
            raise _failed("A signed session token is required.")
        else:
            token = value
        if not _plausible(token):
            raise _failed()
        return self.authenticate_token(token)

    def _session_cookie(self, request: Request) -> str | None:
        name = f"{settings.BETTER_AUTH_COOKIE_PREFIX}.session_token"
        cookies = request.COOKIES
        secure = cookies.get(f"__Secure-{name}")
        return secure if secure is not None else cookies.get(name)


class AsTime(Func):
    """A datetime compared as a time, whatever text SQLite holds for it.

    SQLite has no datetime type. Django writes `2026-12-06 10:00:00.000000`,
    Better Auth `2026-12-06T10:00:00.000Z` (JavaScript's toISOString()); as
    text "T" sorts after " ", so a session Better Auth wrote would pass as
    unexpired until the end of the day it expired. SQLite's julianday()
    reads both forms (to the millisecond); unreadable text gives NULL, which
    matches nothing. Other databases have a real type: the value as it is.
    """

    template = "%(expressions)s"

    def as_sqlite(
        self,
        compiler: "SQLCompiler",
        connection: "BaseDatabaseWrapper",
        **extra_context: Any,
    ) -> "_AsSqlType":
        return super().as_sql(
            compiler, connection, template="julianday(%(expressions)s)", **extra_context
        )


def sign_token(token: str) -> str:
    """`token.signature`, as Better Auth signs its session cookie."""
    return f"{token}.{base64.b64encode(_digest(token)).decode()}"


def verified_token(signed: str) -> str | None:
    """The token of a `token.signature` value whose signature verifies."""
    token, _, signature = signed.rpartition(".")
    if not token or not signature or not _plausible(token):
        return None
    # Standard base64 per the contract; URL-safe or unpadded forms are
    # decoded too, since clients copying the value sometimes alter it.
    normalised = signature.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        given = base64.b64decode(
            normalised + "=" * (-len(normalised) % 4), validate=True
        )
    except (binascii.Error, ValueError):
        return None
    return token if hmac.compare_digest(given, _digest(token)) else None


def _digest(token: str) -> bytes:
    key = settings.BETTER_AUTH_SECRET.encode()
    return hmac.new(key, token.encode(), hashlib.sha256).digest()


def _plausible(token: str) -> bool:
    """Printable ASCII of sane length: never sent to the database otherwise."""
    return (
        0 < len(token) <= MAX_CREDENTIAL_LENGTH
        and token.isascii()
        and token.isprintable()
    )


def _failed(detail: str = "Invalid or expired session.") -> AuthenticationFailed:
    return AuthenticationFailed(detail)
