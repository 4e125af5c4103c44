"""The fast path's reads keep their index scan under a generic plan.

With server-side prepared statements (DB_PREPARE_THRESHOLD) PostgreSQL may
plan a statement once for any parameters. On skewed data (many short
conversations, one of 10 000 messages) such a plan must still read a page by
a backward scan of msg_conv_sequence_uniq and sort at most the page, never
the whole conversation ("Plans under skew" in docs/PERFORMANCE.md).
"""

import re
from collections.abc import Iterator
from typing import Any

from django.db import connection

import pytest

from conversations import postgres
from conversations.models import Message

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db]

OWNER = "owner-skew"
LONG = 10_000
LIMIT = 101  # a page of 100, plus one to know there is more
# The page's byte bound (selectors.message_page passes these).
BOUND = {"max_bytes": 1_048_576 - 160, "message_overhead": 200}


@pytest.fixture
def skewed() -> Iterator[dict[str, Any]]:
    """2 000 conversations of 3 messages and one of 10 000, analysed."""
    statements: list[tuple[str, list[Any]]] = [
        (
            "CREATE TEMPORARY TABLE skew ON COMMIT DROP AS"
            " SELECT md5('skew:' || k)::uuid AS id,"
            " CASE WHEN k = 0 THEN %s ELSE 3 END AS size"
            " FROM generate_series(0, 2000) AS k",
            [LONG],
        ),
        (
            "INSERT INTO conversations"
            " (id, owner_id, last_sequence, created_at, updated_at)"
            " SELECT id, %s, size, now(), now() FROM skew",
            [OWNER],
        ),
        (
            "INSERT INTO messages"
            " (id, conversation_id, sequence, role, content, created_at)"
            " SELECT md5(skew.id || ':' || s)::uuid, skew.id, s, 'user', 'm' || s,"
            " now() FROM skew, generate_series(1, skew.size) AS s",
            [],
        ),
        ("ANALYZE conversations, messages", []),
        ("SET LOCAL plan_cache_mode = force_generic_plan", []),
    ]
    with connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)
        cursor.execute("SELECT id FROM skew WHERE size = %s", [LONG])
        (long_id,) = cursor.fetchone()
    before = Message.objects.get(conversation_id=long_id, sequence=LONG - 500).id
    last = Message.objects.get(conversation_id=long_id, sequence=LONG).id
    yield {"long": long_id, "before": before, "last": last}
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")


def generic_plan(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """EXPLAIN ANALYZE of `sql` as a prepared statement, run with `params`
    under plan_cache_mode = force_generic_plan (set by `skewed`)."""
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
    positional = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m[1]) + 1}", sql)
    with connection.cursor() as cursor:
        cursor.execute(f"PREPARE skew_check AS {positional}")
        execute = connection.ops.compose_sql(  # type: ignore[attr-defined]
            f"EXECUTE skew_check({', '.join(['%s'] * len(names))})",
            [params[name] for name in names],
        )
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {execute}")
        (explained,) = cursor.fetchone()
        cursor.execute("DEALLOCATE skew_check")
    plan: dict[str, Any] = explained[0]["Plan"]
    return plan


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def problems(plan: dict[str, Any], limit: int) -> list[str]:
    """What makes `plan` cost more than the page it reads; [] when none."""
    found = []
    scans = [
        node
        for node in nodes(plan)
        if node.get("Index Name") == "msg_conv_sequence_uniq"
        and node.get("Scan Direction") == "Backward"
        and node["Node Type"] in {"Index Scan", "Index Only Scan"}
    ]
    if not scans:
        found.append("no backward index scan of msg_conv_sequence_uniq")
    # A generic plan compares with a parameter ($n), not the value.
    if not any(re.search(r"\$\d", node.get("Index Cond", "")) for node in scans):
        found.append("not a generic plan")
    for node in nodes(plan):
        rows = node["Actual Rows"] * node["Actual Loops"]
        if node.get("Relation Name") == "messages" and rows > limit:
            found.append(f"{node['Node Type']} read {rows} messages")
        if node["Node Type"] == "Sort":
            # A top-N sort returns `limit` rows: count what it was fed.
            fed = sum(
                child["Actual Rows"] * child["Actual Loops"]
                for child in node["Plans"]
                if child.get("Parent Relationship") == "Outer"
            )
            if fed > limit:
                found.append(f"Sort of {fed} rows")
    return found


def test_page_keeps_the_backward_index_scan(skewed: dict[str, Any]) -> None:
    plan = generic_plan(
        postgres.page_sql(before=False),
        {"conversation_id": skewed["long"], "owner_id": OWNER, "limit": LIMIT} | BOUND,
    )

    assert problems(plan, LIMIT) == []


def test_page_before_keeps_the_backward_index_scan(skewed: dict[str, Any]) -> None:
    plan = generic_plan(
        postgres.page_sql(before=True),
        {
            "conversation_id": skewed["long"],
            "owner_id": OWNER,
            "limit": LIMIT,
            "before": skewed["before"],
        }
        | BOUND,
    )

    assert problems(plan, LIMIT) == []


def test_history_keeps_the_backward_index_scan(skewed: dict[str, Any]) -> None:
    plan = generic_plan(
        postgres.HISTORY_SQL,
        {"conversation_id": skewed["long"], "message_id": skewed["last"], "limit": 21},
    )

    assert problems(plan, 21) == []


def test_a_shape_that_sorts_the_conversation_is_caught(
    skewed: dict[str, Any],
) -> None:
    # Control: ordered by a column msg_conv_sequence_uniq does not hold, a
    # generic plan reads and sorts the whole conversation; the check sees it.
    plan = generic_plan(
        "SELECT id FROM messages WHERE conversation_id = %(conversation_id)s"
        " ORDER BY created_at DESC, sequence DESC LIMIT %(limit)s",
        {"conversation_id": skewed["long"], "limit": LIMIT},
    )

    assert f"Sort of {LONG} rows" in problems(plan, LIMIT)
