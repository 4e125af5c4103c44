"""SQLite only: append a chat message in one statement.

PostgreSQL does this with data-modifying CTEs (conversations.services);
SQLite has none, so an INSTEAD OF trigger on a view does the same work in a
single INSERT: (create the conversation,) check it exists and belongs to the
owner, take the next sequence number and bump `updated_at`, insert the
message and its tool calls. One statement is atomic in SQLite and takes the
write lock before it reads, so no BEGIN/COMMIT is needed and concurrent
writers queue. Nothing happens on PostgreSQL.
"""

from django.db import migrations

NOT_FOUND = "chat_conversation_not_found"

CREATE = [
    """
    CREATE VIEW chat_message_appends AS SELECT
        NULL AS id, NULL AS conversation_id, NULL AS owner_id,
        NULL AS new_conversation, NULL AS role, NULL AS content,
        NULL AS reply_to_id, NULL AS created_at, NULL AS tool_calls
    WHERE 0
    """,
    f"""
    CREATE TRIGGER chat_message_append INSTEAD OF INSERT ON chat_message_appends
    BEGIN
        INSERT INTO conversations (id, owner_id, last_sequence, created_at, updated_at)
        SELECT NEW.conversation_id, NEW.owner_id, 0, NEW.created_at, NEW.created_at
        WHERE NEW.new_conversation;
        SELECT RAISE(ABORT, '{NOT_FOUND}') WHERE NOT EXISTS (
            SELECT 1 FROM conversations
            WHERE id = NEW.conversation_id
              AND (NEW.owner_id IS NULL OR owner_id = NEW.owner_id)
        );
        UPDATE conversations
        SET last_sequence = last_sequence + 1, updated_at = NEW.created_at
        WHERE id = NEW.conversation_id;
        INSERT INTO messages
            (id, conversation_id, sequence, role, content, reply_to_id, created_at)
        SELECT NEW.id, id, last_sequence, NEW.role, NEW.content,
               NEW.reply_to_id, NEW.created_at
        FROM conversations WHERE id = NEW.conversation_id;
        INSERT INTO tool_calls
            (id, message_id, position, tool_name, parameters, result, status,
             created_at)
        SELECT json_extract(value, '$[0]'), NEW.id, key,
               json_extract(value, '$[1]'), json_extract(value, '$[2]'),
               json_extract(value, '$[3]'), json_extract(value, '$[4]'),
               NEW.created_at
        FROM json_each(NEW.tool_calls);
    END
    """,
]
DROP = [
    "DROP TRIGGER IF EXISTS chat_message_append",
    "DROP VIEW IF EXISTS chat_message_appends",
]


def _run(statements: list[str]):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "sqlite":
            for sql in statements:
                schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("conversations", "0003_idempotency_keys")]

    operations = [migrations.RunPython(_run(CREATE), _run(DROP), elidable=False)]
