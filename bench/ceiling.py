"""The ceiling: our three endpoints as a bare WSGI app on psycopg 3.

`gunicorn bench.ceiling:application -c gunicorn.conf.py`, with the database
in CEILING_DATABASE_URL (or DATABASE_URL). It answers the same JSON as the
API (CONTRACT §2) for the requests the benchmark sends, with the least SQL
that keeps the contract's order of work:

- authentication: one query joining session and user;
- GET conversations: one query;
- GET conversations/list: one query (a row comparison on the keyset);
- GET messages: one query (ownership check, page, each message's tool
  calls as a JSON array, and the page's byte bound together);
- POST chat: one statement commits the user message (sequence taken under
  the conversation's row lock), one reads the agent's history, the stub
  agent answers with no transaction open, one statement commits the reply,
  its tool calls and the conversation's new `updated_at`.

Every statement is prepared (`prepare=True`) on a persistent autocommit
connection; each worker thread has its own, as Django's connections are.
No framework, no middleware, no validation beyond what the happy path
needs: it is a ceiling to measure against, not an API to serve.
"""

import base64
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import psycopg
from psycopg.types.json import Jsonb

from agent.backends.base import HistoryMessage
from agent.backends.stub import StubAgent

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

AUTH = """
SELECT u.id FROM "session" s JOIN "user" u ON u.id = s."userId"
WHERE s.token = %s AND s."expiresAt" > now() LIMIT 1
"""
LATEST_CONVERSATION = """
SELECT id, title, created_at, updated_at, last_sequence FROM conversations
WHERE owner_id = %s ORDER BY updated_at DESC, id DESC LIMIT 1
"""
CONVERSATION_PAGE = """
SELECT id, title, created_at, updated_at, last_sequence FROM conversations
WHERE owner_id = %(owner)s
ORDER BY updated_at DESC, id DESC LIMIT %(limit)s
"""
CONVERSATION_PAGE_AFTER = """
SELECT id, title, created_at, updated_at, last_sequence FROM conversations
WHERE owner_id = %(owner)s AND (updated_at, id) < (%(updated_at)s, %(id)s)
ORDER BY updated_at DESC, id DESC LIMIT %(limit)s
"""
# One row per message of the page, newest first, with its tool calls as a
# JSON array and how many messages were read (`limit`, at most); the page
# stops at the byte bound as the API's does. One row with NULLs when the
# conversation has none; no row when the owner has no such conversation.
MESSAGE_PAGE = """
SELECT m.id, m.role, m.content, m.created_at, m.tool_calls, m.read
FROM conversations c
{before_join}
LEFT JOIN LATERAL (
    SELECT p.*, count(*) OVER () AS read,
           sum(p.cost) OVER w AS running, row_number() OVER w AS n
    FROM (
        SELECT q.*, t.tool_calls,
               octet_length(to_json(q.content)::text)
                   + octet_length(t.tool_calls::text) + 200 AS cost
        FROM (
            SELECT id, role, content, created_at, sequence FROM messages
            WHERE conversation_id = c.id{before_filter}
            ORDER BY sequence DESC LIMIT %(limit)s
        ) q
        CROSS JOIN LATERAL (
            SELECT coalesce(json_agg(json_build_object(
                'id', tc.id, 'tool_name', tc.tool_name,
                'parameters', tc.parameters, 'result', tc.result,
                'status', tc.status
            ) ORDER BY tc.position), '[]'::json) AS tool_calls
            FROM tool_calls tc WHERE tc.message_id = q.id
        ) t
    ) p
    WINDOW w AS (ORDER BY p.sequence DESC ROWS UNBOUNDED PRECEDING)
) m ON m.n = 1 OR m.running <= %(max_bytes)s
WHERE c.id = %(conversation)s AND c.owner_id = %(owner)s
ORDER BY m.sequence DESC
"""
MESSAGE_PAGE_LATEST = MESSAGE_PAGE.format(before_join="", before_filter="")
MESSAGE_PAGE_BEFORE = MESSAGE_PAGE.format(
    before_join="JOIN messages b ON b.conversation_id = c.id AND b.id = %(before)s",
    before_filter=" AND sequence < b.sequence",
)
# The UPDATE locks the conversation's row until the statement commits, so
# concurrent senders get consecutive sequence numbers.
USER_MESSAGE = """
WITH c AS (
    UPDATE conversations SET last_sequence = last_sequence + 1, updated_at = now()
    WHERE id = %(conversation)s AND owner_id = %(owner)s
    RETURNING id, last_sequence
)
INSERT INTO messages (id, conversation_id, sequence, role, content, created_at)
SELECT %(id)s, c.id, c.last_sequence, 'user', %(content)s, now() FROM c
RETURNING sequence
"""
NEW_CONVERSATION = """
WITH c AS (
    INSERT INTO conversations (id, owner_id, last_sequence, created_at, updated_at)
    VALUES (%(conversation)s, %(owner)s, 1, now(), now())
    RETURNING id
)
INSERT INTO messages (id, conversation_id, sequence, role, content, created_at)
SELECT %(id)s, c.id, 1, 'user', %(content)s, now() FROM c
RETURNING sequence
"""
HISTORY = """
SELECT role, content FROM messages
WHERE conversation_id = %s AND sequence < %s
ORDER BY sequence DESC LIMIT %s
"""
ASSISTANT_MESSAGE = """
WITH c AS (
    UPDATE conversations SET last_sequence = last_sequence + 1, updated_at = now()
    WHERE id = %(conversation)s
    RETURNING id, last_sequence
), m AS (
    INSERT INTO messages
        (id, conversation_id, sequence, role, content, reply_to_id, created_at)
    SELECT %(id)s, c.id, c.last_sequence, 'assistant', %(content)s,
           %(reply_to)s, now()
    FROM c
    RETURNING id, created_at
), t AS (
    INSERT INTO tool_calls
        (id, message_id, position, tool_name, parameters, result, status,
         created_at)
    SELECT x.id, m.id, x.position, x.tool_name, x.parameters, x.result,
           x.status, m.created_at
    FROM m, jsonb_to_recordset(%(calls)s) AS x(
        id uuid, position smallint, tool_name text, parameters jsonb,
        result jsonb, status text
    )
)
SELECT id FROM m
"""

ROUTE = re.compile(
    r"^/api/v1/users/(?P<user>[^/]+)/(?:(?P<chat>chat)|conversations"
    r"(?:(?P<list>/list)|/(?P<conversation>[^/]+)/messages)?)/?$"
)
HISTORY_MESSAGES = int(os.environ.get("AGENT_CONTEXT_MESSAGES", "20"))
DEFAULT_PAGE_SIZE = 100
DEFAULT_LIST_SIZE = 20
# MESSAGES_PAGE_MAX_BYTES's default, less the page's own keys.
PAGE_MAX_BYTES = 1048576 - 160
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_agent = StubAgent()
_local = threading.local()


class HttpError(Exception):
    def __init__(self, status: str, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code


def application(
    environ: dict[str, Any], start_response: StartResponse
) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path in ("/healthz", "/readyz"):
        return _respond(start_response, "200 OK", {"status": "ok"})
    try:
        match = ROUTE.match(path)
        if match is None:
            raise HttpError("404 Not Found", "not_found")
        conn = _connection()
        owner = _authenticate(conn, environ)
        if match["user"] != owner:
            raise HttpError("404 Not Found", "not_found")
        method = environ["REQUEST_METHOD"]
        if match["chat"]:
            if method != "POST":
                raise HttpError("405 Method Not Allowed", "method_not_allowed")
            body = _chat(conn, owner, _json_body(environ))
        elif method != "GET":
            raise HttpError("405 Method Not Allowed", "method_not_allowed")
        elif match["conversation"]:
            body = _messages(conn, owner, match["conversation"], environ)
        elif match["list"]:
            body = _conversation_list(conn, owner, environ)
        else:
            body = _latest(conn, owner)
    except HttpError as error:
        return _respond(
            start_response, error.status, {"detail": error.code, "code": error.code}
        )
    return _respond(start_response, "200 OK", body)


def _connection() -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        url = os.environ.get("CEILING_DATABASE_URL") or os.environ["DATABASE_URL"]
        conn = psycopg.connect(url, autocommit=True, options="-c TimeZone=UTC")
        _local.conn = conn
    return conn


def _authenticate(conn: psycopg.Connection[Any], environ: dict[str, Any]) -> str:
    scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HttpError("401 Unauthorized", "not_authenticated")
    row = conn.execute(AUTH, (token,), prepare=True).fetchone()
    if row is None:
        raise HttpError("401 Unauthorized", "authentication_failed")
    owner: str = row[0]
    return owner


def _conversation(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "conversation_id": str(row[0]),
        "title": row[1],
        "created_at": _timestamp(row[2]),
        "updated_at": _timestamp(row[3]),
        "message_count": row[4],
    }


def _latest(conn: psycopg.Connection[Any], owner: str) -> dict[str, Any]:
    row = conn.execute(LATEST_CONVERSATION, (owner,), prepare=True).fetchone()
    if row is None:
        return {
            "conversation_id": None,
            "title": None,
            "created_at": None,
            "updated_at": None,
            "message_count": 0,
        }
    return _conversation(row)


def cursor(updated_at: datetime, conversation_id: uuid.UUID) -> str:
    """The list's cursor: base64url of "1:<microseconds>:<id hex>"."""
    micros = (updated_at - EPOCH) // timedelta(microseconds=1)
    text = f"1:{micros}:{conversation_id.hex}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _cursor_decode(value: str) -> tuple[datetime, uuid.UUID]:
    text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    version, micros, hex_id = text.split(":")
    if version != "1":
        raise ValueError(value)
    return EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(hex=hex_id)


def _conversation_list(
    conn: psycopg.Connection[Any], owner: str, environ: dict[str, Any]
) -> dict[str, Any]:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    try:
        limit = int(query.get("limit", [DEFAULT_LIST_SIZE])[0])
        after = _cursor_decode(query["cursor"][0]) if "cursor" in query else None
    except (ValueError, UnicodeDecodeError):
        raise HttpError("400 Bad Request", "invalid_cursor") from None
    params: dict[str, Any] = {"owner": owner, "limit": limit + 1}
    statement = CONVERSATION_PAGE
    if after is not None:
        params["updated_at"], params["id"] = after
        statement = CONVERSATION_PAGE_AFTER
    rows = conn.execute(statement, params, prepare=True).fetchall()
    has_more = len(rows) > limit
    page = rows[:limit]
    return {
        "conversations": [_conversation(row) for row in page],
        "has_more": has_more,
        "next_cursor": cursor(page[-1][3], page[-1][0]) if has_more else None,
    }


def _messages(
    conn: psycopg.Connection[Any],
    owner: str,
    conversation: str,
    environ: dict[str, Any],
) -> dict[str, Any]:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    try:
        conversation_uuid = uuid.UUID(conversation)
        limit = int(query.get("limit", [DEFAULT_PAGE_SIZE])[0])
        before = uuid.UUID(query["before"][0]) if "before" in query else None
    except ValueError:
        raise HttpError("400 Bad Request", "invalid") from None
    params = {
        "conversation": conversation_uuid,
        "owner": owner,
        "limit": limit + 1,
        "before": before,
        "max_bytes": PAGE_MAX_BYTES,
    }
    statement = MESSAGE_PAGE_LATEST if before is None else MESSAGE_PAGE_BEFORE
    rows = conn.execute(statement, params, prepare=True).fetchall()
    if not rows:
        raise HttpError("404 Not Found", "not_found")
    read = rows[0][5] or 0
    rows = [row for row in rows if row[0] is not None]
    page = rows[:limit][::-1]
    has_more = read > len(page)
    return {
        "conversation_id": str(conversation_uuid),
        "messages": [
            {
                "id": str(message_id),
                "conversation_id": str(conversation_uuid),
                "role": role,
                "content": content,
                "created_at": _timestamp(created_at),
                "tool_calls": tool_calls,
            }
            for message_id, role, content, created_at, tool_calls, _ in page
        ],
        "has_more": has_more,
        "next_before": str(page[0][0]) if has_more else None,
    }


def _chat(
    conn: psycopg.Connection[Any], owner: str, payload: dict[str, Any]
) -> dict[str, Any]:
    message = payload.get("message")
    if not isinstance(message, str) or not message.strip():
        raise HttpError("400 Bad Request", "invalid")
    user_message_id = uuid.uuid4()
    if payload.get("conversation_id") is None:
        conversation = uuid.uuid4()
        statement = NEW_CONVERSATION
    else:
        try:
            conversation = uuid.UUID(str(payload["conversation_id"]))
        except ValueError:
            raise HttpError("400 Bad Request", "invalid") from None
        statement = USER_MESSAGE
    params = {
        "conversation": conversation,
        "owner": owner,
        "id": user_message_id,
        "content": message,
    }
    row = conn.execute(statement, params, prepare=True).fetchone()
    if row is None:
        raise HttpError("404 Not Found", "not_found")
    history = [
        HistoryMessage(role=role, content=content)
        for role, content in conn.execute(
            HISTORY, (conversation, row[0], HISTORY_MESSAGES), prepare=True
        )
    ][::-1]
    reply = _agent.generate_response(user_id=owner, message=message, history=history)
    calls = [
        {
            "id": str(uuid.uuid4()),
            "position": position,
            "tool_name": call.tool_name,
            "parameters": call.parameters,
            "result": call.result,
            "status": call.status,
        }
        for position, call in enumerate(reply.tool_calls)
    ]
    assistant_message_id = uuid.uuid4()
    stored = conn.execute(
        ASSISTANT_MESSAGE,
        {
            "conversation": conversation,
            "id": assistant_message_id,
            "content": reply.content,
            "reply_to": user_message_id,
            "calls": Jsonb(calls),
        },
        prepare=True,
    ).fetchone()
    if stored is None:
        raise HttpError("404 Not Found", "not_found")
    return {
        "conversation_id": str(conversation),
        "response": reply.content,
        "user_message_id": str(user_message_id),
        "assistant_message_id": str(assistant_message_id),
        "tool_calls": [
            {
                "id": call["id"],
                "tool_name": call["tool_name"],
                "parameters": call["parameters"],
                "result": call["result"],
                "status": call["status"],
            }
            for call in calls
        ],
    }


def _json_body(environ: dict[str, Any]) -> dict[str, Any]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    try:
        payload = json.loads(environ["wsgi.input"].read(length))
    except ValueError:
        raise HttpError("400 Bad Request", "parse_error") from None
    if not isinstance(payload, dict):
        raise HttpError("400 Bad Request", "parse_error")
    return payload


def _timestamp(value: datetime) -> str:
    """As DRF renders a UTC datetime."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _respond(
    start_response: StartResponse, status: str, body: dict[str, Any]
) -> list[bytes]:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]
