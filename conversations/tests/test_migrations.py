import re
from io import StringIO

from django.core.management import call_command
from django.db import connection

import pytest

from better_auth.models import BetterAuthSession, BetterAuthUser
from better_auth.tests.factories import BetterAuthSessionFactory, BetterAuthUserFactory
from conversations.models import Conversation

OWN_TABLES = {"conversations", "messages", "tool_calls"}
BETTER_AUTH_TABLES = {"user", "session"}
DDL_ON_TABLE = re.compile(
    r"\b(CREATE TABLE|ALTER TABLE|DROP TABLE)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?"
    # SQLite rebuilds a table through a "new__<table>" copy.
    r"[\"`]?(?:new__)?(?P<table>\w+)[\"`]?",
    re.IGNORECASE,
)


# sqlmigrate opens a schema editor, which SQLite refuses inside the
# transaction of a plain django_db test.


def sql_of_migration(name: str) -> str:
    out = StringIO()
    call_command("sqlmigrate", "conversations", name, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_migration_0001_creates_own_tables() -> None:
    sql = sql_of_migration("0001")

    created = {
        m["table"] for m in DDL_ON_TABLE.finditer(sql) if m[1].upper() == "CREATE TABLE"
    }
    assert created == OWN_TABLES


@pytest.mark.django_db(transaction=True)
def test_migration_0001_leaves_better_auth_tables_alone() -> None:
    sql = sql_of_migration("0001")

    touched = {m["table"] for m in DDL_ON_TABLE.finditer(sql)}
    assert touched
    assert not touched & BETTER_AUTH_TABLES
    assert not re.search(r"""(ON|REFERENCES)\s+["`]?(user|session)["`]?\b""", sql)


@pytest.mark.django_db(transaction=True)
def test_migration_0001_backwards_leaves_better_auth_tables_alone() -> None:
    out = StringIO()
    call_command("sqlmigrate", "conversations", "0001", "--backwards", stdout=out)

    dropped = {m["table"] for m in DDL_ON_TABLE.finditer(out.getvalue())}
    assert dropped == OWN_TABLES


@pytest.mark.django_db
def test_makemigrations_check_finds_no_changes() -> None:
    out = StringIO()

    call_command(
        "makemigrations", "--check", "--dry-run", stdout=out, stderr=StringIO()
    )

    assert "No changes detected" in out.getvalue()


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_migrate_zero_and_back_keeps_better_auth_tables() -> None:
    session = BetterAuthSessionFactory.create(user=BetterAuthUserFactory.create())
    try:
        call_command("migrate", "conversations", "zero", verbosity=0)
        tables_at_zero = set(connection.introspection.table_names())
        call_command("migrate", verbosity=0)
        tables_after = set(connection.introspection.table_names())

        assert BETTER_AUTH_TABLES <= tables_at_zero
        assert not OWN_TABLES & tables_at_zero
        assert OWN_TABLES | BETTER_AUTH_TABLES <= tables_after
        assert BetterAuthUser.objects.filter(pk=session.user_id).exists()
        assert BetterAuthSession.objects.get(pk=session.pk).token == session.token
        assert not Conversation.objects.exists()
    finally:
        call_command("migrate", verbosity=0)
        BetterAuthSession.objects.filter(pk=session.pk).delete()
        BetterAuthUser.objects.filter(pk=session.user_id).delete()
