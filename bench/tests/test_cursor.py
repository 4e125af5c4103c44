"""The bench names the list's last page with a cursor it builds itself, and
the ceiling answers with its own: both must be the API's."""

import datetime as dt
import uuid

import pytest

from bench import ceiling, seed
from bench.run import list_cursor
from conversations.selectors import ConversationCursor, cursor_decode, cursor_encode


@pytest.mark.parametrize(
    "updated_at",
    [
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2026, 2, 9, 12, 0, 0, 123456, tzinfo=dt.UTC),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
    ],
)
def test_bench_cursors_are_the_apis(updated_at: dt.datetime) -> None:
    conversation_id = uuid.uuid4()
    expected = cursor_encode(ConversationCursor(updated_at, conversation_id))

    assert list_cursor(updated_at, conversation_id) == expected
    assert ceiling.cursor(updated_at, conversation_id) == expected


def test_bench_last_page_cursor_points_before_the_last_20() -> None:
    updated_at, conversation_id = seed.list_last_page_after()

    position = cursor_decode(list_cursor(updated_at, conversation_id))

    assert position == ConversationCursor(updated_at, conversation_id)
    assert position.id == seed.conversation_id("bench:many:9980")
