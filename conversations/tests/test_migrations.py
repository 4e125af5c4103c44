import importlib
import re
from io import StringIO
from types import SimpleNamespace

from django.apps import apps as django_apps
from django.core.management import call_command
from django.db import connection

import pytest

from better_auth.models import BetterAuthSession, BetterAuthUser
from better_auth.tests.factories import BetterAuthSessionFactory, BetterAuthUserFactory
from conversations.models import Conversation, conversation_title_from_message
from conversations.tests.factories import ConversationFactory, MessageFactory

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


@pytest.mark.django_db
def test_no_trigger_or_view_remains_after_migrate() -> None:
    # The chat's writes are the ORM's everywhere but PostgreSQL's fast path.
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'view')"
            )
        else:
            cursor.execute(
                "SELECT 'trigger', tgname FROM pg_trigger WHERE NOT tgisinternal"
                " UNION ALL SELECT 'view', viewname FROM pg_views"
                " WHERE schemaname = current_schema()"
            )
        found = cursor.fetchall()

    assert found == []


@pytest.mark.django_db(transaction=True)
def test_migration_0005_backwards_and_forwards() -> None:
    def objects() -> set[tuple[str, str]]:
        with connection.cursor() as cursor:
            if connection.vendor != "sqlite":
                return set()
            cursor.execute(
                "SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'view')"
            )
            return set(cursor.fetchall())

    try:
        call_command("migrate", "conversations", "0004", verbosity=0)
        at_0004 = objects()
    finally:
        call_command("migrate", "conversations", verbosity=0)

    if connection.vendor == "sqlite":
        assert at_0004 == {
            ("view", "chat_message_appends"),
            ("trigger", "chat_message_append"),
        }
    else:
        assert at_0004 == set()
    assert objects() == set()


# 0008: titles for the conversations that existed before titles did.

TITLES_FILL = importlib.import_module(
    "conversations.migrations.0008_conversation_title_fill"
)


def untitled_conversation(first_message: str | None) -> Conversation:
    conversation = ConversationFactory.create(title="")
    if first_message is not None:
        MessageFactory.create(conversation=conversation, content=first_message)
        MessageFactory.create(conversation=conversation, content="a later message")
    return conversation


@pytest.mark.django_db(transaction=True)
def test_migration_0008_titles_existing_conversations_from_their_first_message() -> (
    None
):
    short = untitled_conversation("  add   buy\nmilk ")
    long = untitled_conversation("word " * 30)
    renamed = untitled_conversation("first message")
    Conversation.objects.filter(pk=renamed.pk).update(
        title="Mine", title_set_by_user=True
    )
    try:
        call_command("migrate", "conversations", "0007", verbosity=0)
        Conversation.objects.filter(pk__in=[short.pk, long.pk]).update(title="")
        call_command("migrate", "conversations", verbosity=0)
    finally:
        call_command("migrate", verbosity=0)

    titles = dict(Conversation.objects.values_list("pk", "title"))
    assert titles[short.pk] == "add buy milk"
    assert titles[long.pk] == conversation_title_from_message("word " * 30)
    assert titles[long.pk].endswith("…")
    assert titles[renamed.pk] == "Mine"


@pytest.mark.django_db
def test_migration_0008_fills_in_batches_and_leaves_titled_rows_alone() -> None:
    untitled = [untitled_conversation(f"message {n}") for n in range(7)]
    empty = untitled_conversation(None)
    titled = untitled_conversation("first")
    Conversation.objects.filter(pk=titled.pk).update(title="Kept")
    set_by_user = untitled_conversation("first")
    Conversation.objects.filter(pk=set_by_user.pk).update(title_set_by_user=True)

    TITLES_FILL.titles_fill(
        django_apps, SimpleNamespace(connection=connection), batch=2
    )

    titles = dict(Conversation.objects.values_list("pk", "title"))
    assert [titles[c.pk] for c in untitled] == [f"message {n}" for n in range(7)]
    assert titles[empty.pk] == ""
    assert titles[titled.pk] == "Kept"
    assert titles[set_by_user.pk] == ""
