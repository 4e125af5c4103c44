import json
from typing import TYPE_CHECKING

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import connection
from django.http import HttpResponse
from django.test import Client, RequestFactory

import pytest
from rest_framework.test import APIClient

from better_auth.tests.factories import BetterAuthSessionFactory
from chatapi.views import bad_request, server_error

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

NOT_FOUND = {"detail": "Not found.", "code": "not_found"}


def json_body(response: "HttpResponse | TestResponse") -> dict[str, str]:
    assert response["Content-Type"] == "application/json"
    return json.loads(response.content)


@pytest.mark.parametrize(
    "path", ["/nope", "/api/v1/nope", "/api/v1/nope/", "/api/v2/users/x/chat"]
)
def test_unknown_url_is_json_not_found(client: Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert json_body(response) == NOT_FOUND


def test_server_error_answers_json_envelope(rf: RequestFactory) -> None:
    response = server_error(rf.get("/api/v1/users/x/chat"))

    assert response.status_code == 500
    assert json_body(response) == {
        "detail": "Internal server error.",
        "code": "server_error",
    }


def test_bad_request_request_data_too_big_answers_413(rf: RequestFactory) -> None:
    response = bad_request(rf.post("/api/v1/users/x/chat"), RequestDataTooBig("big"))

    assert response.status_code == 413
    assert json_body(response) == {
        "detail": "The request body is too large.",
        "code": "request_too_large",
    }


def test_bad_request_suspicious_operation_answers_400(rf: RequestFactory) -> None:
    response = bad_request(rf.get("/"), SuspiciousOperation("odd"))

    assert response.status_code == 400
    assert json_body(response) == {"detail": "Bad request.", "code": "bad_request"}


def test_disallowed_host_is_json_bad_request(client: Client) -> None:
    response = client.get("/api/v1/users/x/conversations", HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert json_body(response) == {"detail": "Bad request.", "code": "bad_request"}


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_unreachable_database_answers_503_json_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    session = BetterAuthSessionFactory.create()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session.token}")
    url = f"/api/v1/users/{session.user_id}/conversations"
    real_port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = "9"  # nothing listens there
    try:
        down = client.get(url)
    finally:
        connection.close()
        connection.settings_dict["PORT"] = real_port

    back = client.get(url)

    assert down.status_code == 503
    assert json_body(down) == {
        "detail": "The service is briefly unavailable; try again shortly.",
        "code": "database_unavailable",
    }
    assert "Database unavailable" in caplog.text
    assert back.status_code == 200


@pytest.mark.postgresql
@pytest.mark.django_db
def test_postgresql_sessions_run_with_the_statement_timeout() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == ("15s",)
