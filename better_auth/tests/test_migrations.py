"""The models' move from conversations: state only, content types follow."""

import re
from io import StringIO

from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

import pytest

MOVE = [("better_auth", "0001"), ("conversations", "0006")]
DDL = re.compile(r"^\s*(CREATE|ALTER|DROP|INSERT|UPDATE|DELETE)\b", re.I | re.M)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("app", "migration"), MOVE)
def test_the_move_runs_no_ddl(app: str, migration: str) -> None:
    out = StringIO()
    call_command("sqlmigrate", app, migration, stdout=out)

    assert out.getvalue().strip()
    assert not DDL.search(out.getvalue())


@pytest.mark.django_db(transaction=True)
def test_the_move_keeps_the_content_types_and_their_permissions() -> None:
    view_user = Permission.objects.get(
        content_type__app_label="better_auth", codename="view_betterauthuser"
    )
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([("conversations", "0004_sqlite_chat_append")])
        before = ContentType.objects.get(pk=view_user.content_type_id)
    finally:
        # Back to the latest migrations whatever happened.
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    after = ContentType.objects.get(pk=view_user.content_type_id)

    assert (before.app_label, before.model) == ("conversations", "betterauthuser")
    assert (after.app_label, after.model) == ("better_auth", "betterauthuser")
    assert Permission.objects.get(pk=view_user.pk).content_type_id == after.pk
