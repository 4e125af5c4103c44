"""Prepare the benchmark database: create it, migrate it, fill it.

`python -m bench.seed [--database-url URL]` creates the database when it is
missing, runs `manage.py migrate`, creates Better Auth's tables the way the
tests do (`better_auth_tables_ensure`) and loads bench/seed.sql, which
replaces every row of the chat and Better Auth tables with the benchmark
data. Never point it at a database whose rows matter.

The ids below are the ones seed.sql writes (md5 of a key, as a UUID).
"""

import argparse
import datetime as dt
import hashlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
SEED_SQL = Path(__file__).with_name("seed.sql")
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench"

MESSAGE_SIZES = (20, 1000, 100_000)
ROTATING_CONVERSATIONS = 16
MANY_CONVERSATIONS = 10_000
# bench-many's conversation k (1 to MANY_CONVERSATIONS) was updated k minutes
# before this; k = 1 is the latest.
MANY_UPDATED_FROM = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LIST_PAGE_SIZE = 20  # the list's default
TOOLS_CONVERSATION = "bench:tools:100"


def conversation_id(key: str) -> uuid.UUID:
    """The id seed.sql gives the conversation named `key` (md5(key)::uuid)."""
    return uuid.UUID(hashlib.md5(key.encode()).hexdigest())  # noqa: S324 (an id)


def token(user: str) -> str:
    return f"bench-token-{user}"


def user_id(user: str) -> str:
    return f"bench-{user}"


def messages_conversation(size: int) -> uuid.UUID:
    return conversation_id(f"bench:messages:{size}")


def tools_conversation() -> uuid.UUID:
    """bench-reader's conversation of 100 messages with tool calls."""
    return conversation_id(TOOLS_CONVERSATION)


def list_last_page_after() -> tuple[dt.datetime, uuid.UUID]:
    """(updated_at, id) of the conversation just before the last page of
    bench-many's list: where that page's cursor points."""
    k = MANY_CONVERSATIONS - LIST_PAGE_SIZE
    return (
        MANY_UPDATED_FROM - dt.timedelta(minutes=k),
        conversation_id(f"bench:many:{k}"),
    )


def post_conversation(number: int) -> uuid.UUID:
    """#0 takes the contended load, #1-#16 the rotating one."""
    return conversation_id(f"bench:post:{number}")


def database_name(database_url: str) -> str:
    return urlsplit(database_url).path.lstrip("/")


def database_ensure(database_url: str) -> bool:
    """Create the database when it is missing; True when it was created."""
    name = database_name(database_url)
    if not name or name == "test":
        raise SystemExit(f"Refusing to use database {name!r}: give the bench its own.")
    parts = urlsplit(database_url)
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if found:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def schema_ensure(database_url: str) -> None:
    """`manage.py migrate`, then Better Auth's tables, with production settings."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "chatapi.settings",
        "DJANGO_DEBUG": "1",  # only so that secrets are not required here
    }
    code = (
        "import django; django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('migrate', interactive=False, verbosity=0)\n"
        "from better_auth.tables import better_auth_tables_ensure\n"
        "better_auth_tables_ensure()\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)  # noqa: S603


def data_load(database_url: str) -> None:
    """Replace the tables' rows with seed.sql's, then VACUUM ANALYZE them."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        # No parameters: psycopg sends the script as one simple query.
        conn.execute(SEED_SQL.read_text().encode())
        for table in ("conversations", "messages", "tool_calls", "session", "user"):
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))


def seed(database_url: str) -> float:
    """Create, migrate and fill the database; the seconds it took."""
    started = time.monotonic()
    database_ensure(database_url)
    schema_ensure(database_url)
    data_load(database_url)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    args = parser.parse_args()
    seconds = seed(args.database_url)
    sys.stdout.write(f"seeded {database_name(args.database_url)} in {seconds:.1f}s\n")


if __name__ == "__main__":
    main()
