"""The support admin: conversations newest first with their owner, found by
owner id, email or conversation id; transcripts in order with tool calls;
messages and tool calls searchable and filterable; nothing writable."""

import datetime as dt
import uuid

from django.test import Client
from django.urls import reverse
from django.utils import timezone

import pytest

from better_auth.tests.factories import BetterAuthUserFactory
from conversations.admin import LargeTablePaginator
from conversations.models import Conversation, Message, ToolCall
from conversations.tests.factories import (
    ConversationFactory,
    MessageFactory,
    ToolCallFactory,
)

CONVERSATIONS = reverse("admin:conversations_conversation_changelist")
MESSAGES = reverse("admin:conversations_message_changelist")
TOOL_CALLS = reverse("admin:conversations_toolcall_changelist")


def conversation_page(conversation: Conversation) -> str:
    return reverse("admin:conversations_conversation_change", args=[conversation.pk])


def positions(text: str, needles: list[str]) -> list[int]:
    """Where each needle first appears in text (each must appear)."""
    found = [text.index(needle) for needle in needles]
    assert -1 not in found
    return found


def test_admin_login_page_renders_html(client: Client) -> None:
    response = client.get("/admin/login/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"<form" in response.content


# Conversations: changelist


@pytest.mark.django_db
def test_conversation_changelist_shows_owner_email_and_message_count(
    admin_client: Client,
) -> None:
    owner = BetterAuthUserFactory.create(email="alice@example.com")
    conversation = ConversationFactory.create(owner_id=owner.id)
    MessageFactory.create_batch(3, conversation=conversation)

    response = admin_client.get(CONVERSATIONS)

    assert response.status_code == 200
    row = response.text[response.text.index(str(conversation.id)) :]
    assert owner.id in row
    assert "alice@example.com" in row
    assert '<td class="field-message_count">3</td>' in row


@pytest.mark.django_db
def test_conversation_changelist_owner_without_better_auth_user_shows_dash(
    admin_client: Client,
) -> None:
    conversation = ConversationFactory.create(owner_id="deleted-user")

    response = admin_client.get(CONVERSATIONS)

    row = response.text[response.text.index(str(conversation.id)) :]
    assert '<td class="field-owner_email">-</td>' in row


@pytest.mark.django_db
def test_conversation_changelist_lists_newest_first(admin_client: Client) -> None:
    now = timezone.now()
    ages = {"older": 2, "newest": 0, "oldest": 5}
    conversations = {
        name: ConversationFactory.create(
            created_at=now - dt.timedelta(days=days),
            updated_at=now - dt.timedelta(days=days),
        )
        for name, days in ages.items()
    }

    response = admin_client.get(CONVERSATIONS)

    assert response.status_code == 200
    found = dict(
        zip(
            conversations,
            positions(response.text, [str(c.id) for c in conversations.values()]),
            strict=True,
        )
    )
    assert sorted(found, key=found.__getitem__) == ["newest", "older", "oldest"]


@pytest.mark.django_db
def test_conversation_changelist_date_filter_keeps_recent_only(
    admin_client: Client,
) -> None:
    recent = ConversationFactory.create()
    old = ConversationFactory.create(
        created_at=timezone.now() - dt.timedelta(days=30),
    )
    since = timezone.now() - dt.timedelta(days=7)

    response = admin_client.get(CONVERSATIONS, {"created_at__gte": str(since)})

    assert response.status_code == 200
    assert str(recent.id) in response.text
    assert str(old.id) not in response.text


@pytest.mark.django_db
@pytest.mark.parametrize(
    "term",
    ["owner_id", "email", "email_upper", "conversation_id"],
)
def test_conversation_search_finds_only_that_owner_or_conversation(
    admin_client: Client, term: str
) -> None:
    owner = BetterAuthUserFactory.create(email="bob@example.com")
    mine = ConversationFactory.create(owner_id=owner.id)
    other = ConversationFactory.create(owner_id=BetterAuthUserFactory.create().id)
    query = {
        "owner_id": owner.id,
        "email": "bob@example.com",
        "email_upper": "Bob@Example.com",
        "conversation_id": str(mine.id),
    }[term]

    response = admin_client.get(CONVERSATIONS, {"q": f"  {query} "})

    assert response.status_code == 200
    assert str(mine.id) in response.text
    assert str(other.id) not in response.text


@pytest.mark.django_db
@pytest.mark.parametrize(
    "term",
    ["' OR 1=1 --", "%", "_", "\\", "x" * 5000, "\x00", "00000000-0000", "   ", "@"],
    ids=[
        "sql",
        "percent",
        "underscore",
        "backslash",
        "long",
        "nul",
        "uuid-ish",
        "ws",
        "at",
    ],
)
@pytest.mark.parametrize("changelist", [CONVERSATIONS, MESSAGES, TOOL_CALLS])
def test_search_garbage_term_does_not_fail(
    admin_client: Client, term: str, changelist: str
) -> None:
    ToolCallFactory.create()

    response = admin_client.get(changelist, {"q": term})

    assert response.status_code == 200
    assert Conversation.objects.count() == 1


# Conversations: change page


@pytest.mark.django_db
def test_conversation_page_shows_messages_in_sequence_order(
    admin_client: Client,
) -> None:
    conversation = ConversationFactory.create()
    # Inserted out of order, with equal timestamps and reversed ids.
    at = timezone.now()
    for sequence in (3, 1, 2):
        MessageFactory.create(
            conversation=conversation,
            sequence=sequence,
            id=uuid.UUID(int=10 - sequence),
            content=f"content-of-message-{sequence}",
            created_at=at,
        )

    response = admin_client.get(conversation_page(conversation))

    assert response.status_code == 200
    found = positions(response.text, [f"content-of-message-{n}" for n in (1, 2, 3)])
    assert found == sorted(found)


@pytest.mark.django_db
def test_conversation_page_shows_role_time_and_escaped_content(
    admin_client: Client,
) -> None:
    at = dt.datetime(2026, 11, 25, 10, 0, 1, tzinfo=dt.UTC)
    message = MessageFactory.create(
        role=Message.Role.USER, content="<b>add</b> milk\nand eggs", created_at=at
    )

    response = admin_client.get(conversation_page(message.conversation))

    assert 'class="message role-user"' in response.text
    assert "2026-11-25 10:00:01 UTC" in response.text
    assert "&lt;b&gt;add&lt;/b&gt; milk\nand eggs" in response.text
    assert "<b>add</b>" not in response.text


@pytest.mark.django_db
def test_conversation_page_shows_tool_calls_as_pretty_json_with_status(
    admin_client: Client,
) -> None:
    call = ToolCallFactory.create(
        tool_name="add_task",
        parameters={"title": "buy milk", "due": None},
        result={"error": "task list full"},
        status=ToolCall.Status.ERROR,
    )

    response = admin_client.get(conversation_page(call.message.conversation))

    text = response.text
    assert 'class="tool-call status-error"' in text
    assert '<strong class="tool-name">add_task</strong>' in text
    assert '<span class="status">Error</span>' in text
    assert (
        "{\n  &quot;due&quot;: null,\n  &quot;title&quot;: &quot;buy milk&quot;\n}"
        in text
    )
    assert "{\n  &quot;error&quot;: &quot;task list full&quot;\n}" in text


@pytest.mark.django_db
def test_conversation_page_shows_each_tool_call_under_its_own_message(
    admin_client: Client,
) -> None:
    conversation = ConversationFactory.create()
    first = MessageFactory.create(
        conversation=conversation, role=Message.Role.ASSISTANT, content="first reply"
    )
    second = MessageFactory.create(
        conversation=conversation, role=Message.Role.ASSISTANT, content="second reply"
    )
    ToolCallFactory.create(message=second, tool_name="delete_task")
    ToolCallFactory.create(message=first, tool_name="add_task")

    text = admin_client.get(conversation_page(conversation)).text

    found = positions(text, ["first reply", "add_task", "second reply", "delete_task"])
    assert found == sorted(found)


@pytest.mark.django_db
def test_conversation_page_shows_owner_email_and_link_to_their_conversations(
    admin_client: Client,
) -> None:
    owner = BetterAuthUserFactory.create(email="carol@example.com")
    conversation = ConversationFactory.create(owner_id=owner.id)

    text = admin_client.get(conversation_page(conversation)).text

    assert f"{owner.id} &lt;carol@example.com&gt;" in text
    assert f'href="{CONVERSATIONS}?q={owner.id}"' in text


@pytest.mark.django_db
def test_conversation_page_of_a_long_conversation_shows_the_latest_messages(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("conversations.admin.TRANSCRIPT_LIMIT", 3)
    conversation = ConversationFactory.create()
    for n in range(1, 6):
        MessageFactory.create(conversation=conversation, content=f"message-{n}-end")

    text = admin_client.get(conversation_page(conversation)).text

    assert "message-1-end" not in text
    assert "message-2-end" not in text
    assert all(f"message-{n}-end" in text for n in (3, 4, 5))
    assert f"{MESSAGES}?q={conversation.pk}" in text


@pytest.mark.django_db
def test_conversation_page_of_unknown_id_redirects_to_admin_home(
    admin_client: Client,
) -> None:
    response = admin_client.get(
        reverse("admin:conversations_conversation_change", args=[uuid.uuid4()])
    )

    assert response.status_code == 302


# Read-only history


@pytest.mark.django_db
def test_conversation_cannot_be_added_changed_or_deleted(admin_client: Client) -> None:
    conversation = MessageFactory.create().conversation
    owner_id = conversation.owner_id

    add = admin_client.get(reverse("admin:conversations_conversation_add"))
    change = admin_client.post(
        reverse("admin:conversations_conversation_change", args=[conversation.pk]),
        {"owner_id": "someone-else"},
    )
    delete = admin_client.post(
        reverse("admin:conversations_conversation_delete", args=[conversation.pk]),
        {"post": "yes"},
    )

    assert (add.status_code, change.status_code, delete.status_code) == (403,) * 3
    assert Conversation.objects.get(pk=conversation.pk).owner_id == owner_id
    assert conversation.messages.count() == 1


@pytest.mark.django_db
def test_message_cannot_be_added_changed_or_deleted(admin_client: Client) -> None:
    message = MessageFactory.create(content="original")

    add = admin_client.get(reverse("admin:conversations_message_add"))
    change = admin_client.post(
        reverse("admin:conversations_message_change", args=[message.pk]),
        {"content": "rewritten"},
    )
    delete = admin_client.post(
        reverse("admin:conversations_message_delete", args=[message.pk]),
        {"post": "yes"},
    )

    assert (add.status_code, change.status_code, delete.status_code) == (403,) * 3
    assert Message.objects.get(pk=message.pk).content == "original"


@pytest.mark.django_db
def test_tool_call_cannot_be_added_changed_or_deleted(admin_client: Client) -> None:
    call = ToolCallFactory.create(status=ToolCall.Status.ERROR)

    add = admin_client.get(reverse("admin:conversations_toolcall_add"))
    change = admin_client.post(
        reverse("admin:conversations_toolcall_change", args=[call.pk]),
        {"status": "success"},
    )
    delete = admin_client.post(
        reverse("admin:conversations_toolcall_delete", args=[call.pk]),
        {"post": "yes"},
    )

    assert (add.status_code, change.status_code, delete.status_code) == (403,) * 3
    assert ToolCall.objects.get(pk=call.pk).status == ToolCall.Status.ERROR


@pytest.mark.django_db
@pytest.mark.parametrize("changelist", [CONVERSATIONS, MESSAGES, TOOL_CALLS])
def test_changelists_offer_no_bulk_action(
    admin_client: Client, changelist: str
) -> None:
    ToolCallFactory.create()

    response = admin_client.get(changelist)

    assert response.status_code == 200
    assert 'name="action"' not in response.text
    assert "delete_selected" not in response.text


# Messages


@pytest.mark.django_db
def test_message_search_by_content_finds_the_phrase(admin_client: Client) -> None:
    wanted = MessageFactory.create(content="Added “Buy Milk” to your tasks.")
    other = MessageFactory.create(content="buy bread, then milk")

    response = admin_client.get(MESSAGES, {"q": "buy milk"})

    assert response.status_code == 200
    assert str(wanted.conversation_id) in response.text
    assert str(other.conversation_id) not in response.text


@pytest.mark.django_db
def test_message_search_by_conversation_id_lists_its_messages(
    admin_client: Client,
) -> None:
    mine = MessageFactory.create(content="mine-content")
    MessageFactory.create(content="other-content")

    response = admin_client.get(MESSAGES, {"q": str(mine.conversation_id)})

    assert "mine-content" in response.text
    assert "other-content" not in response.text


@pytest.mark.django_db
def test_message_filter_by_role_keeps_that_role(admin_client: Client) -> None:
    MessageFactory.create(role=Message.Role.USER, content="user-said")
    MessageFactory.create(role=Message.Role.ASSISTANT, content="assistant-said")

    response = admin_client.get(MESSAGES, {"role__exact": "assistant"})

    assert "assistant-said" in response.text
    assert "user-said" not in response.text


@pytest.mark.django_db
def test_message_page_shows_content_and_tool_calls(admin_client: Client) -> None:
    call = ToolCallFactory.create(
        parameters={"title": "walk"}, status=ToolCall.Status.ERROR
    )

    response = admin_client.get(
        reverse("admin:conversations_message_change", args=[call.message.pk])
    )

    assert response.status_code == 200
    assert call.message.content in response.text
    assert "{\n  &quot;title&quot;: &quot;walk&quot;\n}" in response.text
    assert 'class="tool-call status-error"' in response.text


@pytest.mark.django_db
def test_message_changelist_shows_model_and_tokens(admin_client: Client) -> None:
    MessageFactory.create(
        role=Message.Role.ASSISTANT,
        model="gpt-test-mini",
        prompt_tokens=1200,
        completion_tokens=34,
    )
    MessageFactory.create(
        role=Message.Role.ASSISTANT, model="llama3.1", prompt_tokens=7
    )

    response = admin_client.get(MESSAGES)

    assert response.status_code == 200
    assert '<td class="field-model">gpt-test-mini</td>' in response.text
    assert '<td class="field-tokens">1200 + 34</td>' in response.text
    assert '<td class="field-tokens">7 + ?</td>' in response.text


@pytest.mark.django_db
def test_message_page_shows_model_and_tokens(admin_client: Client) -> None:
    message = MessageFactory.create(
        role=Message.Role.ASSISTANT,
        model="gpt-test-mini",
        prompt_tokens=1200,
        completion_tokens=34,
    )

    response = admin_client.get(
        reverse("admin:conversations_message_change", args=[message.pk])
    )

    assert response.status_code == 200
    for field, value in [
        ("model", "gpt-test-mini"),
        ("prompt_tokens", "1200"),
        ("completion_tokens", "34"),
    ]:
        assert f'<div class="form-row field-{field}">' in response.text
        assert f'<div class="readonly">{value}</div>' in response.text


@pytest.mark.django_db
def test_conversation_page_shows_usage_of_assistant_messages(
    admin_client: Client,
) -> None:
    conversation = ConversationFactory.create()
    MessageFactory.create(conversation=conversation, content="add tea")
    MessageFactory.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        model="gpt-test-mini",
        prompt_tokens=1200,
        completion_tokens=None,
    )

    response = admin_client.get(conversation_page(conversation))

    assert response.text.count('<span class="usage">') == 1
    assert (
        '<span class="usage">gpt-test-mini · 1200 prompt + ? completion tokens</span>'
        in response.text
    )


# Tool calls


@pytest.mark.django_db
def test_tool_call_filter_by_status_finds_the_failures(admin_client: Client) -> None:
    failed = ToolCallFactory.create(tool_name="failed_tool", status="error")
    ok = ToolCallFactory.create(tool_name="ok_tool", status="success")

    response = admin_client.get(TOOL_CALLS, {"status__exact": "error"})

    assert response.status_code == 200
    assert str(failed.message.conversation_id) in response.text
    assert str(ok.message.conversation_id) not in response.text
    assert '<span class="toolcall-status status-error">Error</span>' in response.text


@pytest.mark.django_db
def test_tool_call_filter_by_tool_name_keeps_that_tool(admin_client: Client) -> None:
    wanted = ToolCallFactory.create(tool_name="add_task")
    other = ToolCallFactory.create(tool_name="delete_task")

    response = admin_client.get(TOOL_CALLS, {"tool_name": "add_task"})

    assert response.status_code == 200
    assert "?tool_name=delete_task" in response.text  # offered as a filter
    assert str(wanted.message.conversation_id) in response.text
    assert str(other.message.conversation_id) not in response.text


@pytest.mark.django_db
def test_tool_call_search_by_owner_id_finds_theirs(admin_client: Client) -> None:
    mine = ToolCallFactory.create()
    other = ToolCallFactory.create()

    response = admin_client.get(TOOL_CALLS, {"q": mine.message.conversation.owner_id})

    assert str(mine.message.conversation_id) in response.text
    assert str(other.message.conversation_id) not in response.text


@pytest.mark.django_db
def test_tool_call_page_shows_pretty_json(admin_client: Client) -> None:
    call = ToolCallFactory.create(result={"task_id": "7", "title": "ünïcode"})

    response = admin_client.get(
        reverse("admin:conversations_toolcall_change", args=[call.pk])
    )

    assert response.status_code == 200
    assert (
        "{\n  &quot;task_id&quot;: &quot;7&quot;,\n  &quot;title&quot;: "
        "&quot;ünïcode&quot;\n}"
    ) in response.text


# Counting large tables


@pytest.mark.django_db
def test_paginator_counts_a_small_unfiltered_table_exactly() -> None:
    ConversationFactory.create_batch(3)

    paginator = LargeTablePaginator(Conversation.objects.order_by("pk"), 2)

    assert paginator.count == 3
    assert paginator.is_estimate is False
    assert paginator.is_capped is False


@pytest.mark.django_db
def test_paginator_caps_a_filtered_count() -> None:
    ConversationFactory.create_batch(5, owner_id="many")

    paginator = LargeTablePaginator(
        Conversation.objects.filter(owner_id="many").order_by("pk"), 2
    )
    paginator.count_limit = 3

    assert paginator.count == 4
    assert paginator.is_capped is True
    assert paginator.num_pages == 2


@pytest.mark.django_db
@pytest.mark.parametrize("count_limit", [100, 3], ids=["by-id", "past-the-cap"])
def test_paginator_pages_a_filtered_result_in_order(count_limit: int) -> None:
    now = timezone.now()
    rows = [
        ConversationFactory.create(
            owner_id="paged", created_at=now - dt.timedelta(minutes=n)
        )
        for n in range(5)
    ]
    ConversationFactory.create(owner_id="not-paged")
    paginator = LargeTablePaginator(
        Conversation.objects.filter(owner_id="paged").order_by("-created_at"), 2
    )
    paginator.count_limit = count_limit

    # With a cap of 3, page 2 reaches past it: read by OFFSET, not by id.
    pages = [list(paginator.page(n).object_list) for n in (1, 2)]

    assert pages == [rows[0:2], rows[2:4]]


@pytest.mark.django_db
def test_changelist_says_more_than_the_cap_for_a_large_filtered_result(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LargeTablePaginator, "count_limit", 2)
    ConversationFactory.create_batch(3, owner_id="many")

    response = admin_client.get(CONVERSATIONS, {"q": "many"})

    assert "more than 2 conversations" in response.text


@pytest.mark.postgresql
@pytest.mark.django_db
def test_paginator_estimates_a_large_unfiltered_table_on_postgresql(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import connection

    ConversationFactory.create_batch(30)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE conversations")  # sets pg_class.reltuples
    monkeypatch.setattr(LargeTablePaginator, "estimate_above", 10)

    response = admin_client.get(CONVERSATIONS)

    assert response.status_code == 200
    assert "about 30 conversations (estimate)" in response.text


# Titles (CONTRACT §8)


@pytest.mark.django_db
def test_conversation_changelist_shows_titles(admin_client: Client) -> None:
    ConversationFactory.create(title="Plan the <b>week</b>")

    response = admin_client.get(CONVERSATIONS)

    assert '<td class="field-title">Plan the &lt;b&gt;week&lt;/b&gt;</td>' in (
        response.text
    )


@pytest.mark.django_db
def test_conversation_search_finds_text_in_titles(admin_client: Client) -> None:
    found = ConversationFactory.create(title="Weekly GROCERIES list")
    ConversationFactory.create(title="Taxes")

    response = admin_client.get(CONVERSATIONS, {"q": "groceries"})

    assert response.status_code == 200
    assert str(found.id) in response.text
    assert "Taxes" not in response.text


@pytest.mark.django_db
def test_conversation_page_shows_title_and_who_set_it(admin_client: Client) -> None:
    conversation = ConversationFactory.create(
        title="Renamed by me", title_set_by_user=True
    )

    response = admin_client.get(conversation_page(conversation))

    assert "Renamed by me" in response.text
    assert "Title set by user" in response.text
