import json
import uuid

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import FileResponse
from django.test import Client
from django.urls import reverse

import pytest

from chatapi.views import bad_request, server_error
from conversations.models import Conversation
from conversations.tests.factories import ConversationFactory, MessageFactory

NOT_FOUND = {"detail": "Not found.", "code": "not_found"}


def json_body(response) -> dict[str, str]:
    assert response["Content-Type"] == "application/json"
    return json.loads(response.content)


@pytest.mark.parametrize(
    "path", ["/nope", "/api/v1/nope", "/api/v1/nope/", "/api/v2/users/x/chat"]
)
def test_unknown_url_is_json_not_found(client: Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert json_body(response) == NOT_FOUND


def test_server_error_answers_json_envelope(rf) -> None:
    response = server_error(rf.get("/api/v1/users/x/chat"))

    assert response.status_code == 500
    assert json_body(response) == {
        "detail": "Internal server error.",
        "code": "server_error",
    }


def test_bad_request_request_data_too_big_answers_413(rf) -> None:
    response = bad_request(rf.post("/api/v1/users/x/chat"), RequestDataTooBig("big"))

    assert response.status_code == 413
    assert json_body(response) == {
        "detail": "The request body is too large.",
        "code": "request_too_large",
    }


def test_bad_request_suspicious_operation_answers_400(rf) -> None:
    response = bad_request(rf.get("/"), SuspiciousOperation("odd"))

    assert response.status_code == 400
    assert json_body(response) == {"detail": "Bad request.", "code": "bad_request"}


def test_disallowed_host_is_json_bad_request(client: Client) -> None:
    response = client.get("/api/v1/users/x/conversations", HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert json_body(response) == {"detail": "Bad request.", "code": "bad_request"}


def test_admin_login_page_renders_html(client: Client) -> None:
    response = client.get("/admin/login/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"<form" in response.content


@pytest.mark.django_db
def test_admin_conversation_changelist_opens_for_superuser(
    admin_client: Client,
) -> None:
    conversation = ConversationFactory.create()

    response = admin_client.get(reverse("admin:conversations_conversation_changelist"))

    assert response.status_code == 200
    assert str(conversation.id) in response.text
    assert conversation.owner_id in response.text


@pytest.mark.django_db
def test_admin_conversation_change_page_shows_messages_in_sequence_order(
    admin_client: Client,
) -> None:
    conversation = ConversationFactory.create()
    for sequence in (3, 1, 2):
        MessageFactory.create(
            conversation=conversation,
            sequence=sequence,
            id=uuid.UUID(int=10 - sequence),
            content=f"content-of-message-{sequence}",
        )

    response = admin_client.get(
        reverse("admin:conversations_conversation_change", args=[conversation.pk])
    )

    assert response.status_code == 200
    positions = [
        response.text.index(f"content-of-message-{sequence}") for sequence in (1, 2, 3)
    ]
    assert positions == sorted(positions)


@pytest.mark.django_db
def test_admin_conversation_search_by_owner_id_finds_only_theirs(
    admin_client: Client,
) -> None:
    mine = ConversationFactory.create()
    other = ConversationFactory.create()

    response = admin_client.get(
        reverse("admin:conversations_conversation_changelist"), {"q": mine.owner_id}
    )

    assert response.status_code == 200
    assert str(mine.id) in response.text
    assert str(other.id) not in response.text


@pytest.mark.django_db
def test_admin_conversation_search_by_conversation_id_finds_it(
    admin_client: Client,
) -> None:
    wanted = ConversationFactory.create()
    other = ConversationFactory.create()

    response = admin_client.get(
        reverse("admin:conversations_conversation_changelist"), {"q": str(wanted.id)}
    )

    assert response.status_code == 200
    assert str(wanted.id) in response.text
    assert str(other.id) not in response.text


@pytest.mark.django_db
@pytest.mark.parametrize(
    "term",
    ["' OR 1=1 --", "%", "_", "\\", "x" * 5000, "\x00", "00000000-0000", "   "],
    ids=["sql", "percent", "underscore", "backslash", "long", "nul", "uuid-ish", "ws"],
)
def test_admin_conversation_search_garbage_term_does_not_fail(
    admin_client: Client, term: str
) -> None:
    ConversationFactory.create()

    response = admin_client.get(
        reverse("admin:conversations_conversation_changelist"), {"q": term}
    )

    assert response.status_code == 200
    assert Conversation.objects.count() == 1


def test_admin_static_file_is_served_with_debug_off(client: Client, settings) -> None:
    assert settings.DEBUG is False

    response = client.get("/static/admin/css/base.css")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert isinstance(response, FileResponse)
    assert b".module" in b"".join(response.streaming_content)
