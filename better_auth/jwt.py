"""Stateless authentication with Better Auth's JWT plugin.

`Authorization: Bearer <jwt>`, signed by the frontend with a key of its
JWKS. The public keys come from the frontend's JWKS endpoint
(`BETTER_AUTH_JWKS_URL`) or from Better Auth's `jwks` table
(`BETTER_AUTH_JWKS_TABLE`), and are cached in process memory for
`BETTER_AUTH_JWKS_CACHE_SECONDS`. A token naming an unknown `kid` makes the
keys be fetched again, at most once per `REFETCH_MIN_SECONDS`. With a warm
cache a JWT costs no database query and no network call.

Keys end: a table key past its `expiresAt` plus the plugin's grace period
(`BETTER_AUTH_JWKS_GRACE_SECONDS`) verifies nothing, and while the keys
cannot be fetched again the cached ones serve at most
`BETTER_AUTH_JWKS_MAX_STALE_SECONDS` past their cache time. Any malformed
token is a 401, never a 500.

Off unless one of the two sources is set. A bearer value that is not a JWT
(Better Auth's session tokens, raw or signed) is left to
`BetterAuthSessionAuthentication`.
"""

import base64
import contextlib
import datetime as dt
import http.client
import json
import logging
import re
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.db import DatabaseError, connection, transaction
from django.dispatch import receiver
from django.utils.dateparse import parse_datetime

import jwt
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import APIException, AuthenticationFailed
from rest_framework.request import Request

from better_auth.authentication import ApiUser, Credential
from better_auth.throttling import failures_limited

logger = logging.getLogger(__name__)

# The whole JWKS fetch (connect, request, reading the answer) ends within
# this many seconds: a slow or trickling endpoint cannot hold the threads
# that wait for the keys.
FETCH_DEADLINE_SECONDS = 3.0
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

# The cache's clock, and the wall clock that key expiry is read against;
# tests move them instead of waiting.
_monotonic = time.monotonic
_time = time.time


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
        except Exception as error:
            # The decoding boundary: whatever else a token makes the decoder
            # raise (PyJWT turns the errors it knows of, deeply nested JSON
            # included, into PyJWTError), the answer is 401, not 500.
            logger.info("JWT refused: unreadable (%s)", type(error).__name__)
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
    except (ValueError, RecursionError):
        # Not base64, not UTF-8, not JSON, or JSON nested deeper than the
        # parser's recursion limit.
        return None
    if not isinstance(header, dict) or "alg" not in header:
        return None
    return header


@dataclass(frozen=True)
class _PublicKey:
    jwk: dict[str, Any]
    # _time() from which the key verifies nothing (a table key's expiresAt
    # plus the grace period); None: no end.
    usable_until: float | None = None


@dataclass
class _KeySetState:
    """The keys as last fetched. Replaced whole on each fetch; only the
    memo of prepared keys grows in place."""

    jwks: dict[str, _PublicKey] = field(default_factory=dict)
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
        now = _monotonic()
        # Stale keys serve while fetches fail, but only so long: a key the
        # frontend withdrew must not outlive an outage of its endpoint.
        max_age = ttl + settings.BETTER_AUTH_JWKS_MAX_STALE_SECONDS
        if _since(state.fetched_at, now) >= max_age:
            # No log line per request: each failed fetch logs a warning.
            waited = _since(state.attempted_at, now)
            raise JWKSUnavailable(wait=RETRY_AFTER_FAILURE_SECONDS - waited)
        public = state.jwks.get(kid)
        if public is None:
            logger.info("JWT refused: unknown kid %.80r", kid)
            return None
        if public.usable_until is not None and _time() >= public.usable_until:
            logger.info("JWT refused: key %.80r is past expiresAt + grace", kid)
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
                # The stale keys stay, usable for a bounded time (key()).
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
        jwk = state.jwks[kid].jwk
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


def _load_jwks() -> dict[str, _PublicKey]:
    """The public JWKs by kid, from the configured source."""
    entries: list[tuple[Any, float | None]]
    if settings.BETTER_AUTH_JWKS_URL:
        # The endpoint itself leaves out the keys past their grace period.
        entries = [(key, None) for key in _jwks_from_url(settings.BETTER_AUTH_JWKS_URL)]
    else:
        entries = _jwks_from_table(settings.BETTER_AUTH_JWKS_TABLE)
    found: dict[str, _PublicKey] = {}
    for key, usable_until in entries:
        if isinstance(key, dict) and isinstance(key.get("kid"), str):
            # Private parts are never needed; drop them if a JWKS has any.
            jwk = {
                name: value
                for name, value in key.items()
                if name not in ("d", "p", "q", "dp", "dq", "qi", "k")
            }
            found[key["kid"]] = _PublicKey(jwk, usable_until)
    return found


def _jwks_from_url(url: str) -> list[Any]:
    body = _http_get(url)
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise JWKSFetchError(f"{url}: not JSON ({error})") from error
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JWKSFetchError(f'{url}: no "keys" list')
    return document["keys"]


def _http_get(url: str) -> bytes:
    """The body of a 200 answer to GET `url`, within FETCH_DEADLINE_SECONDS
    and MAX_JWKS_BYTES.

    http.client rather than urllib: no redirect is followed (the keys come
    from the configured URL or from nowhere). A watchdog shuts the socket
    down at the deadline, so a server that trickles its answer (headers
    included) cannot hold the fetch past it; connecting is bounded by the
    socket timeout, name resolution by the system's resolver only.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise JWKSFetchError("BETTER_AUTH_JWKS_URL must be an http(s) URL")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    status, body = 0, b""
    sockets: list[socket.socket] = []
    cut = threading.Event()

    def cut_off() -> None:
        cut.set()
        for sock in sockets:
            # The plain socket's shutdown, also under TLS: a blocked read
            # in the fetching thread then ends at once.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    watchdog = threading.Timer(FETCH_DEADLINE_SECONDS, cut_off)
    watchdog.daemon = True
    conn: http.client.HTTPConnection
    try:
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                parts.hostname,
                parts.port,
                timeout=FETCH_DEADLINE_SECONDS,
                context=ssl.create_default_context(),
            )
        else:
            conn = http.client.HTTPConnection(
                parts.hostname, parts.port, timeout=FETCH_DEADLINE_SECONDS
            )
        watchdog.start()
        try:
            conn.connect()
            sockets.append(conn.sock)
            if not cut.is_set():
                conn.request("GET", path, headers={"Accept": "application/json"})
                response = conn.getresponse()
                status = response.status
                body = response.read(MAX_JWKS_BYTES + 1) if status == 200 else b""
        finally:
            watchdog.cancel()
            conn.close()
    except (OSError, http.client.HTTPException, ValueError) as error:
        # Timeouts are OSErrors; a malformed port is a ValueError.
        if not cut.is_set():
            raise JWKSFetchError(f"{url}: {error}") from error
    if cut.is_set():
        raise JWKSFetchError(f"{url}: no answer within {FETCH_DEADLINE_SECONDS} s")
    if status != 200:
        # Redirects included: they are not followed.
        raise JWKSFetchError(f"{url}: HTTP {status}")
    if len(body) > MAX_JWKS_BYTES:
        raise JWKSFetchError(f"{url}: the JWKS is larger than {MAX_JWKS_BYTES} bytes")
    return body


def _jwks_from_table(table: str) -> list[tuple[Any, float | None]]:
    """Better Auth's `jwks` rows as (JWK, usable until): `publicKey` plus
    `kid` = `id`, usable until `expiresAt` + BETTER_AUTH_JWKS_GRACE_SECONDS.

    The JWT plugin's own JWKS endpoint publishes a row while `expiresAt` is
    null or `expiresAt` + its `jwks.gracePeriod` is in the future; this is
    the same rule.
    """
    # Read-only; the table is Better Auth's. Its `alg` column is newer than
    # the table, so the algorithm comes from the key itself. `expiresAt` is
    # read as text: on SQLite Better Auth declares it `date` and stores ISO
    # 8601 text, which the driver's `date` converter would turn into None.
    query = "SELECT id, {}, CAST({} AS TEXT) FROM {}".format(  # noqa: S608 (names quoted, no input)
        connection.ops.quote_name("publicKey"),
        connection.ops.quote_name("expiresAt"),
        connection.ops.quote_name(table),
    )
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(query)
            rows = cursor.fetchall()
    except DatabaseError as error:
        raise JWKSFetchError(f"table {table}: {error}") from error
    grace = settings.BETTER_AUTH_JWKS_GRACE_SECONDS
    keys: list[tuple[Any, float | None]] = []
    for kid, public_key, expires_at in rows:
        try:
            key = json.loads(public_key)
        except (TypeError, ValueError, RecursionError):
            logger.warning("Unreadable publicKey for key %r in %s", kid, table)
            continue
        if expires_at is None:
            usable_until = None
        else:
            expires = _parse_timestamp(expires_at)
            if expires is None:
                # Fail closed: a key whose end cannot be read is not used.
                logger.warning("Unreadable expiresAt for key %r in %s", kid, table)
                continue
            usable_until = expires + grace
        if isinstance(key, dict):
            keys.append(({**key, "kid": kid}, usable_until))
    return keys


def _parse_timestamp(value: str) -> float | None:
    """Seconds since the epoch of a timestamp as text: ISO 8601 with `T`
    and `Z` as Better Auth writes it on SQLite, or the database's own
    form; without an offset, UTC. None when unreadable."""
    try:
        moment = parse_datetime(value.strip())
    except ValueError:
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


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
