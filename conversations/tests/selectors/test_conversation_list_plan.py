"""The conversation list pages in flat time on PostgreSQL: its query reads
conv_owner_updated_idx from the cursor on, so the last page of 10 000
conversations reads as few index and heap pages as the first (shown by
EXPLAIN (ANALYZE, BUFFERS): the buffers each page touched)."""

import datetime as dt
import json
import re
import uuid
from typing import Any

from django.db import connection
from django.utils import timezone

import pytest
from psycopg import sql as psycopg_sql

from conversations.models import Conversation
from conversations.selectors import ConversationCursor, conversation_page_query

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db]

OWNER = "owner-many"
COUNT = 10_000
LIMIT = 21  # a page of 20, and one more to know whether more follow


def plan(cursor: ConversationCursor | None) -> dict[str, Any]:
    query = conversation_page_query(owner_id=OWNER, limit=LIMIT, cursor=cursor)
    explained: list[dict[str, Any]] = json.loads(
        query.explain(format="json", analyze=True, buffers=True)
    )
    top: dict[str, Any] = explained[0]["Plan"]
    return top


def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in nodes(child))]


def buffers(node: dict[str, Any]) -> int:
    return int(node["Shared Hit Blocks"]) + int(node["Shared Read Blocks"])


def test_conversation_list_last_page_reads_what_the_first_does() -> None:
    now = timezone.now()
    Conversation.objects.bulk_create(
        Conversation(
            owner_id=owner,
            title=f"conversation {number}",
            updated_at=now - dt.timedelta(seconds=number // 2),  # ties too
        )
        for owner in (OWNER, "someone-else")
        for number in range(COUNT)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE conversations")
    rows = list(
        Conversation.objects.filter(owner_id=OWNER)
        .order_by("-updated_at", "-id")
        .values_list("updated_at", "id")
    )
    last_page_after = ConversationCursor(*rows[COUNT - 20 - 1])

    first = plan(None)
    last = plan(last_page_after)

    for found, rows_read in ((first, LIMIT), (last, 20)):
        [scan] = [n for n in nodes(found) if "Index Name" in n]
        assert scan["Index Name"] == "conv_owner_updated_idx"
        assert scan["Actual Rows"] == rows_read
        assert not [n for n in nodes(found) if n["Node Type"] == "Sort"]
    # The cursor bounds the scan (Index Cond), not a filter over the rows
    # before it.
    [scan] = [n for n in nodes(last) if "Index Name" in n]
    assert "updated_at <=" in scan["Index Cond"]
    assert scan.get("Rows Removed by Filter", 0) <= 2  # the shown ties
    # Flat: a handful of pages either way, not the ~10 000 rows before it.
    assert buffers(last) <= buffers(first) + 4
    assert buffers(last) < 20


PARAMETER_TYPES = {
    str: "text",
    dt.datetime: "timestamptz",
    uuid.UUID: "uuid",
    int: "bigint",
}


def generic_plan(query: Any) -> dict[str, Any]:
    """The plan PostgreSQL keeps for `query` as a prepared statement planned
    for any parameters (DB_PREPARE_THRESHOLD), run once with its own."""
    sql, params = query.query.sql_with_params()
    numbered = iter(range(1, len(params) + 1))
    prepared = re.sub(r"%s", lambda _: f"${next(numbered)}", sql)
    types = [PARAMETER_TYPES[type(param)] for param in params]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE page_plan({', '.join(types)}) AS {prepared}")
        try:
            # EXPLAIN takes no bound parameters: the values as literals.
            arguments = psycopg_sql.SQL(", ").join(
                psycopg_sql.Literal(param) for param in params
            )
            statement = psycopg_sql.SQL(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE page_plan({})"
            ).format(arguments)
            cursor.execute(statement.as_string(connection.connection))
            explained = cursor.fetchone()[0]
        finally:
            cursor.execute("DEALLOCATE page_plan")
    found = explained if isinstance(explained, list) else json.loads(explained)
    top: dict[str, Any] = found[0]["Plan"]
    return top


def test_conversation_list_generic_plan_under_skew_reads_one_owner_range() -> None:
    """Many users with a few conversations and one with 10 000: whatever the
    parameters, the plan is the owner's range of conv_owner_updated_idx, so
    no page reads other users' rows."""
    now = timezone.now()
    Conversation.objects.bulk_create(
        [
            *(
                Conversation(owner_id=f"small-{n % 2000}", updated_at=now)
                for n in range(6000)
            ),
            *(
                Conversation(
                    owner_id=OWNER, updated_at=now - dt.timedelta(seconds=number)
                )
                for number in range(COUNT)
            ),
        ]
    )
    with connection.cursor() as db:
        db.execute("ANALYZE conversations")
    mine = list(
        Conversation.objects.filter(owner_id=OWNER)
        .order_by("-updated_at", "-id")
        .values_list("updated_at", "id")
    )
    cases: list[tuple[str, ConversationCursor | None, int]] = [
        ("small-7", None, 3),
        ("small-7", ConversationCursor(now, uuid.UUID(int=2**128 - 1)), 3),
        (OWNER, None, LIMIT),
        (OWNER, ConversationCursor(*mine[COUNT - 21]), 20),
    ]

    for owner, position, rows_read in cases:
        query = conversation_page_query(owner_id=owner, limit=LIMIT, cursor=position)
        list(query.all())  # the first read of new rows also sets their hint bits
        found = generic_plan(query)
        [scan] = [n for n in nodes(found) if "Index Name" in n]
        assert scan["Index Name"] == "conv_owner_updated_idx", (owner, position)
        assert scan["Actual Rows"] == rows_read
        assert buffers(found) < 20
