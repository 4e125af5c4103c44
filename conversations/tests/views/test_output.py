"""The views' plain-dict output against DRF's fields it stands in for."""

import datetime as dt
import zoneinfo

import pytest
from rest_framework import serializers

from conversations.selectors import conversation_latest_for_owner, message_page
from conversations.tests.factories import ConversationFactory, MessageFactory
from conversations.views import datetime_out

UTC = dt.UTC
PARIS = zoneinfo.ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC),
        dt.datetime(2026, 11, 26, 1, 2, 3, tzinfo=UTC),  # no microseconds
        dt.datetime(2026, 7, 1, 23, 59, 59, 1, tzinfo=PARIS),  # summer, +02:00
        dt.datetime(2026, 1, 1, 0, 30, tzinfo=PARIS),  # the previous day in UTC
        dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.min),
        dt.datetime(2026, 3, 29, 2, 30, tzinfo=zoneinfo.ZoneInfo("America/New_York")),
    ],
)
def test_datetime_out_renders_what_drfs_datetime_field_renders(
    value: dt.datetime,
) -> None:
    assert datetime_out(value) == serializers.DateTimeField().to_representation(value)


def test_datetime_out_is_utc_with_z() -> None:
    value = dt.datetime(2026, 1, 1, 0, 30, 0, 5, tzinfo=PARIS)

    assert datetime_out(value) == "2025-12-31T23:30:00.000005Z"


@pytest.mark.django_db
def test_selectors_return_uuids_and_aware_datetimes() -> None:
    # PostgreSQL's raw SQL and the ORM elsewhere: the same Python types.
    conversation = ConversationFactory.create(owner_id="owner")
    message = MessageFactory.create(conversation=conversation, sequence=1)

    latest = conversation_latest_for_owner(owner_id="owner")
    page = message_page(owner_id="owner", conversation_id=conversation.id, limit=10)

    assert latest is not None
    assert latest.id == conversation.id
    assert latest.created_at == conversation.created_at
    assert latest.updated_at == conversation.updated_at
    assert latest.created_at.utcoffset() == dt.timedelta(0)
    [row] = page.messages
    assert row.id == message.id
    assert row.role == message.role
    assert row.content == message.content
    assert row.created_at == message.created_at
    assert row.created_at.utcoffset() == dt.timedelta(0)
