from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ConversationsConfig(AppConfig):
    name = "conversations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # After the permissions are created (auth's own post_migrate handler
        # runs first), and again after every flush, as in the test suite.
        post_migrate.connect(
            _support_group_sync, sender=self, dispatch_uid="conversations.support"
        )


def _support_group_sync(*, using: str, **kwargs: Any) -> None:
    from conversations.support import support_group_sync

    support_group_sync(using=using)
