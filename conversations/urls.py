"""API routes. Canonical paths have no trailing slash; the same path with a
slash is served too, without a redirect."""

from django.urls import re_path

from conversations import views

app_name = "conversations"

USER = r"^users/(?P<user_id>[^/]+)"

urlpatterns = [
    re_path(rf"{USER}/chat/?$", views.ChatView.as_view(), name="chat"),
    re_path(
        rf"{USER}/chat/stream/?$", views.ChatStreamView.as_view(), name="chat-stream"
    ),
    re_path(
        rf"{USER}/chat/stream/(?P<conversation_id>[^/]+)/stream/?$",
        views.ChatStreamResumeView.as_view(),
        name="chat-stream-resume",
    ),
    re_path(
        rf"{USER}/conversations/?$",
        views.ConversationLatestView.as_view(),
        name="conversation-latest",
    ),
    # Before the detail route, whose id would match "list".
    re_path(
        rf"{USER}/conversations/list/?$",
        views.ConversationListView.as_view(),
        name="conversation-list",
    ),
    re_path(
        rf"{USER}/conversations/(?P<conversation_id>[^/]+)/?$",
        views.ConversationDetailView.as_view(),
        name="conversation-detail",
    ),
    re_path(
        rf"{USER}/conversations/(?P<conversation_id>[^/]+)/messages/?$",
        views.MessageListView.as_view(),
        name="message-list",
    ),
]
