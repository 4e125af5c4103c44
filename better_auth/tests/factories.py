"""Better Auth's users and sessions for tests, as Better Auth would write them."""

import datetime as dt
from urllib.parse import quote

from django.db import connection
from django.utils import timezone

import factory
from factory.django import DjangoModelFactory

from better_auth.authentication import sign_token
from better_auth.models import BetterAuthSession, BetterAuthUser


class BetterAuthUserFactory(DjangoModelFactory):
    class Meta:
        model = BetterAuthUser

    id = factory.Faker("pystr", min_chars=24, max_chars=24)
    name = factory.Faker("name")
    email = factory.LazyAttribute(lambda user: f"{user.id.lower()}@example.com")


class BetterAuthSessionFactory(DjangoModelFactory):
    class Meta:
        model = BetterAuthSession

    id = factory.Faker("pystr", min_chars=32, max_chars=32)
    token = factory.Faker("pystr", min_chars=32, max_chars=32)
    user = factory.SubFactory(BetterAuthUserFactory)
    expires_at = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(days=7))

    class Params:
        expired = factory.Trait(
            expires_at=factory.LazyFunction(
                lambda: timezone.now() - dt.timedelta(seconds=1)
            )
        )


def better_auth_date(moment: dt.datetime) -> str:
    """A date as Better Auth writes it: JavaScript's toISOString()
    (`2026-12-06T10:00:00.000Z`). Its SQLite adapter stores that text as is
    (@better-auth/core's adapter factory, supportsDates false); PostgreSQL
    parses it into timestamptz."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def expire_as_better_auth_writes_it(
    session: BetterAuthSession, expires_at: dt.datetime
) -> None:
    """Sets the session's `expiresAt` to Better Auth's text for the moment,
    not Django's (`2026-12-06 10:00:00.000000` on SQLite)."""
    table = connection.ops.quote_name(BetterAuthSession._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE {table} SET "expiresAt" = %s WHERE id = %s',  # noqa: S608
            [better_auth_date(expires_at), session.id],
        )


def signed_token(session: BetterAuthSession) -> str:
    """`token.signature`, as Better Auth's cookie and set-auth-token carry it."""
    return sign_token(session.token)


# Credentials as a client sends them: request headers for a session's token.

Headers = dict[str, str]
COOKIE = "better-auth.session_token"
SECURE_COOKIE = "__Secure-better-auth.session_token"


def bearer(value: str) -> Headers:
    return {"Authorization": f"Bearer {value}"}


def cookie(value: str, name: str = COOKIE) -> Headers:
    """A `Cookie` header as a browser sends it."""
    return {"Cookie": f"{name}={value}"}


def encoded(value: str) -> str:
    """URL-encoded as Better Auth writes its cookie (encodeURIComponent)."""
    return quote(value, safe="")


def bad_signature(session: BetterAuthSession) -> str:
    """The session's signed token with one character of its signature
    changed."""
    token, _, signature = signed_token(session).rpartition(".")
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    return f"{token}.{flipped}"
