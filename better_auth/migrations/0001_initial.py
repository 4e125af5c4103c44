# BetterAuthUser and BetterAuthSession, moved here from conversations (whose
# migration 0006 forgets them). Unmanaged: no DDL runs, here or later; the
# tables are Better Auth's.

import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
    ]

    operations = [
        migrations.CreateModel(
            name='BetterAuthSession',
            fields=[
                ('id', models.TextField(primary_key=True, serialize=False)),
                ('token', models.TextField(unique=True)),
                ('expires_at', models.DateTimeField(db_column='expiresAt')),
                ('ip_address', models.TextField(blank=True, db_column='ipAddress', null=True)),
                ('user_agent', models.TextField(blank=True, db_column='userAgent', null=True)),
                ('created_at', models.DateTimeField(db_column='createdAt', default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(db_column='updatedAt', default=django.utils.timezone.now)),
            ],
            options={
                'verbose_name': 'Better Auth session',
                # Better Auth's table: its name follows settings, no DDL runs.
                'db_table': settings.BETTER_AUTH_SESSION_TABLE,
                'managed': False,
            },
        ),
        migrations.CreateModel(
            name='BetterAuthUser',
            fields=[
                ('id', models.TextField(primary_key=True, serialize=False)),
                ('name', models.TextField()),
                ('email', models.TextField(unique=True)),
                ('email_verified', models.BooleanField(db_column='emailVerified', default=False)),
                ('image', models.TextField(blank=True, null=True)),
                ('created_at', models.DateTimeField(db_column='createdAt', default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(db_column='updatedAt', default=django.utils.timezone.now)),
            ],
            options={
                'verbose_name': 'Better Auth user',
                # Better Auth's table: its name follows settings, no DDL runs.
                'db_table': settings.BETTER_AUTH_USER_TABLE,
                'managed': False,
            },
        ),
    ]
