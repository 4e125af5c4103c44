"""Request charsets: a body is decoded as UTF-8 or refused (docs/SECURITY.md).

A Content-Type that declares any charset but UTF-8 (or ASCII) gets a JSON
415 on every path, the admin's included, before anything reads the body.
The codec `recordingcodec` below is UTF-8 that notes each use: declared by a
request, it shows whether anything decoded the body with it.
"""

import codecs
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from django.test.client import encode_multipart

import pytest
from rest_framework.test import APIClient

from better_auth.models import BetterAuthSession
from chatapi.handlers import WSGIHandler
from chatapi.parsers import LimitedJSONParser
from conversations.models import Message
from conversations.tests.paths import chat_url, latest_url

pytestmark = pytest.mark.django_db

JSON = "application/json"
CODEC = "recordingcodec"
CSRF_TOKEN = "a" * 32
BOUNDARY = "BoUnDaRy"


@pytest.fixture
def codec_uses() -> Iterator[list[str]]:
    """Registers `recordingcodec`; yields the list of its uses."""
    uses: list[str] = []
    utf8 = codecs.lookup("utf-8")

    def decode(data: Any, errors: str = "strict") -> tuple[str, int]:
        uses.append("decode")
        return utf8.decode(data, errors)

    class StreamReader(codecs.StreamReader):
        def decode(self, data: Any, errors: str = "strict") -> tuple[str, int]:
            uses.append("stream")
            return utf8.decode(data, errors)

    class IncrementalDecoder(codecs.BufferedIncrementalDecoder):
        def _buffer_decode(
            self, data: Any, errors: str, final: bool
        ) -> tuple[str, int]:
            uses.append("incremental")
            return codecs.utf_8_decode(data, errors, final)

    info = codecs.CodecInfo(
        name=CODEC,
        encode=utf8.encode,
        decode=decode,
        streamreader=StreamReader,
        streamwriter=utf8.streamwriter,
        incrementalencoder=utf8.incrementalencoder,
        incrementaldecoder=IncrementalDecoder,
    )

    def search(name: str) -> codecs.CodecInfo | None:
        return info if name == CODEC else None

    codecs.register(search)
    try:
        yield uses
    finally:
        codecs.unregister(search)


@pytest.fixture
def staff() -> User:
    return User.objects.create_superuser("staff", "staff@example.com", "s3cret-pass")


def admin_client() -> Client:
    """A browser that holds a CSRF cookie, from the admin's own origin."""
    client = Client(enforce_csrf_checks=True, HTTP_ORIGIN="http://testserver")
    client.cookies["csrftoken"] = CSRF_TOKEN
    return client


def login_form(charset: str) -> tuple[bytes, str]:
    """A complete, valid admin login (right password, CSRF token)."""
    body = encode_multipart(
        BOUNDARY,
        {
            "csrfmiddlewaretoken": CSRF_TOKEN,
            "username": "staff",
            "password": "s3cret-pass",
            "next": "/admin/",
        },
    )
    content_type = f"multipart/form-data; boundary={BOUNDARY}; charset={charset}"
    return body, content_type


def assert_unsupported(response: Any) -> None:
    assert response.status_code == 415, response.content[:300]
    assert response["Content-Type"] == JSON
    body = response.json()
    assert body["code"] == "unsupported_media_type"
    assert set(body) == {"detail", "code"}
    assert "UTF-8" in body["detail"]


# --- the admin -----------------------------------------------------------


@pytest.mark.usefixtures("staff")
def test_admin_login_in_another_charset_is_refused_before_csrf_reads_it(
    codec_uses: list[str],
) -> None:
    """A form that would sign in, declared in another charset: 415, the
    codec never runs, no session is stored."""
    body, content_type = login_form(CODEC)

    response = admin_client().post("/admin/login/", body, content_type=content_type)

    assert_unsupported(response)
    assert codec_uses == []
    assert Session.objects.count() == 0


@pytest.mark.usefixtures("staff")
@pytest.mark.parametrize("charset", ["utf-8", '"UTF-8"', "us-ascii"])
def test_admin_login_declared_utf8_or_ascii_signs_in(charset: str) -> None:
    body, content_type = login_form(charset)

    response = admin_client().post("/admin/login/", body, content_type=content_type)

    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert Session.objects.count() == 1


@pytest.mark.usefixtures("staff")
def test_admin_urlencoded_login_declared_ascii_signs_in() -> None:
    """Django accepts a urlencoded form only in UTF-8: a declared ASCII is
    read as UTF-8, of which it is a subset."""
    response = admin_client().post(
        "/admin/login/",
        f"csrfmiddlewaretoken={CSRF_TOKEN}&username=staff&password=s3cret-pass",
        content_type="application/x-www-form-urlencoded; charset=US-ASCII",
    )

    assert response.status_code == 302


# --- the API -------------------------------------------------------------


def test_chat_in_another_charset_is_refused_and_stores_nothing(
    api: APIClient,
    session: BetterAuthSession,
    codec_uses: list[str],
    row_counts: Callable[[], tuple[int, int, int]],
) -> None:
    response = api.post(
        chat_url(session.user_id),
        b'{"message":"hi"}',
        content_type=f"{JSON}; charset={CODEC}",
    )

    assert_unsupported(response)
    assert codec_uses == []
    assert row_counts() == (0, 0, 0)


@pytest.mark.parametrize(
    "params",
    [
        "charset=punycode",
        "charset=latin-1",
        "charset=utf-16",
        "charset=UTF-7",
        "charset=utf-8-sig",
        "charset=x-no-such-charset",
        "charset=",
        # Django reads the last of a repeated parameter, and so does the check.
        "charset=utf-8; charset=punycode",
        "charset*=utf-8''punycode",
    ],
)
def test_chat_declared_charset_other_than_utf8_is_refused(
    api: APIClient,
    session: BetterAuthSession,
    row_counts: Callable[[], tuple[int, int, int]],
    params: str,
) -> None:
    response = api.post(
        chat_url(session.user_id),
        b'{"message":"hi"}',
        content_type=f"{JSON}; {params}",
    )

    assert_unsupported(response)
    assert row_counts() == (0, 0, 0)


@pytest.mark.parametrize(
    "charset", ["utf-8", "UTF-8", "utf8", '"utf-8"', " Utf-8 ", "us-ascii", "ASCII"]
)
def test_chat_declared_utf8_or_ascii_is_read_as_utf8(
    api: APIClient, session: BetterAuthSession, charset: str
) -> None:
    response = api.post(
        chat_url(session.user_id),
        '{"message":"café"}'.encode(),
        content_type=f"{JSON}; charset={charset}",
    )

    assert response.status_code == 200
    assert Message.objects.get(role="user").content == "café"


def test_get_declaring_another_charset_is_refused(
    api: APIClient, session: BetterAuthSession
) -> None:
    """The declared charset also decodes the query string (and a form sent
    with any method): refused on every method."""
    response = api.get(
        latest_url(session.user_id), content_type="text/plain; charset=latin-1"
    )

    assert_unsupported(response)


@pytest.mark.parametrize("path", ["/healthz", "/api/schema/", "/no-such-path"])
def test_every_path_refuses_another_charset(path: str) -> None:
    response = Client().post(path, b"x", content_type="text/plain; charset=latin-1")

    assert_unsupported(response)


def test_json_parser_decodes_utf8_whatever_the_context_says(
    codec_uses: list[str],
) -> None:
    """Without the middleware too, nothing decodes a body with another
    charset."""
    parsed = LimitedJSONParser().parse(
        io.BytesIO('{"message":"café"}'.encode()), JSON, {"encoding": CODEC}
    )

    assert parsed == {"message": "café"}
    assert codec_uses == []


# --- a Content-Type Django cannot read -----------------------------------


@pytest.fixture
def app() -> Iterator[WSGIHandler]:
    """The app's WSGI handler, keeping the test's database connection (and
    transaction) open between requests, as Django's test client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.parametrize(
    "content_type",
    [f"{JSON}; charset*=nope''x", f"{JSON}; format*=nope''x"],
    ids=["charset", "other-parameter"],
)
def test_parameter_in_an_unknown_charset_is_415_not_500(
    app: WSGIHandler,
    session: BetterAuthSession,
    row_counts: Callable[[], tuple[int, int, int]],
    content_type: str,
) -> None:
    """Django raises while it builds such a request, before any middleware;
    the app's handler reads it as an unsupported charset. (The test client
    builds Django's own request: this goes through the app's handler.)"""
    body = b'{"message":"hi"}'
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": chat_url(session.user_id),
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Bearer {session.token}",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
    }
    answer: list[Any] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        answer.extend([status, dict(headers)])
        return lambda data: None

    content = b"".join(app(environ, start_response))

    status, headers = answer
    assert (status, headers["Content-Type"]) == ("415 Unsupported Media Type", JSON)
    assert json.loads(content)["code"] == "unsupported_media_type"
    assert row_counts() == (0, 0, 0)
