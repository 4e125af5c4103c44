"""Hostile input (CONTRACT §5): whatever a client sends, the answer is a clear
4xx in the JSON error envelope (or a 200 where the input is valid after all),
never a 500 or an HTML page, and nothing is stored.

Cases the view tests already cover (not-JSON bodies, NaN, form, text and
multipart content types, `limit` of 0/-1/1e3/1.5, a short invalid `before`,
bodies over the upload limit) are not repeated here.
"""

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from django.test import Client
from django.test.client import FakePayload

import pytest
from rest_framework.test import APIClient

from better_auth.models import BetterAuthSession
from conversations.models import Conversation, Message
from conversations.tests.factories import (
    ConversationFactory,
    MessageFactory,
    ToolCallFactory,
)
from conversations.tests.paths import chat_url, latest_url, messages_url

pytestmark = pytest.mark.django_db

DEPTH = 10_000
HUGE_INT = b"9" * 5000  # over Python's 4300-digit limit for int("...")
JSON = "application/json"


@pytest.fixture
def conversation(session: BetterAuthSession) -> Conversation:
    """The session user's conversation: three messages and a tool call, so
    "nothing stored" is checked against rows that exist."""
    conversation = ConversationFactory.create(owner_id=session.user_id)
    for _ in range(3):
        message = MessageFactory.create(conversation=conversation)
    ToolCallFactory.create(message=message)
    return conversation


@pytest.fixture
def api(session: BetterAuthSession) -> APIClient:
    # A 500 comes back as a response, so a failure reads as a wrong status.
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session.token}")
    return client


@pytest.fixture
def unchanged(
    conversation: Conversation, row_counts: Callable[[], tuple[int, int, int]]
) -> Iterator[None]:
    """Fails the test if it changed the row counts."""
    before = row_counts()
    yield
    assert row_counts() == before


def assert_error(response: Any, status: int, code: str | None = None) -> dict:
    """`status`, as JSON, in the envelope `{detail, code[, errors]}`."""
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == JSON
    body: dict = response.json()
    assert set(body) in ({"detail", "code"}, {"detail", "code", "errors"})
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert isinstance(body["code"], str)
    if code is not None:
        assert body["code"] == code
    return body


def short_id(value: Any) -> str | None:
    """Test ids of at most 40 characters (pytest numbers duplicates)."""
    return value[:40] if isinstance(value, str) else None


def nested(opening: bytes, closing: bytes, depth: int = DEPTH) -> bytes:
    return opening * depth + b"1" + closing * depth


def wsgi(token: str, **environ: Any) -> Any:
    """A request built from a raw WSGI environ, where the test client's
    helpers would normalise the input away (a missing Content-Type, raw bytes
    in the path). Values are latin-1 strings, as a WSGI server passes them."""
    client = Client(raise_request_exception=False)
    return client.request(HTTP_AUTHORIZATION=f"Bearer {token}", **environ)


# --- bodies --------------------------------------------------------------

DEEP_ARRAY = nested(b"[", b"]")
DEEP_OBJECT = nested(b'{"a":', b"}")

HOSTILE_BODIES = [
    pytest.param(DEEP_ARRAY, "parse_error", id="nested-array-body"),
    pytest.param(DEEP_OBJECT, "parse_error", id="nested-object-body"),
    pytest.param(b'{"message":' + DEEP_ARRAY + b"}", "parse_error", id="nested-array"),
    pytest.param(
        b'{"message":' + DEEP_OBJECT + b"}", "parse_error", id="nested-object"
    ),
    pytest.param(
        b'{"message":"hi","conversation_id":' + DEEP_ARRAY + b"}",
        "parse_error",
        id="nested-conversation-id",
    ),
    # Deep, but under the parser's recursion limit: refused by validation.
    pytest.param(
        b'{"message":' + nested(b"[", b"]", 200) + b"}", "invalid", id="nested-200"
    ),
    pytest.param(b'{"message":' + HUGE_INT + b"}", "parse_error", id="huge-int"),
    pytest.param(
        b'{"message":"hi","conversation_id":' + HUGE_INT + b"}",
        "parse_error",
        id="huge-int-conversation-id",
    ),
    pytest.param(b'{"message":' + b"9" * 4300 + b"}", "invalid", id="int-4300-digits"),
    pytest.param(b'{"message":1e999}', "invalid", id="float-overflow"),
    pytest.param(b'{"message":-1e999}', "invalid", id="float-overflow-negative"),
    pytest.param(
        b'{"message":"hi","conversation_id":1e999}',
        "invalid",
        id="float-overflow-conversation-id",
    ),
    pytest.param(b'{"message":Infinity}', "parse_error", id="infinity"),
    pytest.param(b'{"message":-Infinity}', "parse_error", id="minus-infinity"),
    pytest.param(b'{"message":"hi","conversation_id":NaN}', "parse_error", id="nan-id"),
    pytest.param(b'{"message":"caf\xe9"}', "parse_error", id="latin-1-bytes"),
    pytest.param(b'{"message":"\xc0\xaf"}', "parse_error", id="overlong-utf-8"),
    pytest.param(b'{"message":"\xed\xa0\x80"}', "parse_error", id="utf-8-surrogate"),
    pytest.param(b'{"message":"\xf4\x90\x80\x80"}', "parse_error", id="beyond-u10ffff"),
    pytest.param(b'{"message":"hi"\x00}', "parse_error", id="raw-nul"),
    pytest.param(
        '{"message":"hi"}'.encode("utf-16"), "parse_error", id="utf-16-with-bom"
    ),
    pytest.param(b'\xef\xbb\xbf{"message":"hi"}', "parse_error", id="utf-8-with-bom"),
    pytest.param(
        b'{"message":"hi","message":{"a":1}}', "invalid", id="duplicate-key-last-wins"
    ),
]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(("raw", "code"), HOSTILE_BODIES)
def test_hostile_chat_body_is_bad_request(
    api: APIClient, session: BetterAuthSession, raw: bytes, code: str
) -> None:
    response = api.post(chat_url(session.user_id), raw, content_type=JSON)

    assert_error(response, 400, code)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "content_type",
    [
        "text/json",
        "application/json-patch+json",
        "application/jsonp",
        "application/octet-stream",
        "json",
        "application/",
        ";;;",
        "application/json\u00e9",
    ],
)
def test_hostile_chat_content_type_is_unsupported(
    api: APIClient, session: BetterAuthSession, content_type: str
) -> None:
    response = api.post(
        chat_url(session.user_id), b'{"message":"hi"}', content_type=content_type
    )

    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.usefixtures("unchanged")
def test_hostile_chat_body_without_content_type_is_unsupported(
    session: BetterAuthSession,
) -> None:
    body = b'{"message":"hi"}'
    response = wsgi(
        session.token,
        REQUEST_METHOD="POST",
        PATH_INFO=chat_url(session.user_id),
        CONTENT_LENGTH=str(len(body)),
        **{"wsgi.input": FakePayload(body)},
    )

    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.usefixtures("unchanged")
def test_hostile_chat_without_content_type_or_body_is_bad_request(
    session: BetterAuthSession,
) -> None:
    response = wsgi(
        session.token, REQUEST_METHOD="POST", PATH_INFO=chat_url(session.user_id)
    )

    body = assert_error(response, 400, "required")
    assert set(body["errors"]) == {"message"}


@pytest.mark.parametrize(
    ("content_type", "raw", "stored"),
    [
        # Other charsets are refused (chatapi/tests/test_charsets.py).
        (f"{JSON}; charset=UTF-8", b'{"message":"caf\xc3\xa9"}', "café"),
        # Any media range that admits application/json is parsed as JSON.
        ("*/*", b'{"message":"hi"}', "hi"),
        ("application/*", b'{"message":"hi"}', "hi"),
    ],
    ids=["utf-8", "any", "application-any"],
)
def test_hostile_chat_charset_and_media_range_are_parsed(
    api: APIClient,
    session: BetterAuthSession,
    content_type: str,
    raw: bytes,
    stored: str,
) -> None:
    response = api.post(chat_url(session.user_id), raw, content_type=content_type)

    assert response.status_code == 200
    assert Message.objects.get(role="user").content == stored


# --- methods -------------------------------------------------------------

ENDPOINTS = {
    "chat": (lambda s, c: chat_url(s.user_id), "POST, OPTIONS"),
    "latest": (lambda s, c: latest_url(s.user_id), "GET, HEAD, OPTIONS"),
    "messages": (lambda s, c: messages_url(s.user_id, c.id), "GET, HEAD, OPTIONS"),
}
NOT_ALLOWED = [
    pytest.param(name, method, id=f"{name}-{method}")
    for name in ENDPOINTS
    for method in ["PUT", "PATCH", "DELETE", "TRACE", "PROPFIND", "BREW"]
    + (["GET"] if name == "chat" else ["POST"])
]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(("endpoint", "method"), NOT_ALLOWED)
def test_hostile_method_not_allowed_is_json_405_with_allow(
    api: APIClient,
    session: BetterAuthSession,
    conversation: Conversation,
    endpoint: str,
    method: str,
) -> None:
    url, allow = ENDPOINTS[endpoint]

    response = api.generic(
        method, url(session, conversation), '{"message":"hi"}', content_type=JSON
    )

    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == allow


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_hostile_options_answers_json_not_an_error(
    api: APIClient,
    session: BetterAuthSession,
    conversation: Conversation,
    endpoint: str,
) -> None:
    url, allow = ENDPOINTS[endpoint]

    response = api.options(url(session, conversation))

    assert response.status_code == 200
    assert response["Content-Type"] == JSON
    assert response["Allow"] == allow
    assert "name" in response.json()


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_hostile_options_without_credentials_is_json_401(
    session: BetterAuthSession, conversation: Conversation, endpoint: str
) -> None:
    url, _ = ENDPOINTS[endpoint]

    response = APIClient().options(url(session, conversation))

    assert_error(response, 401, "not_authenticated")


# --- paths ---------------------------------------------------------------

HOSTILE_USER_IDS = [
    pytest.param("u" * 10_000, id="10000-chars"),
    pytest.param("a%00b", id="nul"),
    pytest.param("%ZZ", id="bad-percent"),
    pytest.param("%C3%28", id="invalid-utf-8"),
    pytest.param("%FF%FE", id="not-utf-8"),
    pytest.param("a%0Ab", id="newline"),
    pytest.param("%25", id="percent"),
    pytest.param("..", id="dot-dot"),
    pytest.param("%2E%2E", id="encoded-dot-dot"),
    pytest.param("%F0%9F%8E%89", id="emoji"),
]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("user_id", HOSTILE_USER_IDS)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/users/{}/chat"),
        ("GET", "/api/v1/users/{}/conversations"),
        ("GET", "/api/v1/users/{}/conversations/{c}/messages"),
    ],
    ids=["chat", "latest", "messages"],
)
def test_hostile_user_id_in_path_is_not_found(
    session: BetterAuthSession,
    conversation: Conversation,
    user_id: str,
    method: str,
    path: str,
) -> None:
    url = path.format(user_id, c=conversation.id)
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session.token}")

    response = client.generic(method, url, '{"message":"hi"}', content_type=JSON)

    assert_error(response, 404, "not_found")


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "raw_path",
    [
        pytest.param(b"/api/v1/users/\xff\xfe/chat", id="raw-non-utf-8"),
        pytest.param(b"/api/v1/users/a\x00b/chat", id="raw-nul"),
        pytest.param(b"/api/v1/users/" + b"\xe9" * 10_000 + b"/chat", id="raw-long"),
    ],
)
def test_hostile_raw_bytes_in_path_are_not_found(
    session: BetterAuthSession, raw_path: bytes
) -> None:
    body = b'{"message":"hi"}'
    response = wsgi(
        session.token,
        REQUEST_METHOD="POST",
        PATH_INFO=raw_path.decode("latin-1"),
        CONTENT_TYPE=JSON,
        CONTENT_LENGTH=str(len(body)),
        **{"wsgi.input": FakePayload(body)},
    )

    assert_error(response, 404, "not_found")


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "conversation_id",
    ["c" * 10_000, "a%00b", "%ZZ", "%C3%28", "%2e%2e", "00000000-0000-0000-0000"],
    ids=short_id,
)
def test_hostile_conversation_id_in_path_is_not_found(
    api: APIClient, session: BetterAuthSession, conversation_id: str
) -> None:
    response = api.get(
        f"/api/v1/users/{session.user_id}/conversations/{conversation_id}/messages"
    )

    assert_error(response, 404, "not_found")


# --- query strings -------------------------------------------------------


@pytest.mark.usefixtures("unchanged")
def test_hostile_repeated_limit_takes_the_last(
    api: APIClient, session: BetterAuthSession, conversation: Conversation
) -> None:
    """`?limit=1&limit=2`: the last value wins (QueryDict.dict()), as in DRF."""
    response = api.get(
        f"{messages_url(session.user_id, conversation.id)}?limit=1&limit=2"
    )

    assert response.status_code == 200
    assert len(response.json()["messages"]) == 2


@pytest.mark.usefixtures("unchanged")
def test_hostile_repeated_limit_with_an_invalid_last_is_bad_request(
    api: APIClient, session: BetterAuthSession, conversation: Conversation
) -> None:
    response = api.get(
        f"{messages_url(session.user_id, conversation.id)}?limit=2&limit=abc"
    )

    body = assert_error(response, 400)
    assert list(body["errors"]) == ["limit"]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("query", "field"),
    [
        (f"limit={10**100}", "limit"),
        ("limit=" + "9" * 5000, "limit"),
        ("limit=1" + "0" * 5000, "limit"),
        ("limit=%00", "limit"),
        ("limit=%ZZ", "limit"),
        ("limit=1%00", "limit"),
        ("limit=NaN", "limit"),
        ("limit=Infinity", "limit"),
        ("limit=%EF%BC%95", None),  # valid: int("\uff15"), a full-width 5
        ("limit=0x10", "limit"),
        ("limit=+5", None),  # valid: int("+5")
        ("limit=%205%20", None),  # valid: int(" 5 ")
        ("before=" + "b" * 10_000, "before"),
        ("before=%00", "before"),
        ("before=%C3%28", "before"),
        ("before=" + quote("{" * 1000), "before"),
    ],
    ids=short_id,
)
def test_hostile_query_parameter_is_bad_request_or_valid(
    api: APIClient,
    session: BetterAuthSession,
    conversation: Conversation,
    query: str,
    field: str | None,
) -> None:
    response = api.get(f"{messages_url(session.user_id, conversation.id)}?{query}")

    if field is None:
        assert response.status_code == 200
        assert len(response.json()["messages"]) == 3
    else:
        body = assert_error(response, 400)
        assert list(body["errors"]) == [field]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "query",
    [
        "&".join(f"p{n}=x" for n in range(999)),
        "x=" + "a" * 100_000,
        "limit[]=1&limit[]=2",
        "=&==&%3D=%3D",
    ],
    ids=["999-params", "100-kb", "array-syntax", "equals"],
)
def test_hostile_query_string_unknown_parameters_are_ignored(
    api: APIClient, session: BetterAuthSession, conversation: Conversation, query: str
) -> None:
    response = api.get(f"{messages_url(session.user_id, conversation.id)}?{query}")

    assert response.status_code == 200
    assert len(response.json()["messages"]) == 3


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "query",
    ["&".join(f"p{n}=x" for n in range(1001)), "&" * 10_000],
    ids=["1001-params", "10000-ampersands"],
)
@pytest.mark.parametrize(
    "url",
    [
        lambda s, c: messages_url(s.user_id, c.id),
        lambda s, c: latest_url(s.user_id),
    ],
    ids=["messages", "latest"],
)
def test_hostile_more_than_1000_query_parameters_is_bad_request(
    api: APIClient,
    session: BetterAuthSession,
    conversation: Conversation,
    url: Any,
    query: str,
) -> None:
    """Django's DATA_UPLOAD_MAX_NUMBER_FIELDS (1000) guards the query string;
    empty fields count too."""
    response = api.get(f"{url(session, conversation)}?{query}")

    assert_error(response, 400, "bad_request")


def test_hostile_query_string_on_chat_is_ignored(
    api: APIClient,
    session: BetterAuthSession,
    conversation: Conversation,
    row_counts: Callable[[], tuple[int, int, int]],
) -> None:
    before = row_counts()
    query = "&".join(f"p{n}=x" for n in range(999))

    response = api.post(
        f"{chat_url(session.user_id)}?{query}",
        b'{"message":"hi","conversation_id":"%s"}' % str(conversation.id).encode(),
        content_type=JSON,
    )

    assert response.status_code == 200
    assert row_counts() == (before[0], before[1] + 2, before[2])
