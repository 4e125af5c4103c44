from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.support import SUPPORT_GROUP_NAME, support_group_sync


class Command(BaseCommand):
    help = (
        f'Create or reset the "{SUPPORT_GROUP_NAME}" group (view-only on '
        "conversations, messages and tool calls; `migrate` does this too), "
        "and optionally make existing Django users support staff."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--add",
            metavar="USERNAME",
            action="append",
            default=[],
            help="Django username to add to the group and mark as staff (repeatable).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        usernames = options["add"]
        users = list(user_model._default_manager.filter(username__in=usernames))
        missing = sorted(set(usernames) - {user.get_username() for user in users})
        if missing:
            raise CommandError(f"No Django user named {', '.join(missing)}.")

        group = support_group_sync()
        self.stdout.write(
            f'Group "{group.name}": '
            + ", ".join(sorted(p.codename for p in group.permissions.all()))
        )
        for user in users:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
            user.groups.add(group)
            self.stdout.write(f"{user.get_username()} is support staff.")
