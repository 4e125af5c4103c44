"""Support staff's view of conversations. History is evidence: read-only.

Every page runs a fixed number of queries, however many rows it shows, and
no changelist counts a large table (LargeTablePaginator).
"""

import json
import uuid
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.core.paginator import Page, Paginator
from django.db import connections
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from better_auth.models import BetterAuthUser
from conversations import postgres
from conversations.models import Conversation, Message, ToolCall
from conversations.support import pretty_json, transcript_entries, users_with_email

# The change page shows at most this many messages, the newest.
TRANSCRIPT_LIMIT = 500


class LargeTablePaginator(Paginator):
    """Pages without counting millions of rows.

    Unfiltered, on PostgreSQL past `estimate_above` rows: the planner's row
    estimate (pg_class.reltuples). Filtered: the ids of the first
    `count_limit` matches, in order, then "more than that"; their pages are
    read by id, so a filter that scans the table (a content search) scans
    it once, not twice.
    """

    estimate_above = 100_000
    count_limit = 10_000
    is_estimate = False
    is_capped = False
    _first_ids: list[Any] | None = None

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if not isinstance(rows, QuerySet):
            return len(rows)
        if not rows.query.where:
            estimate = (
                postgres.table_row_estimate(rows.model, using=rows.db)
                if connections[rows.db].vendor == "postgresql"
                else None
            )
            if estimate is not None and estimate > self.estimate_above:
                self.is_estimate = True
                return estimate
            return rows.count()
        self._first_ids = list(
            rows.values_list("pk", flat=True)[: self.count_limit + 1]
        )
        self.is_capped = len(self._first_ids) > self.count_limit
        return len(self._first_ids)

    def page(self, number: int | str) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        rows = self.object_list
        if (
            self._first_ids is None
            or top > self.count_limit
            or not isinstance(rows, QuerySet)
        ):
            return super().page(number)
        return Page(rows.filter(pk__in=self._first_ids[bottom:top]), number, self)


def _search_term(search_term: str) -> str:
    # PostgreSQL text cannot hold NUL: such a term would be a database error.
    return search_term.replace("\x00", "").strip()


def _uuid_or_none(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term)
    except ValueError:
        return None


def _change_link(obj: Conversation | Message, text: object) -> SafeString:
    url = reverse(f"admin:conversations_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text)


def _conversation_link(conversation_id: uuid.UUID) -> SafeString:
    url = reverse("admin:conversations_conversation_change", args=[conversation_id])
    return format_html('<a href="{}">{}</a>', url, conversation_id)


def _compact_json(value: object, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable by staff with the view permission; nobody adds, changes or
    deletes history here (erasure: `manage.py delete_user_data`)."""

    paginator = LargeTablePaginator
    show_full_result_count = False
    # Facet counts run a COUNT per filter choice over the whole table.
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 100

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "title",
        "owner_id",
        "owner_email",
        "message_count",
        "created_at",
        "updated_at",
    )
    # Only indexed columns: sorting millions of rows by anything else scans.
    sortable_by = ("created_at", "updated_at")
    ordering = ("-created_at",)
    list_filter = ("created_at", "updated_at")
    search_fields = ("owner_id",)
    search_help_text = (
        "Exact owner id, owner email or conversation id, or text in the title "
        "(a scan: slower on a large table)."
    )
    fields = (
        "id",
        "title",
        "title_set_by_user",
        "owner",
        "message_count",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        # The owner's email in the same query (one indexed lookup per row
        # shown), not one query per row.
        email = BetterAuthUser.objects.filter(pk=OuterRef("owner_id")).values("email")
        return (
            super()
            .get_queryset(request)
            .annotate(owner_email_value=Subquery(email[:1]))
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str
    ) -> tuple[QuerySet[Conversation], bool]:
        term = _search_term(search_term)
        if not term:
            return queryset, False
        # Owner ids first (one indexed query), so that the conversations are
        # found through indexes too.
        owner_ids = [term]
        if "@" in term:
            owner_ids += users_with_email(term).values_list("id", flat=True)
        match = Q(owner_id__in=owner_ids) | Q(title__icontains=term)
        conversation_id = _uuid_or_none(term)
        if conversation_id is not None:
            match |= Q(pk=conversation_id)
        return queryset.filter(match), False

    @admin.display(description="owner email")
    def owner_email(self, obj: Conversation) -> str | None:
        return obj.owner_email_value  # type: ignore[attr-defined]

    @admin.display(description="owner")
    def owner(self, obj: Conversation) -> SafeString:
        url = reverse("admin:conversations_conversation_changelist")
        email = self.owner_email(obj) or "no Better Auth user"
        return format_html(
            '{} &lt;{}&gt; · <a href="{}?{}">all their conversations</a>',
            obj.owner_id,
            email,
            url,
            urlencode({"q": obj.owner_id}),
        )

    @admin.display(description="messages")
    def message_count(self, obj: Conversation) -> int:
        # last_sequence: messages are numbered 1, 2, 3… and never deleted
        # one by one, so no COUNT per row.
        return obj.last_sequence

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Conversation | None = None,
    ) -> HttpResponse | TemplateResponse:
        if obj is not None:
            context["transcript"] = transcript_entries(obj, last=TRANSCRIPT_LIMIT)
            context["transcript_truncated"] = obj.last_sequence > TRANSCRIPT_LIMIT
            context["messages_url"] = (
                reverse("admin:conversations_message_changelist") + f"?q={obj.pk}"
            )
        return super().render_change_form(
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "role",
        "excerpt",
        "conversation_link",
        "sequence",
        "owner_id",
        "model",
        "tokens",
    )
    list_select_related = ("conversation",)
    sortable_by = ("created_at",)
    ordering = ("-created_at",)
    list_filter = ("role", "created_at")
    search_fields = ("content",)
    search_help_text = (
        "Text in the content (a scan: slower on a large table), or a message "
        "or conversation id."
    )
    fields = (
        "id",
        "conversation_link",
        "owner_id",
        "sequence",
        "role",
        "created_at",
        "reply_to_link",
        "content",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "tool_calls_display",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).select_related("conversation")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Message], search_term: str
    ) -> tuple[QuerySet[Message], bool]:
        term = _search_term(search_term)
        if not term:
            return queryset, False
        some_id = _uuid_or_none(term)
        if some_id is not None:
            return queryset.filter(Q(pk=some_id) | Q(conversation_id=some_id)), False
        return queryset.filter(content__icontains=term), False

    @admin.display(description="content")
    def excerpt(self, obj: Message) -> str:
        text = " ".join(obj.content.split())
        return text if len(text) <= 120 else text[:119] + "…"

    @admin.display(description="tokens (prompt + completion)")
    def tokens(self, obj: Message) -> str:
        if obj.prompt_tokens is None and obj.completion_tokens is None:
            return "-"
        return " + ".join(
            "?" if count is None else str(count)
            for count in (obj.prompt_tokens, obj.completion_tokens)
        )

    @admin.display(description="conversation")
    def conversation_link(self, obj: Message) -> SafeString:
        return _conversation_link(obj.conversation_id)

    @admin.display(description="owner id")
    def owner_id(self, obj: Message) -> str:
        return obj.conversation.owner_id

    @admin.display(description="reply to")
    def reply_to_link(self, obj: Message) -> SafeString | str:
        if obj.reply_to_id is None:
            return "-"
        url = reverse("admin:conversations_message_change", args=[obj.reply_to_id])
        return format_html('<a href="{}">{}</a>', url, obj.reply_to_id)

    @admin.display(description="tool calls")
    def tool_calls_display(self, obj: Message) -> SafeString | str:
        calls = list(obj.tool_calls.order_by("position"))
        if not calls:
            return "-"
        return format_html_join(
            "",
            '<div class="tool-call status-{}"><p><a href="{}">{}</a>: {}</p>'
            "<p>Parameters</p><pre>{}</pre><p>Result</p><pre>{}</pre></div>",
            (
                (
                    call.status,
                    reverse("admin:conversations_toolcall_change", args=[call.pk]),
                    call.tool_name,
                    call.get_status_display(),
                    pretty_json(call.parameters),
                    pretty_json(call.result),
                )
                for call in calls
            ),
        )


class ToolNameFilter(admin.SimpleListFilter):
    """The tool names of the latest calls: no DISTINCT over the whole table."""

    title = "tool name"
    parameter_name = "tool_name"
    sample_size = 1000

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> list[tuple[str, str]]:
        recent = ToolCall.objects.order_by("-created_at", "-id").values_list(
            "tool_name", flat=True
        )[: self.sample_size]
        names = set(recent)
        if self.value():
            names.add(str(self.value()))
        return [(name, name) for name in sorted(names)]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[ToolCall]
    ) -> QuerySet[ToolCall]:
        if self.value():
            return queryset.filter(tool_name=self.value())
        return queryset


@admin.register(ToolCall)
class ToolCallAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "tool_name",
        "status_label",
        "conversation_link",
        "owner_id",
        "parameters_excerpt",
        "result_excerpt",
    )
    list_select_related = ("message__conversation",)
    sortable_by = ("created_at",)
    ordering = ("-created_at",)
    list_filter = ("status", ToolNameFilter, "created_at")
    # Shows the search box; get_search_results decides what a term matches.
    search_fields = ("message__conversation__owner_id",)
    search_help_text = "Exact owner id, or a tool call, message or conversation id."
    fields = (
        "id",
        "tool_name",
        "status_label",
        "created_at",
        "conversation_link",
        "message_link",
        "owner_id",
        "position",
        "parameters_pretty",
        "result_pretty",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[ToolCall]:
        # The message's content is not shown here, and can be long.
        return (
            super()
            .get_queryset(request)
            .select_related("message__conversation")
            .defer("message__content")
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ToolCall], search_term: str
    ) -> tuple[QuerySet[ToolCall], bool]:
        term = _search_term(search_term)
        if not term:
            return queryset, False
        some_id = _uuid_or_none(term)
        match = Q(message__conversation__owner_id=term)
        if some_id is not None:
            match |= (
                Q(pk=some_id)
                | Q(message_id=some_id)
                | Q(message__conversation_id=some_id)
            )
        return queryset.filter(match), False

    @admin.display(description="status")
    def status_label(self, obj: ToolCall) -> SafeString:
        return format_html(
            '<span class="toolcall-status status-{}">{}</span>',
            obj.status,
            obj.get_status_display(),
        )

    @admin.display(description="conversation")
    def conversation_link(self, obj: ToolCall) -> SafeString:
        return _conversation_link(obj.message.conversation_id)

    @admin.display(description="message")
    def message_link(self, obj: ToolCall) -> SafeString:
        return _change_link(obj.message, f"#{obj.message.sequence} {obj.message_id}")

    @admin.display(description="owner id")
    def owner_id(self, obj: ToolCall) -> str:
        return obj.message.conversation.owner_id

    @admin.display(description="parameters")
    def parameters_excerpt(self, obj: ToolCall) -> str:
        return _compact_json(obj.parameters)

    @admin.display(description="result")
    def result_excerpt(self, obj: ToolCall) -> str:
        return _compact_json(obj.result)

    @admin.display(description="parameters")
    def parameters_pretty(self, obj: ToolCall) -> SafeString:
        return format_html("<pre>{}</pre>", pretty_json(obj.parameters))

    @admin.display(description="result")
    def result_pretty(self, obj: ToolCall) -> SafeString:
        return format_html("<pre>{}</pre>", pretty_json(obj.result))
