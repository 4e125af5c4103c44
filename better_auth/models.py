"""Better Auth's `user` and `session` tables, read by this project.

Better Auth creates and migrates them; this project only reads them
(managed = False: no migration touches them). Table names come from
settings because Better Auth can be configured to use others.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class BetterAuthUser(models.Model):
    id = models.TextField(primary_key=True)
    name = models.TextField()
    email = models.TextField(unique=True)
    email_verified = models.BooleanField(db_column="emailVerified", default=False)
    image = models.TextField(null=True, blank=True)  # noqa: DJ001 (Better Auth's schema)
    created_at = models.DateTimeField(db_column="createdAt", default=timezone.now)
    updated_at = models.DateTimeField(db_column="updatedAt", default=timezone.now)

    class Meta:
        managed = False
        db_table = settings.BETTER_AUTH_USER_TABLE
        verbose_name = "Better Auth user"

    def __str__(self) -> str:
        return self.email


class BetterAuthSession(models.Model):
    id = models.TextField(primary_key=True)
    token = models.TextField(unique=True)
    user = models.ForeignKey(
        BetterAuthUser,
        db_column="userId",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="sessions",
    )
    expires_at = models.DateTimeField(db_column="expiresAt")
    ip_address = models.TextField(  # noqa: DJ001 (Better Auth's schema)
        db_column="ipAddress", null=True, blank=True
    )
    user_agent = models.TextField(  # noqa: DJ001 (Better Auth's schema)
        db_column="userAgent", null=True, blank=True
    )
    created_at = models.DateTimeField(db_column="createdAt", default=timezone.now)
    updated_at = models.DateTimeField(db_column="updatedAt", default=timezone.now)

    class Meta:
        managed = False
        db_table = settings.BETTER_AUTH_SESSION_TABLE
        verbose_name = "Better Auth session"

    def __str__(self) -> str:
        return f"session {self.id} of {self.user_id}"
