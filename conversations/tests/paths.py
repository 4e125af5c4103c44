"""The API's paths, for tests that call it (reversed from the URL names)."""

from typing import Any

from django.urls import reverse


def chat_url(user_id: str) -> str:
    return reverse("conversations:chat", args=[user_id])


def latest_url(user_id: str) -> str:
    return reverse("conversations:conversation-latest", args=[user_id])


def messages_url(user_id: str, conversation_id: Any) -> str:
    return reverse("conversations:message-list", args=[user_id, str(conversation_id)])


def list_url(user_id: str) -> str:
    return reverse("conversations:conversation-list", args=[user_id])


def conversation_url(user_id: str, conversation_id: Any) -> str:
    return reverse(
        "conversations:conversation-detail", args=[user_id, str(conversation_id)]
    )


def stream_url(user_id: str) -> str:
    return reverse("conversations:chat-stream", args=[user_id])


def resume_url(user_id: str, conversation_id: Any) -> str:
    return reverse(
        "conversations:chat-stream-resume", args=[user_id, str(conversation_id)]
    )
