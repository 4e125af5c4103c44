"""Data requests: export_user_data and delete_user_data, for one user found
by id or email; unknown users, and emails several users share up to case,
fail with a clear error and change nothing."""

import datetime as dt
import json
import os
import stat
from io import StringIO
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Field, ForeignObjectRel, Model
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import pytest

from better_auth.models import BetterAuthSession, BetterAuthUser
from better_auth.tests.factories import BetterAuthSessionFactory, BetterAuthUserFactory
from conversations.models import Conversation, IdempotencyKey, Message, ToolCall
from conversations.support import USER_DATA_MODELS, user_data_delete
from conversations.tests.factories import (
    ConversationFactory,
    IdempotencyKeyFactory,
    MessageFactory,
    ToolCallFactory,
    conversation_with_messages,
)

pytestmark = pytest.mark.django_db


def user_with_data() -> tuple[BetterAuthUser, list[Conversation]]:
    """A user (with a session) with two conversations, one with a tool call."""
    user = BetterAuthSessionFactory.create(user__email="hana@example.com").user
    first = ConversationFactory.create(owner_id=user.id)
    question = MessageFactory.create(conversation=first, content="add tea")
    answer = MessageFactory.create(
        conversation=first,
        role=Message.Role.ASSISTANT,
        content="Added “tea”.",
        reply_to=question,
    )
    ToolCallFactory.create(
        message=answer,
        tool_name="add_task",
        parameters={"title": "tea"},
        result={"task_id": "9"},
    )
    second = ConversationFactory.create(owner_id=user.id)
    MessageFactory.create(conversation=second, content="hello")
    return user, [first, second]


def someone_else() -> ToolCall:
    """Another user's conversation with a tool call, and Idempotency-Key."""
    call = ToolCallFactory.create(
        message__conversation__owner_id=BetterAuthUserFactory.create().id
    )
    IdempotencyKeyFactory.create(owner_id=call.message.conversation.owner_id)
    return call


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def failure(*args: str) -> CommandError:
    """The error `manage.py <args>` prints, as "CommandError: <message>" on
    stderr, before exiting with its `returncode`."""
    with pytest.raises(CommandError) as failed:
        run(*args)
    return failed.value


def table_counts() -> tuple[int, ...]:
    return (
        Conversation.objects.count(),
        Message.objects.count(),
        ToolCall.objects.count(),
        IdempotencyKey.objects.count(),
        BetterAuthUser.objects.count(),
        BetterAuthSession.objects.count(),
    )


# export_user_data


def test_export_has_every_conversation_message_and_tool_call_in_order() -> None:
    user, (first, second) = user_with_data()
    someone_else()

    data = json.loads(run("export_user_data", user.id))

    assert data["owner_id"] == user.id
    assert data["user"] == {"id": user.id, "email": user.email, "name": user.name}
    assert [c["id"] for c in data["conversations"]] == [str(first.id), str(second.id)]
    question, answer = data["conversations"][0]["messages"]
    assert (question["sequence"], question["role"], question["content"]) == (
        1,
        "user",
        "add tea",
    )
    assert answer["reply_to_id"] == question["id"]
    assert answer["content"] == "Added “tea”."
    (call,) = answer["tool_calls"]
    assert call["tool_name"] == "add_task"
    assert call["parameters"] == {"title": "tea"}
    assert call["result"] == {"task_id": "9"}
    assert call["status"] == "success"
    assert call["created_at"].endswith("Z")
    assert [m["content"] for m in data["conversations"][1]["messages"]] == ["hello"]


def test_export_has_each_messages_model_and_tokens() -> None:
    user, (first, _) = user_with_data()
    Message.objects.filter(conversation=first, role=Message.Role.ASSISTANT).update(
        model="gpt-test-mini", prompt_tokens=1200, completion_tokens=34
    )

    data = json.loads(run("export_user_data", user.id))

    question, answer = data["conversations"][0]["messages"]
    assert (answer["model"], answer["prompt_tokens"], answer["completion_tokens"]) == (
        "gpt-test-mini",
        1200,
        34,
    )
    assert (
        question["model"],
        question["prompt_tokens"],
        question["completion_tokens"],
    ) == ("", None, None)


def test_export_has_each_conversations_title_and_who_set_it() -> None:
    user, (first, second) = user_with_data()
    Conversation.objects.filter(pk=first.pk).update(title="add tea")
    Conversation.objects.filter(pk=second.pk).update(
        title="Greetings", title_set_by_user=True
    )

    data = json.loads(run("export_user_data", user.id))

    assert [(c["title"], c["title_set_by_user"]) for c in data["conversations"]] == [
        ("add tea", False),
        ("Greetings", True),
    ]


def test_export_has_the_users_idempotency_keys_with_their_responses() -> None:
    user, _ = user_with_data()
    someone_else()
    older = IdempotencyKeyFactory.create(
        owner_id=user.id,
        key="k-1",
        created_at=timezone.now() - dt.timedelta(hours=1),
        response_status=502,
        response_body={"detail": "The assistant failed.", "code": "agent_error"},
    )
    running = IdempotencyKeyFactory.create(
        owner_id=user.id, key="k-2", response_status=None, response_body=None
    )

    data = json.loads(run("export_user_data", user.id))

    assert data["idempotency_keys"] == [
        {
            "key": "k-1",
            "created_at": older.created_at.isoformat().replace("+00:00", "Z"),
            "request_fingerprint": older.fingerprint,
            "response_status": 502,
            "response_body": {"detail": "The assistant failed.", "code": "agent_error"},
        },
        {
            "key": "k-2",
            "created_at": running.created_at.isoformat().replace("+00:00", "Z"),
            "request_fingerprint": running.fingerprint,
            "response_status": None,
            "response_body": None,
        },
    ]


def test_export_by_email_equals_export_by_id() -> None:
    user, _ = user_with_data()

    by_id = json.loads(run("export_user_data", user.id))
    by_email = json.loads(run("export_user_data", "HANA@example.com"))

    by_id.pop("exported_at")
    by_email.pop("exported_at")
    assert by_email == by_id


def test_export_of_a_user_without_data_is_empty() -> None:
    user = BetterAuthUserFactory.create()
    someone_else()

    data = json.loads(run("export_user_data", user.email))

    assert data["conversations"] == []
    assert data["idempotency_keys"] == []
    assert data["user"]["id"] == user.id


def test_export_of_an_id_whose_better_auth_user_is_gone() -> None:
    conversation = ConversationFactory.create(owner_id="deleted-account")

    data = json.loads(run("export_user_data", "deleted-account"))

    assert data["user"] is None
    assert [c["id"] for c in data["conversations"]] == [str(conversation.id)]


def test_export_to_a_file_readable_by_its_owner_only(tmp_path: Path) -> None:
    user, _ = user_with_data()
    path = tmp_path / "export.json"

    stdout = run("export_user_data", user.id, "--output", str(path))

    assert stdout == ""
    assert len(json.loads(path.read_text(encoding="utf-8"))["conversations"]) == 2
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_export_refuses_to_overwrite_a_file(tmp_path: Path) -> None:
    user, _ = user_with_data()
    path = tmp_path / "export.json"
    path.write_text("keep me")

    with pytest.raises(CommandError, match="already exists"):
        run("export_user_data", user.id, "-o", str(path))

    assert path.read_text() == "keep me"


@pytest.mark.parametrize("user", ["nobody@example.com", "no-such-user"])
def test_export_of_an_unknown_user_fails_clearly(user: str) -> None:
    user_with_data()

    error = failure("export_user_data", user)

    assert error.returncode == 1
    assert user in str(error)
    assert "Better Auth user" in str(error)


# delete_user_data


def test_delete_dry_run_prints_what_would_go_and_deletes_nothing() -> None:
    user, (first, second) = user_with_data()
    IdempotencyKeyFactory.create(owner_id=user.id)
    before = table_counts()

    out = run("delete_user_data", user.email, "--dry-run")

    assert f"Would delete for user {user.id} <{user.email}>" in out
    assert (
        "2 conversation(s), 3 message(s), 1 tool call(s), 1 idempotency key(s)" in out
    )
    assert str(first.id) in out
    assert str(second.id) in out
    assert table_counts() == before


def test_delete_without_confirmation_fails_and_deletes_nothing() -> None:
    user, _ = user_with_data()
    before = table_counts()

    error = failure("delete_user_data", user.id)

    assert error.returncode == 1
    assert "--yes" in str(error)
    assert table_counts() == before


def test_delete_removes_the_users_data_only() -> None:
    user, _ = user_with_data()
    IdempotencyKeyFactory.create(owner_id=user.id)
    other = someone_else()

    out = run("delete_user_data", user.id, "--yes")

    assert (
        "2 conversation(s), 3 message(s), 1 tool call(s), 1 idempotency key(s)" in out
    )
    assert not Conversation.objects.filter(owner_id=user.id).exists()
    assert not Message.objects.filter(conversation__owner_id=user.id).exists()
    assert list(ToolCall.objects.all()) == [other]
    assert Message.objects.count() == 1
    assert list(IdempotencyKey.objects.values_list("owner_id", flat=True)) == [
        other.message.conversation.owner_id
    ]
    # Better Auth's rows are not ours to delete.
    assert BetterAuthUser.objects.filter(pk=user.id).exists()
    assert BetterAuthSession.objects.filter(user_id=user.id).count() == 1


def test_delete_by_email() -> None:
    user, _ = user_with_data()

    run("delete_user_data", "hana@example.com", "--yes")

    assert not Conversation.objects.filter(owner_id=user.id).exists()


def test_delete_of_an_id_whose_better_auth_user_is_gone() -> None:
    MessageFactory.create(conversation__owner_id="deleted-account")

    out = run("delete_user_data", "deleted-account", "--yes")

    assert "1 conversation(s), 1 message(s), 0 tool call(s)" in out
    assert not Conversation.objects.exists()


def test_delete_of_an_id_only_idempotency_keys_carry() -> None:
    """Better Auth deleted the account and the user had deleted their
    conversations (DELETE /conversations): their keys still hold replies."""
    IdempotencyKeyFactory.create(owner_id="deleted-account")
    someone_else()

    out = run("delete_user_data", "deleted-account", "--yes")

    assert "0 conversation(s), 0 message(s), 0 tool call(s), 1 idempotency key(s)" in (
        out
    )
    assert not IdempotencyKey.objects.filter(owner_id="deleted-account").exists()
    assert IdempotencyKey.objects.count() == 1


def test_delete_of_a_user_without_data_deletes_nothing() -> None:
    user = BetterAuthUserFactory.create()
    someone_else()
    before = table_counts()

    out = run("delete_user_data", user.id, "--yes")

    assert "0 conversation(s), 0 message(s), 0 tool call(s)" in out
    assert table_counts() == before


@pytest.mark.parametrize(
    "args",
    [
        ("nobody@example.com", "--yes"),
        ("no-such-user", "--yes"),
        ("no-such-user", "--dry-run"),
    ],
)
def test_delete_of_an_unknown_user_fails_and_deletes_nothing(
    args: tuple[str, ...],
) -> None:
    user_with_data()
    someone_else()
    before = table_counts()

    error = failure("delete_user_data", *args)

    assert error.returncode == 1
    assert args[0] in str(error)
    assert table_counts() == before


def test_delete_dry_run_and_yes_do_not_go_together() -> None:
    user, _ = user_with_data()
    before = table_counts()

    error = failure("delete_user_data", user.id, "--dry-run", "--yes")

    assert "not allowed with argument" in str(error)
    assert table_counts() == before


def test_export_then_delete_round_trip_leaves_nothing_to_export() -> None:
    user, _ = user_with_data()
    assert len(json.loads(run("export_user_data", user.id))["conversations"]) == 2

    run("delete_user_data", user.id, "--yes")

    data = json.loads(run("export_user_data", user.id))
    assert set(data) == {
        "owner_id",
        "user",
        "exported_at",
        "conversations",
        "idempotency_keys",
    }
    assert data["conversations"] == []
    assert data["idempotency_keys"] == []


# What export and erasure cover


def _is_ours(model: type[Model]) -> bool:
    """A model of an app in this repository (not Django's, not a library's)."""
    return (
        Path(apps.get_app_config(model._meta.app_label).path).parent
        == settings.BASE_DIR
    )


def _holds_user_data(model: type[Model]) -> bool:
    """A field that names a user (owner, user, email), or a relation to a
    model that export and erasure cover."""
    for field in model._meta.get_fields():
        if isinstance(field, ForeignObjectRel) or not isinstance(field, Field):
            continue
        if any(word in field.name for word in ("owner", "user", "email")):
            return True
        if field.related_model in USER_DATA_MODELS:
            return True
    return False


def test_every_model_of_ours_that_holds_user_data_is_exported_and_erased() -> None:
    """A new model with a user field fails here until USER_DATA_MODELS (and
    export, erasure) cover it. Better Auth's tables (unmanaged) are Better
    Auth's to erase."""
    ours = [model for model in apps.get_models() if _is_ours(model)]
    holding = {
        model for model in ours if model._meta.managed and _holds_user_data(model)
    }

    assert {Conversation, Message, ToolCall, IdempotencyKey} <= set(ours)
    assert holding == set(USER_DATA_MODELS)


def test_delete_leaves_no_row_of_the_user_in_any_model() -> None:
    user, _ = user_with_data()
    IdempotencyKeyFactory.create(owner_id=user.id)
    someone_else()
    for model, lookup in USER_DATA_MODELS.items():
        assert model._default_manager.filter(**{lookup: user.id}).exists(), model

    run("delete_user_data", user.id, "--yes")

    for model, lookup in USER_DATA_MODELS.items():
        rows = model._default_manager
        assert not rows.filter(**{lookup: user.id}).exists(), model
        assert rows.exclude(**{lookup: user.id}).exists(), model


# Emails several users share up to case


def users_sharing_an_email() -> list[BetterAuthUser]:
    """Two users whose emails differ only in case (Better Auth lowercases
    emails at sign-up, but an import or an older version may not), each
    with data; by id."""
    users = [
        BetterAuthUserFactory.create(email="Kim@example.com"),
        BetterAuthUserFactory.create(email="kim@example.com"),
    ]
    for user in users:
        MessageFactory.create(conversation__owner_id=user.id)
        IdempotencyKeyFactory.create(owner_id=user.id)
    return sorted(users, key=lambda user: user.id)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("export_user_data", "kim@example.com"), id="export-lower"),
        pytest.param(("export_user_data", "KIM@EXAMPLE.COM"), id="export-upper"),
        pytest.param(("delete_user_data", "Kim@example.com", "--yes"), id="delete"),
        pytest.param(
            ("delete_user_data", "kim@example.com", "--dry-run"), id="delete-dry-run"
        ),
    ],
)
def test_an_email_several_users_share_up_to_case_is_refused(
    args: tuple[str, ...],
) -> None:
    users = users_sharing_an_email()
    before = table_counts()

    out = StringIO()
    with pytest.raises(CommandError) as failed:
        call_command(*args, stdout=out, stderr=StringIO())

    assert failed.value.returncode == 1
    message = str(failed.value)
    assert f"2 Better Auth users have the email {args[1]!r} up to case" in message
    assert f"{users[0].id} <{users[0].email}>, {users[1].id} <{users[1].email}>" in (
        message
    )
    assert "user id instead" in message
    assert out.getvalue() == ""
    assert table_counts() == before


def test_each_user_sharing_an_email_is_erased_by_id() -> None:
    first, second = users_sharing_an_email()

    run("delete_user_data", first.id, "--yes")

    assert not Conversation.objects.filter(owner_id=first.id).exists()
    assert not IdempotencyKey.objects.filter(owner_id=first.id).exists()
    assert Conversation.objects.filter(owner_id=second.id).count() == 1
    assert IdempotencyKey.objects.filter(owner_id=second.id).count() == 1


@pytest.mark.postgresql
def test_an_email_shared_up_to_non_ascii_case_is_refused_on_postgresql() -> None:
    """PostgreSQL folds the case of every letter; SQLite's LIKE only ASCII."""
    BetterAuthUserFactory.create(email="Élodie@example.com")
    BetterAuthUserFactory.create(email="élodie@example.com")
    before = table_counts()

    error = failure("delete_user_data", "élodie@example.com", "--yes")

    assert error.returncode == 1
    assert "2 Better Auth users" in str(error)
    assert table_counts() == before


@pytest.mark.postgresql
def test_erasure_statements_do_not_grow_with_the_messages() -> None:
    """The conversations go as the API deletes them: one DELETE of them with
    their messages and tool calls, none loaded into Python."""
    small, large = BetterAuthUserFactory.create(), BetterAuthUserFactory.create()
    conversation_with_messages(small.id, 2)
    for _ in range(3):
        conversation_with_messages(large.id, 60)

    statements: list[int] = []
    for user in (small, large):
        with CaptureQueriesContext(connection) as captured:
            counts = user_data_delete(owner_id=user.id)
        statements.append(len(captured.captured_queries))

    assert counts.conversations == 3
    assert counts.messages == 180
    assert statements[0] == statements[1]
    assert not Message.objects.filter(conversation__owner_id=large.id).exists()
