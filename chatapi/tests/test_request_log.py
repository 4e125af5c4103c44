"""Operations: one JSON access line per request, with a request id echoed to
the client, and agent failures logged with their cause."""

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

import pytest
from pytest_django import DjangoAssertNumQueries, Settings
from rest_framework.test import APIClient

from agent.tests.fakes import SlowAgent
from better_auth.models import BetterAuthSession
from better_auth.tests.factories import BetterAuthSessionFactory, signed_token
from chatapi.logging import JsonFormatter, request_id_var
from conversations.models import Conversation, Message
from conversations.tests.paths import chat_url, latest_url

pytestmark = pytest.mark.django_db

MIDDLEWARE = "chatapi.middleware.RequestLogMiddleware"
LINE_KEYS = {
    "time",
    "level",
    "logger",
    "message",
    "request_id",
    "method",
    "route",
    "path",
    "status",
    "duration_ms",
    "user_id",
}
MADE_ID = re.compile(r"[0-9a-f]{32}")
CHAT_ROUTE = "api/v1/users/<user_id>/chat"
LATEST_ROUTE = "api/v1/users/<user_id>/conversations"


@pytest.fixture
def api(session: BetterAuthSession) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session.token}")
    return client


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Records of chatapi.request (INFO; the test settings' root is at
    WARNING)."""
    caplog.set_level(logging.INFO, logger="chatapi.request")
    return caplog


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every record at INFO and above, written as the console handler writes
    it, at the moment it is logged."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    request_logger = logging.getLogger("chatapi.request")
    levels = root.level, request_logger.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    request_logger.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(levels[0])
    request_logger.setLevel(levels[1])


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def access_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [line for line in lines(stream) if line["logger"] == "chatapi.request"]


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "chatapi.request"]


def the_access_record(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    records = access_records(caplog)
    assert len(records) == 1
    return records[0]


# --- the access line -----------------------------------------------------


def test_request_log_line_has_every_field(
    api: APIClient, session: BetterAuthSession, json_log: io.StringIO
) -> None:
    response = api.get(f"{latest_url(session.user_id)}?secret=query")

    [line] = access_lines(json_log)
    assert set(line) == LINE_KEYS
    assert line["level"] == "INFO"
    assert line["request_id"] == response["X-Request-ID"]
    assert MADE_ID.fullmatch(line["request_id"])
    assert line["method"] == "GET"
    assert line["route"] == LATEST_ROUTE
    assert line["path"] == f"/api/v1/users/{session.user_id}/conversations"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] >= 0
    assert line["user_id"] == session.user_id
    assert line["message"] == f"GET {LATEST_ROUTE} 200"
    assert "secret=query" not in json_log.getvalue()


def test_request_log_record_fields_for_chat(
    api: APIClient, session: BetterAuthSession, access: pytest.LogCaptureFixture
) -> None:
    response = api.post(chat_url(session.user_id), {"message": "hi"}, format="json")

    record = the_access_record(access)
    assert response.status_code == 200
    assert record.levelno == logging.INFO
    assert record.method == "POST"  # type: ignore[attr-defined]
    assert record.route == CHAT_ROUTE  # type: ignore[attr-defined]
    assert record.status == 200  # type: ignore[attr-defined]
    assert record.user_id == session.user_id  # type: ignore[attr-defined]
    assert record.request_id == response["X-Request-ID"]  # type: ignore[attr-defined]


def test_request_log_route_of_trailing_slash_is_the_same_pattern(
    api: APIClient, session: BetterAuthSession, access: pytest.LogCaptureFixture
) -> None:
    api.get(f"{latest_url(session.user_id)}/")

    record = the_access_record(access)
    assert record.route == LATEST_ROUTE  # type: ignore[attr-defined]
    assert record.path.endswith("/conversations/")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "given",
    ["abc", "a" * 200, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "req:1/2?x=y&z=~!"],
    ids=["short", "200-chars", "uuid", "punctuation"],
)
def test_request_log_uses_and_echoes_a_valid_client_request_id(
    api: APIClient,
    session: BetterAuthSession,
    access: pytest.LogCaptureFixture,
    given: str,
) -> None:
    response = api.get(latest_url(session.user_id), HTTP_X_REQUEST_ID=given)

    assert response["X-Request-ID"] == given
    assert the_access_record(access).request_id == given  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "given",
    ["", "a" * 201, "has space", "tab\there", "new\nline", "caf\u00e9", "del\x7f"],
    ids=["empty", "201-chars", "space", "tab", "newline", "non-ascii", "control"],
)
def test_request_log_makes_an_id_for_an_invalid_client_request_id(
    api: APIClient,
    session: BetterAuthSession,
    access: pytest.LogCaptureFixture,
    given: str,
) -> None:
    response = api.get(latest_url(session.user_id), HTTP_X_REQUEST_ID=given)

    made = response["X-Request-ID"]
    assert MADE_ID.fullmatch(made)
    assert the_access_record(access).request_id == made  # type: ignore[attr-defined]


def test_request_log_makes_a_new_id_for_every_request(
    api: APIClient, session: BetterAuthSession, access: pytest.LogCaptureFixture
) -> None:
    ids = {api.get(latest_url(session.user_id))["X-Request-ID"] for _ in range(3)}

    assert len(ids) == 3
    assert {r.request_id for r in access_records(access)} == ids  # type: ignore[attr-defined]


def test_request_log_writes_one_line_per_request(
    api: APIClient, session: BetterAuthSession, json_log: io.StringIO
) -> None:
    api.get(latest_url(session.user_id))
    api.post(chat_url(session.user_id), {"message": "hi"}, format="json")
    api.get("/nope")
    APIClient().get(latest_url(session.user_id))

    assert [(line["method"], line["status"]) for line in access_lines(json_log)] == [
        ("GET", 200),
        ("POST", 200),
        ("GET", 404),
        ("GET", 401),
    ]


def test_request_log_unauthenticated_request_has_no_user(
    session: BetterAuthSession, access: pytest.LogCaptureFixture
) -> None:
    response = APIClient().get(latest_url(session.user_id))

    record = the_access_record(access)
    assert response.status_code == 401
    assert record.status == 401  # type: ignore[attr-defined]
    assert record.user_id is None  # type: ignore[attr-defined]
    assert record.route == LATEST_ROUTE  # type: ignore[attr-defined]


def test_request_log_refused_token_has_no_user(
    session: BetterAuthSession, access: pytest.LogCaptureFixture
) -> None:
    APIClient().get(
        latest_url(session.user_id), HTTP_AUTHORIZATION="Bearer " + "x" * 32
    )

    record = the_access_record(access)
    assert record.status == 401  # type: ignore[attr-defined]
    assert record.user_id is None  # type: ignore[attr-defined]


def test_request_log_unknown_url_logs_the_path_as_route(
    access: pytest.LogCaptureFixture,
) -> None:
    Client().get("/api/v1/nope/deeper?token=abc")

    record = the_access_record(access)
    assert record.status == 404  # type: ignore[attr-defined]
    assert record.route == "/api/v1/nope/deeper"  # type: ignore[attr-defined]
    assert record.path == "/api/v1/nope/deeper"  # type: ignore[attr-defined]
    assert record.user_id is None  # type: ignore[attr-defined]


def test_request_log_bounds_a_huge_path(access: pytest.LogCaptureFixture) -> None:
    Client().get("/" + "x" * 10_000)

    record = the_access_record(access)
    assert record.status == 404  # type: ignore[attr-defined]
    assert record.path == "/" + "x" * 999  # type: ignore[attr-defined]
    assert len(record.route) == 1000  # type: ignore[attr-defined]


def test_request_log_admin_is_logged_without_api_user(
    access: pytest.LogCaptureFixture, django_user_model: type[AbstractBaseUser]
) -> None:
    staff = django_user_model.objects.create_superuser(  # type: ignore[attr-defined]
        username="ops", email="ops@example.com", password="unused"
    )
    client = Client()
    client.force_login(staff)

    response = client.get("/admin/")

    record = the_access_record(access)
    assert response.status_code == 200
    assert record.route == "admin/"  # type: ignore[attr-defined]
    assert record.user_id is None  # type: ignore[attr-defined]


# --- statuses ------------------------------------------------------------


def other_user(api: APIClient, session: BetterAuthSession) -> Any:
    return api.get(latest_url("someone-else"))


def wrong_method(api: APIClient, session: BetterAuthSession) -> Any:
    return api.get(chat_url(session.user_id))


def bad_body(api: APIClient, session: BetterAuthSession) -> Any:
    return api.post(chat_url(session.user_id), b"[[[", content_type="text/plain")


def server_error(api: APIClient, session: BetterAuthSession) -> Any:
    return api.post(chat_url(session.user_id), {"message": "hi"}, format="json")


def throttled(api: APIClient, session: BetterAuthSession) -> Any:
    api.get(latest_url(session.user_id))
    return api.get(latest_url(session.user_id))


def agent_failure(api: APIClient, session: BetterAuthSession) -> Any:
    return api.post(chat_url(session.user_id), {"message": "hi"}, format="json")


@pytest.mark.parametrize(
    ("send", "setting", "value", "status", "route"),
    [
        (other_user, None, None, 404, LATEST_ROUTE),
        (wrong_method, None, None, 405, CHAT_ROUTE),
        (bad_body, None, None, 415, CHAT_ROUTE),
        (throttled, "RATE_LIMIT_READ", "1/day", 429, LATEST_ROUTE),
        # A misconfigured limit: an unexpected exception in the view.
        (server_error, "CHAT_MAX_MESSAGE_CHARS", None, 500, CHAT_ROUTE),
        (
            agent_failure,
            "AGENT_BACKEND",
            "agent.tests.fakes.FailingAgent",
            502,
            CHAT_ROUTE,
        ),
    ],
    ids=["404", "405", "415", "429", "500", "502"],
)
def test_request_log_records_the_status_of_failures(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    access: pytest.LogCaptureFixture,
    send: Any,
    setting: str | None,
    value: Any,
    status: int,
    route: str,
) -> None:
    if setting:
        setattr(settings, setting, value)

    response = send(api, session)

    record = access_records(access)[-1]
    assert response.status_code == status
    assert record.status == status  # type: ignore[attr-defined]
    assert record.route == route  # type: ignore[attr-defined]
    assert record.user_id == session.user_id  # type: ignore[attr-defined]
    assert record.request_id == response["X-Request-ID"]  # type: ignore[attr-defined]


# --- no secrets ----------------------------------------------------------


def credential_forms(session: BetterAuthSession) -> dict[str, dict[str, str]]:
    signed = signed_token(session)
    return {
        "raw bearer": {"Authorization": f"Bearer {session.token}"},
        "signed bearer": {"Authorization": f"Bearer {quote(signed)}"},
        "cookie": {"Cookie": f"better-auth.session_token={quote(signed)}"},
    }


@pytest.mark.parametrize("form", ["raw bearer", "signed bearer", "cookie"])
@pytest.mark.parametrize("valid", [True, False], ids=["valid", "expired"])
def test_request_log_carries_no_token(
    json_log: io.StringIO, form: str, valid: bool
) -> None:
    session = BetterAuthSessionFactory.create(expired=not valid)
    headers = credential_forms(session)[form]

    response = APIClient().get(latest_url(session.user_id), headers=headers)

    written = json_log.getvalue()
    [line] = access_lines(json_log)
    assert response.status_code == (200 if valid else 401)
    assert line["user_id"] == (session.user_id if valid else None)
    signed = signed_token(session)
    for secret in (session.token, signed, quote(signed), signed.rpartition(".")[2]):
        assert secret not in written


def test_request_log_django_request_warning_is_json_without_the_request(
    session: BetterAuthSession, json_log: io.StringIO
) -> None:
    """Django's own 4xx warning still comes out, as JSON, and the HttpRequest
    it carries (headers, cookies) is not written."""
    signed = signed_token(session)
    BetterAuthSession.objects.filter(pk=session.pk).delete()

    APIClient().get(
        latest_url(session.user_id),
        HTTP_AUTHORIZATION=f"Bearer {session.token}",
        HTTP_COOKIE=f"better-auth.session_token={quote(signed)}",
    )

    [warning] = [line for line in lines(json_log) if line["logger"] == "django.request"]
    assert warning["level"] == "WARNING"
    assert warning["message"].startswith("Unauthorized: /api/v1/users/")
    assert warning["status_code"] == 401
    assert "request" not in warning
    assert warning["request_id"] == access_lines(json_log)[0]["request_id"]
    assert session.token not in json_log.getvalue()
    assert quote(signed) not in json_log.getvalue()


# --- cost ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("authenticated", "path"),
    [(True, None), (False, None), (False, "/nope"), (False, "/healthz")],
    ids=["api-user", "anonymous", "unknown-url", "health"],
)
def test_request_log_adds_no_query(
    session: BetterAuthSession,
    settings: Settings,
    access: pytest.LogCaptureFixture,
    django_assert_num_queries: DjangoAssertNumQueries,
    django_user_model: type[AbstractBaseUser],
    authenticated: bool,
    path: str | None,
) -> None:
    """Also with Django's session cookie of a staff user: where no view reads
    Django's lazy user, the log does not load it either."""
    staff = django_user_model.objects.create_superuser(  # type: ignore[attr-defined]
        username="ops", email="ops@example.com", password="unused"
    )
    url = path or latest_url(session.user_id)
    logged_in = APIClient()
    logged_in.force_login(staff)

    def client() -> APIClient:
        # A new client loads the middleware as the settings are now.
        fresh = APIClient()
        fresh.cookies = logged_in.cookies
        if authenticated:
            fresh.credentials(HTTP_AUTHORIZATION=f"Bearer {session.token}")
        return fresh

    full = settings.MIDDLEWARE
    settings.MIDDLEWARE = [m for m in full if m != MIDDLEWARE]
    without_log = client()
    with CaptureQueriesContext(connection) as without:
        without_log.get(url)
    assert access_records(access) == []
    settings.MIDDLEWARE = full
    with_log = client()

    with django_assert_num_queries(len(without)):
        with_log.get(url)

    assert len(access_records(access)) == 1


def test_request_log_middleware_is_first() -> None:
    from django.conf import settings

    assert settings.MIDDLEWARE[0] == MIDDLEWARE


# --- the formatter -------------------------------------------------------


def make_record(**extra: Any) -> logging.LogRecord:
    record = logging.LogRecord(
        "x.y", logging.WARNING, __file__, 1, "a %s", ("b",), None
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_formatter_writes_one_line_of_plain_fields() -> None:
    record = make_record(
        count=3,
        ratio=0.5,
        flag=True,
        none=None,
        text="line\nbreak",
        request=object(),
        items=[1, 2],
        nan=float("nan"),
    )

    written = JsonFormatter().format(record)

    assert "\n" not in written
    entry = json.loads(written)
    assert set(entry) == {
        "time",
        "level",
        "logger",
        "message",
        "count",
        "ratio",
        "flag",
        "none",
        "text",
    }
    assert entry["message"] == "a b"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "x.y"
    assert entry["time"].endswith("+00:00")
    assert entry["text"] == "line\nbreak"


def test_json_formatter_adds_the_current_request_id() -> None:
    token = request_id_var.set("req-42")
    try:
        entry = json.loads(JsonFormatter().format(make_record()))
    finally:
        request_id_var.reset(token)

    assert entry["request_id"] == "req-42"
    assert "request_id" not in json.loads(JsonFormatter().format(make_record()))


def test_json_formatter_writes_the_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info()
        )

    entry = json.loads(JsonFormatter().format(record))

    assert entry["exception"].startswith("Traceback")
    assert "ValueError: boom" in entry["exception"]


# --- agent failures ------------------------------------------------------


@pytest.fixture
def slow_agent() -> Iterator[type[SlowAgent]]:
    SlowAgent.reset()
    yield SlowAgent
    SlowAgent.finished.wait(5)
    SlowAgent.reset()


@pytest.mark.parametrize("agent", ["failing", "slow"])
def test_agent_failure_is_logged_with_cause_user_and_conversation(
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    json_log: io.StringIO,
    slow_agent: type[SlowAgent],
    agent: str,
) -> None:
    content = "add buy milk and my private note"
    if agent == "failing":
        settings.AGENT_BACKEND = "agent.tests.fakes.FailingAgent"
    else:
        settings.AGENT_BACKEND = "agent.tests.fakes.SlowAgent"
        settings.AGENT_TIMEOUT_SECONDS = 0.1
        slow_agent.delay = 0.3

    response = api.post(chat_url(session.user_id), {"message": content}, format="json")

    conversation = Conversation.objects.get(owner_id=session.user_id)
    message = Message.objects.get(conversation=conversation)
    [access_line] = access_lines(json_log)
    [runner] = [line for line in lines(json_log) if line["logger"] == "agent.runner"]
    [service] = [
        line for line in lines(json_log) if line["logger"] == "conversations.services"
    ]
    assert service["level"] == "WARNING"
    assert service["conversation_id"] == str(conversation.id)
    assert service["user_id"] == session.user_id
    assert service["user_message_id"] == str(message.id)
    assert str(conversation.id) in service["message"]
    if agent == "failing":
        assert response.status_code == 502
        assert service["error"] == "agent_error"
        assert service["cause"] == "RuntimeError"
        assert "model unavailable" in service["message"]
        assert runner["level"] == "ERROR"
        assert "RuntimeError: model unavailable" in runner["exception"]
    else:
        assert response.status_code == 504
        assert service["error"] == "agent_timeout"
        assert service["cause"] is None
        assert runner["level"] == "WARNING"
        assert "timed out after 0.1s" in runner["message"]
    # The failure's lines join the access line through the request id.
    assert runner["request_id"] == service["request_id"] == access_line["request_id"]
    assert access_line["status"] == response.status_code
    # The message is user data: never in the log.
    assert content not in json_log.getvalue()
