"""The real Better Auth for interop tests: installed, started, stopped.

Needs Node.js and npm: where they are absent the tests are skipped with a
message saying so, except in CI (CHATAPI_REQUIRE_NODE set), where that fails. Needs
PostgreSQL too (the tests are marked `postgresql`). The pinned packages
of interop/better-auth/ are installed with `npm ci` when node_modules is
missing or older than the lockfile.
"""

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

from django.conf import settings
from django.db import connection

import pytest

from better_auth.jwt import jwks_cache_clear
from better_auth.tests.interop.node import (
    PASSWORD,
    BetterAuthClient,
    BetterAuthServer,
    NodeMissing,
    SignedIn,
    database_url,
    node_and_npm,
    npm_ci_when_stale,
)

INTEROP_DIR = Path(settings.BASE_DIR) / "interop" / "better-auth"
OTHER_SECRET = "another-frontends-better-auth-secret-for-tests"
# The short-lived JWTs of the `short_jwt` instance.
SHORT_JWT_SECONDS = 4


@pytest.fixture(scope="session")
def better_auth_server(
    django_db_setup: None, unavailable: Callable[..., NoReturn]
) -> Iterator[BetterAuthServer]:
    """Better Auth instances on the test database, for the whole run.

    - main: our BETTER_AUTH_SECRET, plain cookies, the JWT plugin (defaults);
    - secure: the same secret, `__Secure-` cookies;
    - other: another secret, and a JWT plugin with its own key table;
    - es256_jwt, rs256_jwt: our secret, the JWT plugin with ES256 or RS256
      keys, each in a table of its own;
    - short_jwt: our secret, JWTs valid for SHORT_JWT_SECONDS.
    """
    try:
        node, npm = node_and_npm()
    except NodeMissing as missing:
        unavailable(str(missing), required_by="CHATAPI_REQUIRE_NODE")
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL)")
    npm_ci_when_stale(INTEROP_DIR, npm)
    secret = settings.BETTER_AUTH_SECRET
    config = {
        "instances": [
            {"name": "main", "secret": secret, "jwt": {}},
            {"name": "secure", "secret": secret, "secureCookies": True},
            {
                "name": "other",
                "secret": OTHER_SECRET,
                "jwt": {},
                "jwksModel": "jwks_other",
            },
            {
                "name": "es256_jwt",
                "secret": secret,
                "jwt": {},
                "jwks": {"keyPairConfig": {"alg": "ES256"}},
                "jwksModel": "jwks_es256",
            },
            {
                "name": "rs256_jwt",
                "secret": secret,
                "jwt": {},
                "jwks": {"keyPairConfig": {"alg": "RS256", "modulusLength": 2048}},
                "jwksModel": "jwks_rs256",
            },
            {
                "name": "short_jwt",
                "secret": secret,
                "jwt": {"expirationTime": f"{SHORT_JWT_SECONDS}s"},
            },
        ]
    }
    server = BetterAuthServer(
        node=node,
        directory=INTEROP_DIR,
        database_url=database_url(connection.settings_dict),
        config=config,
    )
    yield server
    server.stop()


@pytest.fixture
def better_auth(better_auth_server: BetterAuthServer) -> BetterAuthClient:
    """The frontend's Better Auth: our secret, plain cookie names."""
    return better_auth_server.client("main")


@pytest.fixture
def secure_better_auth(better_auth_server: BetterAuthServer) -> BetterAuthClient:
    """The frontend's Better Auth on HTTPS: `__Secure-` cookie names."""
    return better_auth_server.client("secure")


@pytest.fixture
def other_better_auth(better_auth_server: BetterAuthServer) -> BetterAuthClient:
    """A Better Auth on the same database with another secret."""
    return better_auth_server.client("other")


@pytest.fixture
def short_jwt_better_auth(better_auth_server: BetterAuthServer) -> BetterAuthClient:
    return better_auth_server.client("short_jwt")


@pytest.fixture
def email() -> str:
    return f"user-{uuid.uuid4().hex}@example.com"


@pytest.fixture
def signed_in(better_auth: BetterAuthClient, email: str) -> SignedIn:
    """A user signed up (and so signed in) through the real Better Auth."""
    return better_auth.sign_up(email=email, password=PASSWORD, name="Ann Interop")


@pytest.fixture(autouse=True)
def _fresh_jwks_cache() -> Iterator[None]:
    jwks_cache_clear()
    yield
    jwks_cache_clear()
