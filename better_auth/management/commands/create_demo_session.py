import secrets
import string
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from better_auth.models import BetterAuthSession, BetterAuthUser
from better_auth.tables import better_auth_tables_ensure

TOKEN_ALPHABET = string.ascii_letters + string.digits


class Command(BaseCommand):
    help = (
        "Local development only (DJANGO_DEBUG=1): create Better Auth's tables "
        "where absent, a demo user and a session, and print a curl command "
        "that chats as that user."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--user-id", default="demo-user", help="Better Auth user id."
        )
        parser.add_argument("--email", default="demo@example.com", help="User's email.")
        parser.add_argument("--name", default="Demo User", help="User's name.")
        parser.add_argument(
            "--days", type=int, default=7, help="Session lifetime in days (default 7)."
        )
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="Where the API is served, for the printed curl command.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "Refusing to write Better Auth's tables with DJANGO_DEBUG off: "
                "in production they belong to Better Auth."
            )
        if options["days"] < 1:
            raise CommandError("--days must be at least 1.")

        for table in better_auth_tables_ensure():
            self.stdout.write(f"Created Better Auth table {table!r}.")

        user, _ = BetterAuthUser.objects.get_or_create(
            id=options["user_id"],
            defaults={"email": options["email"], "name": options["name"]},
        )
        now = timezone.now()
        session = (
            BetterAuthSession.objects.filter(
                user=user, expires_at__gt=now + timedelta(days=1)
            )
            .order_by("-expires_at")
            .first()
        )
        if session is None:
            session = BetterAuthSession.objects.create(
                id=_random_id(),
                token=_random_id(),
                user=user,
                expires_at=now + timedelta(days=options["days"]),
                user_agent="create_demo_session",
            )

        url = f"{options['base_url'].rstrip('/')}/api/v1/users/{user.id}/chat"
        self.stdout.write(
            self.style.SUCCESS(f"Demo user {user.id} <{user.email}>; session token:")
        )
        self.stdout.write(session.token)
        self.stdout.write("Chat with the assistant:")
        self.stdout.write(
            f"curl -s -X POST {url} -H 'Authorization: Bearer {session.token}' "
            "-H 'Content-Type: application/json' -d '{\"message\": \"add buy milk\"}'"
        )


def _random_id() -> str:
    """32 random letters and digits, like Better Auth's own ids and tokens."""
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(32))
