"""Stateless authentication with Better Auth's JWT plugin.

`Authorization: Bearer <jwt>`, signed by the frontend with a key of its
JWKS. The public keys come from the frontend's JWKS endpoint
(`BETTER_AUTH_JWKS_URL`) or from Better Auth's `jwks` table
(`BETTER_AUTH_JWKS_TABLE`), and are cached in process memory for
`BETTER_AUTH_JWKS_CACHE_SECONDS`. A token naming an unknown `kid` makes the
keys be fetched again, at most once per `REFETCH_MIN_SECONDS`. With a warm
cache a JWT costs no database query and no network call.

Off unless one of the two sources is set. A bearer value that is not a JWT
(Better Auth's session tokens, raw or signed) is left to
`BetterAuthSessionAuthentication`.
"""

import base64
import binascii
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.db import DatabaseError, connection, transaction
from django.dispatch import receiver

import jwt
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import APIException, AuthenticationFailed
from rest_framework.request import Request

from better_auth.authentication import ApiUser, Credential
from better_auth.throttling import failures_limited

logger = logging.getLogger(__name__)

# Seconds to wait for the JWKS endpoint.
FETCH_TIMEOUT_SECONDS = 3.0
# Largest JWKS document read; Better Auth's holds a handful of keys.
MAX_JWKS_BYTES = 256 * 1024
# A token with an unknown kid refetches the keys at most this often, so a
# flood of made-up kids cannot turn into a flood of fetches.
REFETCH_MIN_SECONDS = 30.0
# After a failed fetch, the next attempt waits this long.
RETRY_AFTER_FAILURE_SECONDS = 5.0
# Longer values are not tokens this API hands out to anyone.
MAX_JWT_LENGTH = 16 * 1024

# The asymmetric algorithms this class can verify, with the key type (and
# curve) each needs. HS* and "none" are absent on purpose: a token must be
# signed with the frontend's private key.
KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "EdDSA": ("OKP", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
}

_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")

# The cache's clock; tests move it instead of waiting.
_monotonic = time.monotonic


class JWKSUnavailable(APIException):
    """The keys to verify a JWT cannot be had right now (503)."""

    status_code = 503
    default_detail = "The keys to verify the token are unavailable; try again later."
    default_code = "jwks_unavailable"

    def __init__(self, wait: float) -> None:
        super().__init__()
        # DRF's handler turns `wait` into a Retry-After header.
        self.wait = max(1, round(wait))


class BetterAuthJWTAuthentication(BaseAuthentication):
    """`Authorization: Bearer <jwt>` from Better Auth's JWT plugin.

    On success `request.user` is an `ApiUser` built from the token's claims
    (`sub`, `email`, `name`) and `request.auth` is `Credential("jwt")`.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiUser, Credential] | None:
        if not jwt_mode_enabled():
            return None
        parts = get_authorization_header(request).split()
        if len(parts) != 2 or parts[0].lower() != self.keyword.lower().encode():
            return None  # no bearer value: the session class decides
        try:
            value = parts[1].decode("ascii")
        except UnicodeDecodeError:
            return None
        header = jwt_header(value)
        if header is None:
            return None  # a Better Auth session token, raw or signed
        with failures_limited(request):
            return self.authenticate_jwt(value, header)

    def authenticate_header(self, request: Request) -> str:
        # First in DEFAULT_AUTHENTICATION_CLASSES, so this is the class whose
        # answer makes DRF send 401 with WWW-Authenticate: Bearer.
        return self.keyword

    def authenticate_jwt(
        self, token: str, header: dict[str, Any]
    ) -> tuple[ApiUser, Credential]:
        if len(token) > MAX_JWT_LENGTH:
            raise _failed()
        alg = header.get("alg")
        kid = header.get("kid")
        if not isinstance(alg, str) or alg not in allowed_algorithms():
            logger.info("JWT refused: algorithm %.40r is not allowed", alg)
            raise _failed()
        if not isinstance(kid, str) or not kid:
            logger.info("JWT refused: no kid in its header")
            raise _failed()
        key = _keys.key(kid=kid, alg=alg)
        if key is None:
            raise _failed()
        try:
            payload = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                issuer=settings.BETTER_AUTH_JWT_ISSUER,
                audience=settings.BETTER_AUTH_JWT_AUDIENCE,
                options={
                    "require": ["exp", "iss", "aud", "sub"],
                    # A frontend clock a second ahead must not make fresh
                    # tokens fail; exp and nbf are what bound a token's life.
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as error:
            logger.info("JWT refused: %s", error)
            raise _failed() from None
        subject = payload["sub"]
        if not isinstance(subject, str) or not subject:
            raise _failed()
        user = ApiUser(
            id=subject,
            email=_text(payload.get("email")),
            name=_text(payload.get("name")),
        )
        return user, Credential("jwt")


def jwt_mode_enabled() -> bool:
    return bool(settings.BETTER_AUTH_JWKS_URL or settings.BETTER_AUTH_JWKS_TABLE)


def allowed_algorithms() -> list[str]:
    """The configured algorithms this class can verify (never HS*/none)."""
    return [alg for alg in settings.BETTER_AUTH_JWT_ALGORITHMS if alg in KEY_TYPES]


def jwt_header(value: str) -> dict[str, Any] | None:
    """The decoded header of a JWT-shaped value; None for anything else.

    JWT-shaped: three base64url segments whose first decodes to a JSON
    object with "alg". Better Auth's session tokens never are.
    """
    segments = value.split(".")
    if len(segments) != 3 or not all(_SEGMENT.fullmatch(s) for s in segments):
        return None
    if not segments[0] or not segments[1]:
        return None
    try:
        raw = base64.urlsafe_b64decode(segments[0] + "=" * (-len(segments[0]) % 4))
        header = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(header, dict) or "alg" not in header:
        return None
    return header


@dataclass
class _KeySetState:
    """The keys as last fetched. Replaced whole on each fetch; only the
    memo of prepared keys grows in place."""

    jwks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # _monotonic() of the last successful fetch, and of the last try.
    fetched_at: float | None = None
    attempted_at: float | None = None
    # PyJWK objects by (kid, alg), built on first use.
    prepared: dict[tuple[str, str], jwt.PyJWK] = field(default_factory=dict)


class _KeyCache:
    """The frontend's public keys, per process, for all threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = _KeySetState()

    def clear(self) -> None:
        with self._lock:
            self._state = _KeySetState()

    def key(self, *, kid: str, alg: str) -> jwt.PyJWK | None:
        """The key `kid` for `alg`; None when there is no such usable key."""
        state = self._state
        now = _monotonic()
        ttl = settings.BETTER_AUTH_JWKS_CACHE_SECONDS
        if _since(state.fetched_at, now) >= ttl:
            failed_recently = (
                state.attempted_at != state.fetched_at
                and _since(state.attempted_at, now) < RETRY_AFTER_FAILURE_SECONDS
            )
            if not failed_recently:
                state = self._refresh(seen=state)
        if kid not in state.jwks and state.fetched_at is not None:
            if _since(state.attempted_at, now) >= REFETCH_MIN_SECONDS:
                logger.info("JWT with unknown kid %.80r: fetching the keys again", kid)
                state = self._refresh(seen=state)
        if state.fetched_at is None:
            waited = _since(state.attempted_at, _monotonic())
            raise JWKSUnavailable(wait=RETRY_AFTER_FAILURE_SECONDS - waited)
        if kid not in state.jwks:
            logger.info("JWT refused: unknown kid %.80r", kid)
            return None
        return self._prepared(state, kid, alg)

    def _refresh(self, *, seen: _KeySetState) -> _KeySetState:
        with self._lock:
            if self._state is not seen:
                return self._state  # another thread fetched meanwhile
            now = _monotonic()
            try:
                jwks = _load_jwks()
            except JWKSFetchError as error:
                logger.warning("Could not load the JWKS: %s", error)
                # Stale keys stay usable until a fetch succeeds again.
                self._state = _KeySetState(
                    jwks=seen.jwks,
                    fetched_at=seen.fetched_at,
                    attempted_at=now,
                    prepared=seen.prepared,
                )
            else:
                self._state = _KeySetState(jwks=jwks, fetched_at=now, attempted_at=now)
            return self._state

    @staticmethod
    def _prepared(state: _KeySetState, kid: str, alg: str) -> jwt.PyJWK | None:
        prepared = state.prepared.get((kid, alg))
        if prepared is not None:
            return prepared
        jwk = state.jwks[kid]
        kty, crv = KEY_TYPES[alg]
        if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
            logger.info("JWT refused: key %r does not fit algorithm %s", kid, alg)
            return None
        if jwk.get("alg") not in (None, alg):
            logger.info("JWT refused: key %r is for %s, not %s", kid, jwk["alg"], alg)
            return None
        try:
            prepared = jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError as error:
            logger.warning("Unusable key %r in the JWKS: %s", kid, error)
            return None
        state.prepared[(kid, alg)] = prepared
        return prepared


class JWKSFetchError(Exception):
    """The JWKS could not be fetched or read."""


def _load_jwks() -> dict[str, dict[str, Any]]:
    """The public JWKs by kid, from the configured source."""
    if settings.BETTER_AUTH_JWKS_URL:
        keys = _jwks_from_url(settings.BETTER_AUTH_JWKS_URL)
    else:
        keys = _jwks_from_table(settings.BETTER_AUTH_JWKS_TABLE)
    found: dict[str, dict[str, Any]] = {}
    for key in keys:
        if isinstance(key, dict) and isinstance(key.get("kid"), str):
            # Private parts are never needed; drop them if a JWKS has any.
            found[key["kid"]] = {
                name: value
                for name, value in key.items()
                if name not in ("d", "p", "q", "dp", "dq", "qi", "k")
            }
    return found


def _jwks_from_url(url: str) -> list[Any]:
    if not url.startswith(("https://", "http://")):
        raise JWKSFetchError("BETTER_AUTH_JWKS_URL must be an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        url, headers={"Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(  # noqa: S310 (scheme checked above)
            request, timeout=FETCH_TIMEOUT_SECONDS
        ) as response:
            body = response.read(MAX_JWKS_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise JWKSFetchError(f"{url}: {error}") from error
    if len(body) > MAX_JWKS_BYTES:
        raise JWKSFetchError(f"{url}: the JWKS is larger than {MAX_JWKS_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError as error:
        raise JWKSFetchError(f"{url}: not JSON ({error})") from error
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JWKSFetchError(f'{url}: no "keys" list')
    return document["keys"]


def _jwks_from_table(table: str) -> list[Any]:
    """Better Auth's `jwks` rows as JWKs: `publicKey` plus `kid` = `id`."""
    # Read-only; the table is Better Auth's. Its `alg` column is newer than
    # the table, so the algorithm comes from the key itself.
    query = "SELECT id, {} FROM {}".format(  # noqa: S608 (names quoted, no input)
        connection.ops.quote_name("publicKey"), connection.ops.quote_name(table)
    )
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(query)
            rows = cursor.fetchall()
    except DatabaseError as error:
        raise JWKSFetchError(f"table {table}: {error}") from error
    keys = []
    for kid, public_key in rows:
        try:
            key = json.loads(public_key)
        except (TypeError, ValueError):
            logger.warning("Unreadable publicKey for key %r in %s", kid, table)
            continue
        if isinstance(key, dict):
            keys.append({**key, "kid": kid})
    return keys


_keys = _KeyCache()


def jwks_cache_clear() -> None:
    """Forget the cached keys (tests; a changed configuration)."""
    _keys.clear()


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("BETTER_AUTH_JWKS_"):
        jwks_cache_clear()


def _since(moment: float | None, now: float) -> float:
    return float("inf") if moment is None else now - moment


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _failed(detail: str = "Invalid or expired token.") -> AuthenticationFailed:
    return AuthenticationFailed(detail)
