"""Better Auth's tables for local work and tests, where Better Auth is absent.

In production Better Auth creates and migrates its own tables and this
project never writes them; nothing here runs there.
"""

from django.db import connections

from better_auth.models import BetterAuthSession, BetterAuthUser


def better_auth_tables_ensure(*, using: str = "default") -> list[str]:
    """Create Better Auth's user and session tables where they are absent.

    Returns the names of the tables created; existing tables are left as
    they are.
    """
    connection = connections[using]
    existing = set(connection.introspection.table_names())
    missing = [
        model
        for model in (BetterAuthUser, BetterAuthSession)
        if model._meta.db_table not in existing
    ]
    if missing:
        # Only opened when needed: SQLite refuses a schema editor inside a
        # transaction.
        with connection.schema_editor() as editor:
            for model in missing:
                editor.create_model(model)
    return [model._meta.db_table for model in missing]
