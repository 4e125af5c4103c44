"""SQLite only: drop the view and trigger of migration 0004.

The chat's writes on SQLite are the ORM's now (conversations.services);
only PostgreSQL keeps a hand-written write path (conversations.postgres).
Backwards recreates them from 0004, so code of that time works again.
Nothing happens on PostgreSQL.
"""

import importlib

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

DROP = [
    "DROP TRIGGER IF EXISTS chat_message_append",
    "DROP VIEW IF EXISTS chat_message_appends",
]


def drop(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "sqlite":
        for sql in DROP:
            schema_editor.execute(sql)


def recreate(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "sqlite":
        previous = importlib.import_module(
            "conversations.migrations.0004_sqlite_chat_append"
        )
        for sql in previous.CREATE:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("conversations", "0004_sqlite_chat_append")]

    operations = [migrations.RunPython(drop, recreate, elidable=False)]
