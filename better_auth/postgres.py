"""PostgreSQL's fast path for authentication: the session lookup, hand-written.

Every API request runs it. Compiling the ORM's equivalent on each request
cost more CPU than the rest of authentication (docs/PERFORMANCE.md), so on
PostgreSQL (production) better_auth.authentication sends this statement,
built once from the models' tables and columns (Better Auth's table names
are settings); on any other database it uses the ORM. The app's only
hand-written SQL, as conversations.postgres is that app's.
"""

import functools
from datetime import datetime
from typing import Any, cast

from django.db import connection
from django.db.models import Field, Model

from better_auth.models import BetterAuthSession, BetterAuthUser

_SESSION_SQL = """
SELECT s.{session_id}, s.{user_id}, u.{email}, u.{name}
FROM {session} s INNER JOIN {user} u ON u.{id} = s.{user_id}
WHERE s.{token} = %(token)s AND s.{expires_at} > %(now)s
LIMIT 1
"""


def _column(model: type[Model], name: str) -> str:
    field = cast("Field[Any, Any]", model._meta.get_field(name))
    return connection.ops.quote_name(str(field.column))


@functools.cache
def session_sql() -> str:
    """What `BetterAuthSession.objects.filter(token=..., expires_at__gt=...)
    .values_list("id", "user_id", "user__email", "user__name")[:1]` sends."""
    return _SESSION_SQL.format(
        session=connection.ops.quote_name(BetterAuthSession._meta.db_table),
        user=connection.ops.quote_name(BetterAuthUser._meta.db_table),
        session_id=_column(BetterAuthSession, "id"),
        user_id=_column(BetterAuthSession, "user"),
        token=_column(BetterAuthSession, "token"),
        expires_at=_column(BetterAuthSession, "expires_at"),
        id=_column(BetterAuthUser, "id"),
        email=_column(BetterAuthUser, "email"),
        name=_column(BetterAuthUser, "name"),
    )


def session_by_token(*, token: str, now: datetime) -> tuple[Any, ...] | None:
    """(session id, user id, email, name) of the session with `token`
    expiring after `now`, or None."""
    with connection.cursor() as cursor:
        cursor.execute(session_sql(), {"token": token, "now": now})
        row: tuple[Any, ...] | None = cursor.fetchone()
    return row
