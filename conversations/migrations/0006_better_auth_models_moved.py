"""BetterAuthUser and BetterAuthSession moved to the better_auth app.

State only: the tables are Better Auth's and stay as they are. Their
content types (and so any permissions granted on them) follow the models to
the new app label.
"""

from django.db import migrations

MOVED = ("betterauthuser", "betterauthsession")


def content_types_relabel(apps, schema_editor, *, old, new):
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    for model in MOVED:
        if ContentType.objects.using(db).filter(app_label=new, model=model).exists():
            continue  # created meanwhile; the old one is then just stale
        ContentType.objects.using(db).filter(app_label=old, model=model).update(
            app_label=new
        )
    ContentType.objects.clear_cache()


def forwards(apps, schema_editor):
    content_types_relabel(apps, schema_editor, old="conversations", new="better_auth")


def backwards(apps, schema_editor):
    content_types_relabel(apps, schema_editor, old="better_auth", new="conversations")


class Migration(migrations.Migration):

    dependencies = [
        ("better_auth", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("conversations", "0004_sqlite_chat_append"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="BetterAuthSession"),
                migrations.DeleteModel(name="BetterAuthUser"),
            ],
        ),
        migrations.RunPython(forwards, backwards, elidable=True),
    ]
