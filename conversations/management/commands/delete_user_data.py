import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.models import Conversation
from conversations.support import (
    user_data_counts,
    user_data_delete,
    user_resolve,
)

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Erase everything stored for one user (conversations, messages, tool "
        "calls, Idempotency-Keys), in one transaction. Better Auth's user and "
        "sessions are left alone. Needs --yes; --dry-run only prints what "
        "would be deleted. An email that several users share up to case is "
        "refused: give the id."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "user",
            help="Better Auth user id or email (any case). An id also works "
            "once Better Auth has deleted the user, while our tables carry it.",
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--dry-run",
            action="store_true",
            help="Print what would be deleted; delete nothing.",
        )
        mode.add_argument("--yes", action="store_true", help="Confirm: really delete.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            owner_id, user = user_resolve(options["user"])
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        label = owner_id if user is None else f"{owner_id} <{user.email}>"

        if not options["yes"]:
            counts = user_data_counts(owner_id=owner_id)
            self.stdout.write(f"Would delete for user {label}: {counts}.")
            ids = Conversation.objects.filter(owner_id=owner_id).order_by(
                "created_at", "id"
            )
            for conversation in ids.only("id", "last_sequence", "created_at"):
                self.stdout.write(
                    f"  conversation {conversation.id} "
                    f"({conversation.last_sequence} messages, "
                    f"created {conversation.created_at:%Y-%m-%d})"
                )
            if not options["dry_run"]:
                raise CommandError(
                    "Nothing deleted. Run again with --yes to delete "
                    "(--dry-run to only print this)."
                )
            return

        deleted = user_data_delete(owner_id=owner_id)
        logger.info("Erased the data of user %s: %s", owner_id, deleted)
        self.stdout.write(self.style.SUCCESS(f"Deleted for user {label}: {deleted}."))
