"""The OpenAPI schema at /api/schema/ and its docs page at /api/docs/.

The schema says what CONTRACT says, and the API's real answers agree with
it: every status an operation can give is documented, and the body and
headers of each answer a test can produce validate against the schema
(OpenAPI 3.0 turned into JSON Schema, checked with jsonschema).
"""

import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from django.db.migrations.recorder import MigrationRecorder
from django.http import FileResponse
from django.test import Client
from django.utils import timezone

import pytest
from drf_spectacular.validation import validate_schema
from jsonschema import (  # type: ignore[import-untyped]
    Draft4Validator,
    FormatChecker,
    ValidationError,
)
from pytest_django import Settings
from rest_framework.test import APIClient

from agent.tests.fakes import RecordingAgent, SlowAgent, StreamingAgent
from better_auth.models import BetterAuthSession
from better_auth.tests.factories import BetterAuthSessionFactory, signed_token
from chatapi.health import ReadyView
from conversations.idempotency import request_fingerprint
from conversations.models import IdempotencyKey, Message
from conversations.tests.factories import ConversationFactory, MessageFactory

CHAT = "/api/v1/users/{user_id}/chat"
LATEST = "/api/v1/users/{user_id}/conversations"
MESSAGES = "/api/v1/users/{user_id}/conversations/{conversation_id}/messages"
LIST = "/api/v1/users/{user_id}/conversations/list"
DETAIL = "/api/v1/users/{user_id}/conversations/{conversation_id}"
STREAM = "/api/v1/users/{user_id}/chat/stream"
RESUME = "/api/v1/users/{user_id}/chat/stream/{conversation_id}/stream"
EVENT_STREAM = "text/event-stream"
SECURED: list[dict[str, list[str]]] = [
    {"jwtBearer": []},
    {"sessionBearer": []},
    {"sessionCookie": []},
]
FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    """ISO 8601 with a UTC offset, as CONTRACT §2 promises."""
    if not isinstance(value, str) or "T" not in value:
        return not isinstance(value, str)
    return dt.datetime.fromisoformat(value).tzinfo is not None


def fetch_schema(client: Client | None = None) -> dict[str, Any]:
    response = (client or Client()).get("/api/schema/?format=json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.oai.openapi+json"
    document: dict[str, Any] = response.json()
    return document


@pytest.fixture
def openapi() -> dict[str, Any]:
    return fetch_schema()


@pytest.fixture(autouse=True)
def _fresh_fakes_and_probe() -> Iterator[None]:
    RecordingAgent.reset()
    SlowAgent.reset()
    ReadyView.migrated = False
    yield
    RecordingAgent.reset()
    SlowAgent.reset()
    ReadyView.migrated = False


def json_schema(node: Any, components: dict[str, Any]) -> Any:
    """An OpenAPI 3.0 schema as plain JSON Schema: `$ref`s inlined (the
    schema has no cycles) and `nullable` as an alternative of null."""
    if isinstance(node, list):
        return [json_schema(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/components/schemas/")
        return json_schema(components[name], components)
    converted = {
        key: json_schema(value, components)
        for key, value in node.items()
        if key != "nullable"
    }
    if node.get("nullable") is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def validate(instance: Any, schema: dict[str, Any], openapi: dict[str, Any]) -> None:
    components = openapi["components"]["schemas"]
    Draft4Validator(json_schema(schema, components), format_checker=FORMATS).validate(
        instance
    )


def assert_conforms(
    openapi: dict[str, Any], path: str, method: str, response: Any
) -> None:
    """`response` is one the schema documents for `method path`: its status,
    content type, body and headers."""
    operation = openapi["paths"][path][method]
    documented = operation["responses"].get(str(response.status_code))
    assert documented is not None, (
        f"{method.upper()} {path}: {response.status_code} is not documented"
    )
    if response.status_code == 204:
        assert "content" not in documented
        assert not response.content
    elif response.get("Content-Type") == EVENT_STREAM:
        assert list(documented["content"]) == [EVENT_STREAM]
        assert b"".join(response.streaming_content).endswith(b"data: [DONE]\n\n")
    else:
        assert response["Content-Type"] == "application/json"
        validate(
            response.json(),
            documented["content"]["application/json"]["schema"],
            openapi,
        )
    for name, header in documented.get("headers", {}).items():
        if name not in response.headers:
            assert not header.get("required"), f"{name} header missing"
            continue
        value: Any = response.headers[name]
        if header["schema"]["type"] == "integer":
            assert re.fullmatch(r"[0-9]+", value), f"{name}: {value!r}"
            value = int(value)
        validate(value, header["schema"], openapi)


def test_validation_refuses_what_the_schema_does_not_allow(
    openapi: dict[str, Any],
) -> None:
    latest = {"$ref": "#/components/schemas/ConversationLatest"}
    error = {"$ref": "#/components/schemas/Error"}
    nothing = {
        "conversation_id": None,
        "title": None,
        "created_at": None,
        "updated_at": None,
        "message_count": 0,
    }
    some = {
        "conversation_id": "5b0c3a4e-9f1d-4c1e-8f43-0d3b8c7f1a2b",
        "title": "Groceries",
        "created_at": "2026-02-09T12:00:00.123456Z",
        "updated_at": "2026-02-09T12:00:00.123456+00:00",
        "message_count": 2,
    }

    validate(nothing, latest, openapi)
    validate(some, latest, openapi)
    for wrong in [
        some | {"created_at": "2026-02-09T12:00:00"},  # no UTC offset
        some | {"conversation_id": "5b0c"},
        some | {"message_count": -1},
        {"conversation_id": None, "created_at": None},
    ]:
        with pytest.raises(ValidationError):
            validate(wrong, latest, openapi)
    with pytest.raises(ValidationError):
        validate({"detail": "Not found."}, error, openapi)
    with pytest.raises(ValidationError):
        validate({"detail": "x", "code": "x", "errors": {"a": "b"}}, error, openapi)


# --- The schema --------------------------------------------------------------


def test_schema_is_valid_openapi_with_canonical_paths(openapi: dict[str, Any]) -> None:
    validate_schema(openapi)

    assert openapi["openapi"].startswith("3.0")
    assert set(openapi["paths"]) == {
        CHAT,
        LATEST,
        LIST,
        DETAIL,
        STREAM,
        RESUME,
        MESSAGES,
        "/healthz",
        "/readyz",
    }
    assert {
        (path, method) for path, item in openapi["paths"].items() for method in item
    } == {
        (CHAT, "post"),
        (STREAM, "post"),
        (RESUME, "get"),
        (LATEST, "get"),
        (LATEST, "delete"),
        (LIST, "get"),
        (DETAIL, "get"),
        (DETAIL, "patch"),
        (DETAIL, "delete"),
        (MESSAGES, "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    }


def test_schema_is_json_or_yaml_and_public() -> None:
    client = Client()

    as_yaml = client.get("/api/schema/")
    with_bad_credentials = client.get(
        "/api/schema/?format=json", HTTP_AUTHORIZATION="Bearer not-a-session"
    )

    assert as_yaml.status_code == 200
    assert as_yaml["Content-Type"].startswith("application/vnd.oai.openapi")
    assert as_yaml.content.startswith(b"openapi: 3.0")
    assert with_bad_credentials.status_code == 200


def test_schema_security_schemes_are_session_bearer_cookie_and_jwt(
    openapi: dict[str, Any], settings: Settings
) -> None:
    schemes = openapi["components"]["securitySchemes"]

    assert schemes["sessionBearer"] | {"description": ""} == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "Better Auth session token",
        "description": "",
    }
    assert schemes["sessionCookie"] | {"description": ""} == {
        "type": "apiKey",
        "in": "cookie",
        "name": "better-auth.session_token",
        "description": "",
    }
    assert schemes["jwtBearer"] | {"description": ""} == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "",
    }
    settings.BETTER_AUTH_COOKIE_PREFIX = "todo"
    renamed = fetch_schema()["components"]["securitySchemes"]["sessionCookie"]
    assert renamed["name"] == "todo.session_token"


def test_schema_requires_credentials_except_on_probes(openapi: dict[str, Any]) -> None:
    paths = openapi["paths"]

    # Alternatives: any one of the three credentials will do.
    assert paths[CHAT]["post"]["security"] == SECURED
    assert paths[STREAM]["post"]["security"] == SECURED
    assert paths[RESUME]["get"]["security"] == SECURED
    assert paths[LATEST]["get"]["security"] == SECURED
    assert paths[MESSAGES]["get"]["security"] == SECURED
    assert paths[LATEST]["delete"]["security"] == SECURED
    assert paths[LIST]["get"]["security"] == SECURED
    for method in ("get", "patch", "delete"):
        assert paths[DETAIL][method]["security"] == SECURED
    assert paths["/healthz"]["get"]["security"] == [{}]
    assert paths["/readyz"]["get"]["security"] == [{}]


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        pytest.param(
            CHAT,
            "post",
            {200, 400, 401, 403, 404, 409, 413, 415, 422, 429, 502, 503, 504},
            id="chat",
        ),
        pytest.param(
            STREAM,
            "post",
            {200, 400, 401, 403, 404, 409, 413, 415, 422, 429, 503},
            id="stream",
        ),
        pytest.param(RESUME, "get", {200, 204, 401, 404, 429, 503}, id="resume"),
        pytest.param(LATEST, "get", {200, 401, 404, 429, 503}, id="latest"),
        pytest.param(MESSAGES, "get", {200, 400, 401, 404, 429, 503}, id="messages"),
        pytest.param(LATEST, "delete", {200, 401, 403, 404, 429, 503}, id="delete-all"),
        pytest.param(LIST, "get", {200, 400, 401, 404, 429, 503}, id="list"),
        pytest.param(DETAIL, "get", {200, 401, 404, 429, 503}, id="get"),
        pytest.param(
            DETAIL,
            "patch",
            {200, 400, 401, 403, 404, 413, 415, 429, 503},
            id="rename",
        ),
        pytest.param(DETAIL, "delete", {204, 401, 403, 404, 429, 503}, id="delete"),
        pytest.param("/healthz", "get", {200}, id="healthz"),
        pytest.param("/readyz", "get", {200, 503}, id="readyz"),
    ],
)
def test_schema_documents_every_status_with_the_error_envelope(
    openapi: dict[str, Any], path: str, method: str, statuses: set[int]
) -> None:
    responses = openapi["paths"][path][method]["responses"]

    assert {int(status) for status in responses} == statuses
    for status, response in responses.items():
        content = response.get("content", {})
        if status == "204":
            assert content == {}
        elif path in (STREAM, RESUME) and int(status) < 400:
            assert list(content) == [EVENT_STREAM]
        else:
            assert list(content) == ["application/json"]
        if int(status) >= 400:
            assert content["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }
        assert response["description"]
    if 401 in statuses:
        assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
        assert responses["429"]["headers"]["Retry-After"]["required"] is True


def test_schema_error_envelope_is_detail_code_and_optional_errors(
    openapi: dict[str, Any],
) -> None:
    error = openapi["components"]["schemas"]["Error"]

    assert set(error["properties"]) == {"detail", "code", "errors"}
    assert sorted(error["required"]) == ["code", "detail"]
    assert error["properties"]["errors"]["additionalProperties"] == {
        "type": "array",
        "items": {"type": "string"},
    }


def test_schema_chat_request_follows_the_message_limit(settings: Settings) -> None:
    settings.CHAT_MAX_MESSAGE_CHARS = 1234

    openapi = fetch_schema()

    operation = openapi["paths"][CHAT]["post"]
    body = operation["requestBody"]
    request = openapi["components"]["schemas"]["ChatRequest"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatRequest"
    }
    assert request["required"] == ["message"]
    message = request["properties"]["message"]
    assert (message["type"], message["minLength"], message["maxLength"]) == (
        "string",
        1,
        1234,
    )
    conversation_id = request["properties"]["conversation_id"]
    assert (conversation_id["format"], conversation_id["nullable"]) == ("uuid", True)
    key = {p["name"]: p for p in operation["parameters"]}["Idempotency-Key"]
    assert (key["in"], key.get("required", False)) == ("header", False)
    assert key["schema"] | {"pattern": ""} == {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": "",
    }


def test_schema_rename_body_requires_a_title(openapi: dict[str, Any]) -> None:
    body = openapi["paths"][DETAIL]["patch"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    component = openapi["components"]["schemas"][schema["$ref"].split("/")[-1]]

    assert component["required"] == ["title"]
    assert component["properties"]["title"] | {"description": ""} == {
        "type": "string",
        "minLength": 1,
        "maxLength": 200,
        "pattern": "\\S",
        "description": "",
    }


def test_schema_list_parameters(openapi: dict[str, Any]) -> None:
    parameters = {
        (p["in"], p["name"]): p for p in openapi["paths"][LIST]["get"]["parameters"]
    }

    assert parameters["query", "limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 20,
    }
    assert parameters["query", "cursor"]["schema"] == {"type": "string"}
    assert not parameters["query", "cursor"].get("required")


def test_schema_path_and_query_parameters(openapi: dict[str, Any]) -> None:
    parameters = {
        (p["in"], p["name"]): p for p in openapi["paths"][MESSAGES]["get"]["parameters"]
    }

    assert set(parameters) == {
        ("path", "user_id"),
        ("path", "conversation_id"),
        ("query", "limit"),
        ("query", "before"),
        ("header", "X-Request-ID"),
    }
    # Strings: any text reaches the view, which answers 404 for ids that
    # are not the user's (a malformed conversation id included), never 400.
    assert parameters["path", "user_id"]["schema"] == {"type": "string"}
    assert parameters["path", "conversation_id"]["schema"] == {"type": "string"}
    assert parameters["query", "limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 500,
        "default": 100,
    }
    assert parameters["query", "before"]["schema"] == {
        "type": "string",
        "format": "uuid",
    }
    assert not parameters["query", "limit"].get("required")
    assert not parameters["query", "before"].get("required")


# --- Real answers agree with the schema ---------------------------------------

Produce = Callable[[APIClient, BetterAuthSession, Settings], Any]


def chat_url(user_id: str) -> str:
    return CHAT.format(user_id=user_id)


def messages_url(user_id: str, conversation_id: str) -> str:
    return MESSAGES.format(user_id=user_id, conversation_id=conversation_id)


def send(api: APIClient, session: BetterAuthSession, body: Any, **headers: str) -> Any:
    return api.post(chat_url(session.user_id), body, format="json", headers=headers)


def chat_stub(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    response = send(api, session, {"message": "add buy milk"})
    assert response.json()["tool_calls"]
    return response


def chat_recording(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    # Two tool calls, one an error with a null result.
    settings.AGENT_BACKEND = "agent.tests.fakes.RecordingAgent"
    first = send(api, session, {"message": "hi", "conversation_id": None})
    conversation_id = first.json()["conversation_id"]
    return send(api, session, {"message": "again", "conversation_id": conversation_id})


def chat_replayed(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    send(api, session, {"message": "hi"}, **{"Idempotency-Key": "k-1"})
    response = send(api, session, {"message": "hi"}, **{"Idempotency-Key": "k-1"})
    assert response["Idempotent-Replayed"] == "true"
    return response


def chat_not_json(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return api.post(chat_url(session.user_id), "{", content_type="application/json")


def chat_not_object(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    response = send(api, session, ["hi"])
    assert "non_field_errors" in response.json()["errors"]
    return response


def chat_blank(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    return send(api, session, {"message": "  "})


def chat_too_long(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.CHAT_MAX_MESSAGE_CHARS = 5
    response = send(api, session, {"message": "123456"})
    assert response.json()["code"] == "message_too_long"
    return response


def chat_bad_conversation_id(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return send(api, session, {"message": "hi", "conversation_id": "nope"})


def chat_bad_idempotency_key(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return send(api, session, {"message": "hi"}, **{"Idempotency-Key": "x" * 256})


def chat_anonymous(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    response = APIClient().post(chat_url(session.user_id), {"message": "hi"})
    assert response.json()["code"] == "not_authenticated"
    return response


def chat_bad_token(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-session")
    return client.post(chat_url(session.user_id), {"message": "hi"}, format="json")


def chat_untrusted_origin(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    client = APIClient()
    client.cookies["better-auth.session_token"] = quote(signed_token(session), safe="")
    return client.post(
        chat_url(session.user_id),
        {"message": "hi"},
        format="json",
        headers={"Origin": "https://evil.example"},
    )


def chat_other_user(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    other = BetterAuthSessionFactory.create()
    return api.post(chat_url(other.user_id), {"message": "hi"}, format="json")


def chat_unknown_conversation(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    foreign = ConversationFactory.create()
    return send(api, session, {"message": "hi", "conversation_id": str(foreign.id)})


def chat_in_progress(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    IdempotencyKey.objects.create(
        owner_id=session.user_id,
        key="k-1",
        fingerprint=request_fingerprint(
            owner_id=session.user_id, message="hi", conversation_id=None
        ),
        created_at=timezone.now(),
    )
    return send(api, session, {"message": "hi"}, **{"Idempotency-Key": "k-1"})


def chat_too_large(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    return send(api, session, {"message": "x" * 2048})


def chat_not_json_media_type(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return api.post(chat_url(session.user_id), "hi", content_type="text/plain")


def chat_key_reused(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    send(api, session, {"message": "one"}, **{"Idempotency-Key": "k-1"})
    return send(api, session, {"message": "two"}, **{"Idempotency-Key": "k-1"})


def chat_throttled(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.RATE_LIMIT_CHAT = "1/day"  # one window: no boundary mid-test
    assert send(api, session, {"message": "hi"}).status_code == 200
    return send(api, session, {"message": "hi"})


def chat_agent_error(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.AGENT_BACKEND = "agent.tests.fakes.FailingAgent"
    return send(api, session, {"message": "hi"})


def chat_agent_error_replayed(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.AGENT_BACKEND = "agent.tests.fakes.FailingAgent"
    return chat_replayed(api, session, settings)


def chat_agent_timeout(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.AGENT_BACKEND = "agent.tests.fakes.SlowAgent"
    settings.AGENT_TIMEOUT_SECONDS = 0.1
    SlowAgent.delay = 0.3
    response = send(api, session, {"message": "hi"})
    # The timed-out call ends within this test, not in the next one.
    assert SlowAgent.finished.wait(5) is True
    return response


def latest_none(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    response = api.get(LATEST.format(user_id=session.user_id))
    assert response.json()["conversation_id"] is None
    return response


def latest_some(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    ConversationFactory.create(owner_id=session.user_id)
    return api.get(LATEST.format(user_id=session.user_id))


def latest_anonymous(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return APIClient().get(LATEST.format(user_id=session.user_id))


def latest_other_user(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return api.get(LATEST.format(user_id="someone-else"))


def latest_throttled(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.RATE_LIMIT_READ = "1/day"  # one window: no boundary mid-test
    api.get(LATEST.format(user_id=session.user_id))
    return api.get(LATEST.format(user_id=session.user_id))


def page_with_more(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    conversation = ConversationFactory.create(owner_id=session.user_id)
    MessageFactory.create(conversation=conversation)
    MessageFactory.create(conversation=conversation, role=Message.Role.ASSISTANT)
    response = api.get(
        messages_url(session.user_id, str(conversation.id)), {"limit": 1}
    )
    assert response.json()["has_more"] is True
    return response


def page_empty(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    conversation = ConversationFactory.create(owner_id=session.user_id)
    response = api.get(messages_url(session.user_id, str(conversation.id)))
    assert response.json()["next_before"] is None
    return response


def page_bad_limit(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    conversation = ConversationFactory.create(owner_id=session.user_id)
    return api.get(messages_url(session.user_id, str(conversation.id)), {"limit": 501})


def page_bad_before(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    conversation = ConversationFactory.create(owner_id=session.user_id)
    return api.get(
        messages_url(session.user_id, str(conversation.id)), {"before": "nope"}
    )


def page_anonymous(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    conversation = ConversationFactory.create(owner_id=session.user_id)
    return APIClient().get(messages_url(session.user_id, str(conversation.id)))


def page_malformed_id(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return api.get(messages_url(session.user_id, "not-a-uuid"))


def page_foreign(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    conversation = ConversationFactory.create()
    return api.get(messages_url(session.user_id, str(conversation.id)))


def page_throttled(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.RATE_LIMIT_READ = "1/day"  # one window: no boundary mid-test
    conversation = ConversationFactory.create(owner_id=session.user_id)
    api.get(messages_url(session.user_id, str(conversation.id)))
    return api.get(messages_url(session.user_id, str(conversation.id)))


def list_url(user_id: str) -> str:
    return LIST.format(user_id=user_id)


def detail_url(user_id: str, conversation_id: str) -> str:
    return DETAIL.format(user_id=user_id, conversation_id=conversation_id)


def own_conversation(session: BetterAuthSession) -> str:
    conversation = ConversationFactory.create(owner_id=session.user_id, title="t")
    MessageFactory.create(conversation=conversation)
    return str(conversation.id)


def cookie_client(session: BetterAuthSession) -> APIClient:
    """Authenticated by the session cookie, from another origin's page."""
    client = APIClient()
    client.cookies["better-auth.session_token"] = quote(signed_token(session), safe="")
    return client


UNTRUSTED = {"Origin": "https://evil.example"}


def delete_all_some(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    own_conversation(session)
    response = api.delete(LATEST.format(user_id=session.user_id))
    assert response.json() == {"deleted": 1}
    return response


def delete_all_anonymous(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return APIClient().delete(LATEST.format(user_id=session.user_id))


def delete_all_untrusted_origin(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return cookie_client(session).delete(
        LATEST.format(user_id=session.user_id), headers=UNTRUSTED
    )


def delete_all_other_user(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return api.delete(LATEST.format(user_id="someone-else"))


def delete_all_throttled(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.RATE_LIMIT_READ = "1/day"  # one window: no boundary mid-test
    api.delete(LATEST.format(user_id=session.user_id))
    return api.delete(LATEST.format(user_id=session.user_id))


def list_more(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    own_conversation(session)
    own_conversation(session)
    response = api.get(list_url(session.user_id), {"limit": 1})
    assert response.json()["next_cursor"]
    return response


def list_empty(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    return api.get(list_url(session.user_id))


def list_bad_cursor(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    response = api.get(list_url(session.user_id), {"cursor": "nope"})
    assert response.json()["code"] == "invalid_cursor"
    return response


def list_bad_limit(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return api.get(list_url(session.user_id), {"limit": 101})


def list_anonymous(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return APIClient().get(list_url(session.user_id))


def list_other_user(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return api.get(list_url("someone-else"))


def list_throttled(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.RATE_LIMIT_READ = "1/day"  # one window: no boundary mid-test
    api.get(list_url(session.user_id))
    return api.get(list_url(session.user_id))


def get_one(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    return api.get(detail_url(session.user_id, own_conversation(session)))


def get_anonymous(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return APIClient().get(detail_url(session.user_id, own_conversation(session)))


def get_foreign(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    return api.get(detail_url(session.user_id, str(ConversationFactory.create().id)))


def get_throttled(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.RATE_LIMIT_READ = "1/day"  # one window: no boundary mid-test
    url = detail_url(session.user_id, own_conversation(session))
    api.get(url)
    return api.get(url)


def rename(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    url = detail_url(session.user_id, own_conversation(session))
    return api.patch(url, {"title": " New "}, format="json")


def rename_blank(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    url = detail_url(session.user_id, own_conversation(session))
    return api.patch(url, {"title": "  "}, format="json")


def rename_anonymous(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    url = detail_url(session.user_id, own_conversation(session))
    return APIClient().patch(url, {"title": "x"}, format="json")


def rename_untrusted_origin(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    url = detail_url(session.user_id, own_conversation(session))
    return cookie_client(session).patch(
        url, {"title": "x"}, format="json", headers=UNTRUSTED
    )


def rename_foreign(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    url = detail_url(session.user_id, str(ConversationFactory.create().id))
    return api.patch(url, {"title": "x"}, format="json")


def rename_too_large(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    url = detail_url(session.user_id, own_conversation(session))
    return api.patch(url, {"title": "x" * 2048}, format="json")


def rename_not_json_media_type(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    url = detail_url(session.user_id, own_conversation(session))
    return api.patch(url, "title", content_type="text/plain")


def rename_throttled(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.RATE_LIMIT_READ = "1/day"  # one window: no boundary mid-test
    url = detail_url(session.user_id, own_conversation(session))
    api.patch(url, {"title": "x"}, format="json")
    return api.patch(url, {"title": "y"}, format="json")


def delete_one(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    return api.delete(detail_url(session.user_id, own_conversation(session)))


def delete_anonymous(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return APIClient().delete(detail_url(session.user_id, own_conversation(session)))


def delete_untrusted_origin(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    url = detail_url(session.user_id, own_conversation(session))
    return cookie_client(session).delete(url, headers=UNTRUSTED)


def delete_again(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    url = detail_url(session.user_id, own_conversation(session))
    api.delete(url)
    return api.delete(url)


def delete_throttled(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.RATE_LIMIT_READ = "1/day"  # one window: no boundary mid-test
    api.delete(detail_url(session.user_id, own_conversation(session)))
    return api.delete(detail_url(session.user_id, own_conversation(session)))


def healthz(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    return APIClient().get("/healthz")


def readyz(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    return APIClient().get("/readyz")


def readyz_pending(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    MigrationRecorder.Migration.objects.filter(app="conversations").delete()
    return APIClient().get("/readyz")


ANSWERS = [
    (CHAT, "post", 200, chat_stub),
    (CHAT, "post", 200, chat_recording),
    (CHAT, "post", 200, chat_replayed),
    (CHAT, "post", 400, chat_not_json),
    (CHAT, "post", 400, chat_not_object),
    (CHAT, "post", 400, chat_blank),
    (CHAT, "post", 400, chat_too_long),
    (CHAT, "post", 400, chat_bad_conversation_id),
    (CHAT, "post", 400, chat_bad_idempotency_key),
    (CHAT, "post", 401, chat_anonymous),
    (CHAT, "post", 401, chat_bad_token),
    (CHAT, "post", 403, chat_untrusted_origin),
    (CHAT, "post", 404, chat_other_user),
    (CHAT, "post", 404, chat_unknown_conversation),
    (CHAT, "post", 409, chat_in_progress),
    (CHAT, "post", 413, chat_too_large),
    (CHAT, "post", 415, chat_not_json_media_type),
    (CHAT, "post", 422, chat_key_reused),
    (CHAT, "post", 429, chat_throttled),
    (CHAT, "post", 502, chat_agent_error),
    (CHAT, "post", 502, chat_agent_error_replayed),
    (CHAT, "post", 504, chat_agent_timeout),
    (LATEST, "get", 200, latest_none),
    (LATEST, "get", 200, latest_some),
    (LATEST, "get", 401, latest_anonymous),
    (LATEST, "get", 404, latest_other_user),
    (LATEST, "get", 429, latest_throttled),
    (MESSAGES, "get", 200, page_with_more),
    (MESSAGES, "get", 200, page_empty),
    (MESSAGES, "get", 400, page_bad_limit),
    (MESSAGES, "get", 400, page_bad_before),
    (MESSAGES, "get", 401, page_anonymous),
    (MESSAGES, "get", 404, page_malformed_id),
    (MESSAGES, "get", 404, page_foreign),
    (MESSAGES, "get", 429, page_throttled),
    (LATEST, "delete", 200, delete_all_some),
    (LATEST, "delete", 401, delete_all_anonymous),
    (LATEST, "delete", 403, delete_all_untrusted_origin),
    (LATEST, "delete", 404, delete_all_other_user),
    (LATEST, "delete", 429, delete_all_throttled),
    (LIST, "get", 200, list_more),
    (LIST, "get", 200, list_empty),
    (LIST, "get", 400, list_bad_cursor),
    (LIST, "get", 400, list_bad_limit),
    (LIST, "get", 401, list_anonymous),
    (LIST, "get", 404, list_other_user),
    (LIST, "get", 429, list_throttled),
    (DETAIL, "get", 200, get_one),
    (DETAIL, "get", 401, get_anonymous),
    (DETAIL, "get", 404, get_foreign),
    (DETAIL, "get", 429, get_throttled),
    (DETAIL, "patch", 200, rename),
    (DETAIL, "patch", 400, rename_blank),
    (DETAIL, "patch", 401, rename_anonymous),
    (DETAIL, "patch", 403, rename_untrusted_origin),
    (DETAIL, "patch", 404, rename_foreign),
    (DETAIL, "patch", 413, rename_too_large),
    (DETAIL, "patch", 415, rename_not_json_media_type),
    (DETAIL, "patch", 429, rename_throttled),
    (DETAIL, "delete", 204, delete_one),
    (DETAIL, "delete", 401, delete_anonymous),
    (DETAIL, "delete", 403, delete_untrusted_origin),
    (DETAIL, "delete", 404, delete_again),
    (DETAIL, "delete", 429, delete_throttled),
    ("/healthz", "get", 200, healthz),
    ("/readyz", "get", 200, readyz),
    ("/readyz", "get", 503, readyz_pending),
]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "method", "status", "produce"),
    [pytest.param(*answer, id=answer[3].__name__) for answer in ANSWERS],
)
def test_real_answer_conforms_to_schema(
    openapi: dict[str, Any],
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    path: str,
    method: str,
    status: int,
    produce: Produce,
) -> None:
    response = produce(api, session, settings)

    assert response.status_code == status, response.content
    assert_conforms(openapi, path, method, response)


# The streamed chat's reply is stored by a thread of its own, on its own
# connection: these answers are produced in committed transactions.


def stream_url(user_id: str) -> str:
    return STREAM.format(user_id=user_id)


def stream(
    api: APIClient, session: BetterAuthSession, body: Any, **headers: str
) -> Any:
    return api.post(stream_url(session.user_id), body, format="json", headers=headers)


def stream_stub(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    return stream(api, session, {"message": "add buy milk"})


def stream_sdk_request(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    message = {"id": "m", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
    body = {"id": str(uuid.uuid4()), "messages": [message], "trigger": "submit-message"}
    return stream(api, session, body)


def stream_replayed(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    first: Any = stream(api, session, {"message": "hi"}, **{"Idempotency-Key": "k"})
    b"".join(first.streaming_content)
    # The key is finished once the reply is stored.
    for _ in range(100):
        if IdempotencyKey.objects.filter(response_status=200).exists():
            break
        time.sleep(0.05)
    response = stream(api, session, {"message": "hi"}, **{"Idempotency-Key": "k"})
    assert response["Idempotent-Replayed"] == "true"
    return response


def stream_bad_trigger(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return stream(
        api, session, {"id": str(uuid.uuid4()), "messages": [{}], "trigger": "x"}
    )


def stream_anonymous(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return APIClient().post(stream_url(session.user_id), {"message": "hi"})


def stream_untrusted_origin(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    client = APIClient()
    client.cookies["better-auth.session_token"] = quote(signed_token(session), safe="")
    return client.post(
        stream_url(session.user_id),
        {"message": "hi"},
        format="json",
        headers={"Origin": "https://evil.example"},
    )


def stream_foreign_chat_id(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    other = ConversationFactory.create(owner_id="someone-else")
    message = {"role": "user", "parts": [{"type": "text", "text": "hi"}]}
    return stream(api, session, {"id": str(other.id), "messages": [message]})


def stream_in_progress(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    IdempotencyKey.objects.create(
        owner_id=session.user_id,
        key="k-1",
        fingerprint=request_fingerprint(
            owner_id=session.user_id, message="hi", conversation_id=None
        ),
        created_at=timezone.now(),
    )
    return stream(api, session, {"message": "hi"}, **{"Idempotency-Key": "k-1"})


def stream_too_large(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    return stream(api, session, {"message": "x" * 2048})


def stream_not_json_media_type(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return api.post(stream_url(session.user_id), "hi", content_type="text/plain")


def stream_key_reused(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    IdempotencyKey.objects.create(
        owner_id=session.user_id,
        key="k-1",
        fingerprint="another request",
        created_at=timezone.now(),
    )
    return stream(api, session, {"message": "hi"}, **{"Idempotency-Key": "k-1"})


def stream_throttled(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.RATE_LIMIT_CHAT = "1/day"
    assert stream(api, session, {}).status_code == 400  # counted all the same
    return stream(api, session, {"message": "hi"})


def resume_in_progress(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.AGENT_BACKEND = "agent.tests.fakes.StreamingAgent"
    StreamingAgent.hold = True
    posted: Any = stream(api, session, {"message": "hi"})
    start = next(iter(posted.streaming_content))
    conversation = json.loads(start.split(b"\n")[0][6:])["messageMetadata"]
    response = api.get(
        RESUME.format(
            user_id=session.user_id, conversation_id=conversation["conversationId"]
        )
    )
    StreamingAgent.release.set()
    return response


def resume_none(api: APIClient, session: BetterAuthSession, settings: Settings) -> Any:
    return api.get(RESUME.format(user_id=session.user_id, conversation_id="nope"))


def resume_anonymous(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return APIClient().get(
        RESUME.format(user_id=session.user_id, conversation_id=uuid.uuid4())
    )


def resume_other_user(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    return api.get(RESUME.format(user_id="someone-else", conversation_id=uuid.uuid4()))


def resume_throttled(
    api: APIClient, session: BetterAuthSession, settings: Settings
) -> Any:
    settings.RATE_LIMIT_READ = "1/day"
    resume_none(api, session, settings)
    return resume_none(api, session, settings)


STREAM_ANSWERS = [
    (STREAM, "post", 200, stream_stub),
    (STREAM, "post", 200, stream_sdk_request),
    (STREAM, "post", 200, stream_replayed),
    (STREAM, "post", 400, stream_bad_trigger),
    (STREAM, "post", 401, stream_anonymous),
    (STREAM, "post", 403, stream_untrusted_origin),
    (STREAM, "post", 404, stream_foreign_chat_id),
    (STREAM, "post", 409, stream_in_progress),
    (STREAM, "post", 413, stream_too_large),
    (STREAM, "post", 415, stream_not_json_media_type),
    (STREAM, "post", 422, stream_key_reused),
    (STREAM, "post", 429, stream_throttled),
    (RESUME, "get", 200, resume_in_progress),
    (RESUME, "get", 204, resume_none),
    (RESUME, "get", 401, resume_anonymous),
    (RESUME, "get", 404, resume_other_user),
    (RESUME, "get", 429, resume_throttled),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("path", "method", "status", "produce"),
    [pytest.param(*answer, id=answer[3].__name__) for answer in STREAM_ANSWERS],
)
def test_real_stream_answer_conforms_to_schema(
    openapi: dict[str, Any],
    api: APIClient,
    session: BetterAuthSession,
    settings: Settings,
    stream_producers: Callable[[], None],
    path: str,
    method: str,
    status: int,
    produce: Produce,
) -> None:
    response = produce(api, session, settings)

    assert response.status_code == status, response
    assert_conforms(openapi, path, method, response)
    stream_producers()


def test_every_documented_status_but_database_faults_is_produced_above(
    openapi: dict[str, Any],
) -> None:
    """503 database_unavailable needs a broken database: the test below,
    on PostgreSQL."""
    documented = {
        (path, method, int(status))
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
    }
    produced = {
        (path, method, status)
        for path, method, status, _ in [*ANSWERS, *STREAM_ANSWERS]
    }

    assert documented - produced == {
        (CHAT, "post", 503),
        (STREAM, "post", 503),
        (RESUME, "get", 503),
        (LATEST, "get", 503),
        (MESSAGES, "get", 503),
        (LATEST, "delete", 503),
        (LIST, "get", 503),
        (DETAIL, "get", 503),
        (DETAIL, "patch", 503),
        (DETAIL, "delete", 503),
    }
    assert produced <= documented


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_database_unavailable_answer_conforms_to_schema(
    openapi: dict[str, Any], session: BetterAuthSession
) -> None:
    from django.db import connection

    real_port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = "9"  # nothing listens there
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session.token}")
    try:
        answers = [
            (CHAT, "post", client.post(chat_url(session.user_id), {"message": "hi"})),
            (LATEST, "get", client.get(LATEST.format(user_id=session.user_id))),
            (MESSAGES, "get", client.get(messages_url(session.user_id, "x"))),
            (LATEST, "delete", client.delete(LATEST.format(user_id=session.user_id))),
            (LIST, "get", client.get(list_url(session.user_id))),
            (DETAIL, "get", client.get(detail_url(session.user_id, "x"))),
            (
                DETAIL,
                "patch",
                client.patch(
                    detail_url(session.user_id, "x"), {"title": "t"}, format="json"
                ),
            ),
            (DETAIL, "delete", client.delete(detail_url(session.user_id, "x"))),
        ]
    finally:
        connection.close()
        connection.settings_dict["PORT"] = real_port

    for path, method, response in answers:
        assert response.status_code == 503
        assert response.json()["code"] == "database_unavailable"
        assert_conforms(openapi, path, method, response)


@pytest.mark.django_db
def test_wrong_method_answers_the_error_envelope(
    openapi: dict[str, Any], api: APIClient, session: BetterAuthSession
) -> None:
    response = api.get(chat_url(session.user_id))

    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    validate(response.json(), {"$ref": "#/components/schemas/Error"}, openapi)


# --- The docs page ------------------------------------------------------------


def test_docs_page_and_its_assets_are_served_with_debug_off(
    client: Client, settings: Settings
) -> None:
    settings.DEBUG = False

    page = client.get("/api/docs/")

    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    html = page.content.decode()
    assert 'url: "/api/schema/"' in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    # Swagger UI's script, preset, stylesheet and icon, all from this app.
    assert len(assets) == 4
    kinds = {"js": "text/javascript", "css": "text/css", "png": "image/png"}
    for url in assets:
        assert url.startswith("/static/drf_spectacular_sidecar/"), url
        response = client.get(url)
        assert (url, response.status_code) == (url, 200)
        assert isinstance(response, FileResponse)
        content_type = kinds[url.rsplit(".", 1)[1]]
        assert response["Content-Type"].startswith(content_type), url
        assert b"".join(response.streaming_content)


def test_schema_every_operation_takes_and_answers_a_request_id(
    openapi: dict[str, Any],
) -> None:
    operations = [op for path in openapi["paths"].values() for op in path.values()]

    for operation in operations:
        headers = {(p["in"], p["name"]) for p in operation["parameters"]}
        assert ("header", "X-Request-ID") in headers
        for response in operation["responses"].values():
            assert response["headers"]["X-Request-ID"]["required"] is True
    assert len(operations) == 12
