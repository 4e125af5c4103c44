"""Titles for the conversations that existed before titles did: made from
each one's first message, as a new conversation's is.

Batches of BATCH conversations by keyset on id, each committed on its own
(the migration is not atomic), so that filling millions of rows never holds
the row locks of all of them, nor a transaction open, for the whole run. A
row that already has a title, or whose title the user set, is left alone:
the migration can be run again after an interruption.
"""

from django.db import migrations, transaction

BATCH = 500
TITLE_FROM_MESSAGE_CHARS = 80


def title_from_message(content):
    # A copy of conversations.models.conversation_title_from_message as it
    # was when this migration was written: migrations do not import code
    # that may change later.
    text = " ".join(content.split())
    if len(text) <= TITLE_FROM_MESSAGE_CHARS:
        return text
    return text[:TITLE_FROM_MESSAGE_CHARS].rstrip() + "…"


def titles_fill(apps, schema_editor, batch=BATCH):
    Conversation = apps.get_model("conversations", "Conversation")
    Message = apps.get_model("conversations", "Message")
    db = schema_editor.connection.alias
    untitled = Conversation.objects.using(db).filter(
        title="", title_set_by_user=False
    )
    after = None
    while True:
        page = untitled.order_by("id")
        if after is not None:
            page = page.filter(id__gt=after)
        ids = list(page.values_list("id", flat=True)[:batch])
        if not ids:
            return
        after = ids[-1]
        firsts = Message.objects.using(db).filter(
            conversation_id__in=ids, sequence=1
        )
        titled = [
            Conversation(id=conversation_id, title=title_from_message(content))
            for conversation_id, content in firsts.values_list(
                "conversation_id", "content"
            )
        ]
        # One UPDATE per batch, on `untitled`: a title the user set
        # meanwhile stays.
        with transaction.atomic(using=db):
            untitled.bulk_update(titled, ["title"])


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("conversations", "0007_conversation_title"),
    ]

    operations = [
        migrations.RunPython(titles_fill, migrations.RunPython.noop, elidable=True),
    ]
