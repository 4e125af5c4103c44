import json
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.support import user_data_export, user_resolve


class Command(BaseCommand):
    help = (
        "Export everything stored for one user (conversations, messages, tool "
        "calls, Idempotency-Keys) as JSON, to stdout or a new file. An email "
        "that several users share up to case is refused: give the id."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "user",
            help="Better Auth user id or email (any case). An id also works "
            "once Better Auth has deleted the user, while our tables carry it.",
        )
        parser.add_argument(
            "--output",
            "-o",
            metavar="PATH",
            help="Write to this new file (mode 0600; refused if it exists) "
            "instead of stdout.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            owner_id, user = user_resolve(options["user"])
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        data = user_data_export(owner_id=owner_id, user=user)
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        path = options["output"]
        if path is None:
            self.stdout.write(text, ending="")
            return
        try:
            # Personal data: readable by the owner of the file only.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise CommandError(f"{path} already exists; choose a new file.") from None
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc.strerror}.") from None
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        self.stderr.write(
            f"Exported {len(data['conversations'])} conversation(s) of "
            f"{owner_id} to {path}."
        )
