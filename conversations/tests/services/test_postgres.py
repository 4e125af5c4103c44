"""PostgreSQL's fast path (conversations.postgres) writes every model column,
and writes what the ORM would: a new field cannot silently break writes."""

import re
import uuid
from typing import Any

from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext

import pytest
from pytest_django import Settings

from agent.backends.base import AgentReply
from agent.backends.base import ToolCall as ToolCallRecord
from conversations import services
from conversations.models import Conversation, Message, ToolCall
from conversations.services import (
    ChatExchange,
    message_assistant_create,
    message_user_create,
)
from core.exceptions import NotFoundError

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

OWNER = "owner-1"
INSERT = re.compile(r'INSERT INTO "?(?P<table>\w+)"?\s*\((?P<columns>[^)]*)\)')
REPLY = AgentReply(
    content="done",
    tool_calls=(
        ToolCallRecord("add_task", {"title": "milk"}, {"id": 1}, "success"),
        ToolCallRecord("list_tasks", {}, None, "error"),
    ),
)


@pytest.fixture(autouse=True)
def _stub(settings: Settings) -> None:
    settings.AGENT_BACKEND = "agent.backends.stub.StubAgent"


def exchange_in_new_conversation() -> ChatExchange:
    user_message = message_user_create(
        owner_id=OWNER, conversation_id=None, content="add milk"
    )
    return message_assistant_create(user_message=user_message, reply=REPLY)


def columns(model: type[Model]) -> set[str]:
    return {str(field.column) for field in model._meta.concrete_fields}


def stored(instance: Model) -> dict[str, Any]:
    """The row of `instance` as the database holds it, every column."""
    names = [field.attname for field in type(instance)._meta.concrete_fields]
    rows = type(instance)._default_manager.filter(pk=instance.pk).values(*names)
    return rows.get()


def built(instance: Model) -> dict[str, Any]:
    """The values the ORM would write for `instance`, every column."""
    return {
        field.attname: getattr(instance, field.attname)
        for field in type(instance)._meta.concrete_fields
    }


def test_every_model_column_is_in_the_fast_paths_inserts() -> None:
    with CaptureQueriesContext(connection) as captured:
        exchange_in_new_conversation()

    inserted: dict[str, set[str]] = {}
    for query in captured.captured_queries:
        for found in INSERT.finditer(query["sql"]):
            names = {c.strip().strip('"') for c in found["columns"].split(",")}
            inserted.setdefault(found["table"], set()).update(names)
    assert inserted == {
        "conversations": columns(Conversation),
        "messages": columns(Message),
        "tool_calls": columns(ToolCall),
    }


@pytest.fixture(params=["postgres", "orm"])
def write_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both write paths on PostgreSQL: the fast path and the ORM's."""
    if request.param == "orm":
        monkeypatch.setattr(
            services.postgres, "message_append", services._message_append_orm
        )
    return str(request.param)


def test_rows_written_equal_the_models_instances(write_path: str) -> None:
    """All columns, defaults included (ToolCall.position, the timestamps):
    what the fast path stores is what the ORM stores for the same instance."""
    exchange = exchange_in_new_conversation()
    follow_up = message_user_create(
        owner_id=OWNER, conversation_id=exchange.conversation_id, content="and eggs"
    )

    for instance in [
        exchange.user_message,
        exchange.assistant_message,
        *exchange.tool_calls,
        follow_up,
    ]:
        assert stored(instance) == built(instance)
    conversation = Conversation.objects.get(pk=exchange.conversation_id)
    assert (conversation.owner_id, conversation.last_sequence) == (OWNER, 3)
    assert conversation.updated_at == follow_up.created_at
    assert [
        m.sequence for m in (exchange.user_message, exchange.assistant_message)
    ] == [1, 2]
    assert follow_up.sequence == 3
    assert [c.position for c in exchange.tool_calls] == [0, 1]


def test_both_paths_write_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    def written() -> list[dict[str, Any]]:
        exchange = exchange_in_new_conversation()
        ignored = {"id", "conversation_id", "message_id", "reply_to_id", "created_at"}
        return [
            {k: v for k, v in stored(instance).items() if k not in ignored}
            for instance in [
                exchange.user_message,
                exchange.assistant_message,
                *exchange.tool_calls,
            ]
        ]

    fast = written()
    monkeypatch.setattr(
        services.postgres, "message_append", services._message_append_orm
    )
    orm = written()

    assert fast == orm
    assert len(fast) == 4


def test_fast_path_unknown_conversation_writes_nothing() -> None:
    with pytest.raises(NotFoundError):
        message_user_create(owner_id=OWNER, conversation_id=uuid.uuid4(), content="x")

    assert not Message.objects.exists()
    assert not Conversation.objects.exists()
