"""The ceiling: our three endpoints as a bare WSGI app on psycopg 3.

`gunicorn bench.ceiling:application -c gunicorn.conf.py`, with the database
in CEILING_DATABASE_URL (or DATABASE_URL). It answers the same JSON as the
API (CONTRACT §2) for the requests the benchmark sends, with the least SQL
that keeps the contract's order of work:

- authentication: one query joining session and user;
- GET conversations: one query;
- GET messages: one query (ownership check and page together);
- POST chat: one statement commits the user message (sequence taken under
  the conversation's row lock), one reads the agent's history, the stub
  agent answers with no transaction open, one statement commits the reply,
  its tool calls and the conversation's new `updated_at`.

Every statement is prepared (`prepare=True`) on a persistent autocommit
connection; each worker thread has its own, as Django's connections are.
No framework, no middleware, no validation beyond what the happy path
needs: it is a ceiling to measure against, not an API to serve.
"""

import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
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
SELECT id, created_at, updated_at FROM conversations
WHERE owner_id = %s ORDER BY updated_at DESC, id DESC LIMIT 1
"""
# One row per message of the page, newest first; one row with NULLs when
# the conversation has none; no row when the owner has no such conversation.
MESSAGE_PAGE = """
SELECT m.id, m.role, m.content, m.created_at
FROM conversations c
LEFT JOIN LATERAL (
    SELECT id, role, content, created_at, sequence FROM messages
    WHERE conversation_id = c.id
    ORDER BY sequence DESC LIMIT %(limit)s
) m ON true
WHERE c.id = %(conversation)s AND c.owner_id = %(owner)s
ORDER BY m.sequence DESC
"""
MESSAGE_PAGE_BEFORE = """
SELECT m.id, m.role, m.content, m.created_at
FROM conversations c
JOIN messages b ON b.conversation_id = c.id AND b.id = %(before)s
LEFT JOIN LATERAL (
    SELECT id, role, content, created_at, sequence FROM messages
    WHERE conversation_id = c.id AND sequence < b.sequence
    ORDER BY sequence DESC LIMIT %(limit)s
) m ON true
WHERE c.id = %(conversation)s AND c.owner_id = %(owner)s
ORDER BY m.sequence DESC
"""
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
    r"^/api/v1/users/(?P<user>[^/]+)/"
    r"(?:(?P<chat>chat)|conversations(?:/(?P<conversation>[^/]+)/messages)?)/?$"
)
HISTORY_MESSAGES = int(os.environ.get("AGENT_CONTEXT_MESSAGES", "20"))
DEFAULT_PAGE_SIZE = 100

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


def _latest(conn: psycopg.Connection[Any], owner: str) -> dict[str, Any]:
    row = conn.execute(LATEST_CONVERSATION, (owner,), prepare=True).fetchone()
    if row is None:
        return {"conversation_id": None, "created_at": None, "updated_at": None}
    return {
        "conversation_id": str(row[0]),
        "created_at": _timestamp(row[1]),
        "updated_at": _timestamp(row[2]),
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
    }
    statement = MESSAGE_PAGE if before is None else MESSAGE_PAGE_BEFORE
    rows = conn.execute(statement, params, prepare=True).fetchall()
    if not rows:
        raise HttpError("404 Not Found", "not_found")
    rows = [row for row in rows if row[0] is not None]
    has_more = len(rows) > limit
    page = rows[:limit][::-1]
    return {
        "conversation_id": str(conversation_uuid),
        "messages": [
            {
                "id": str(message_id),
                "conversation_id": str(conversation_uuid),
                "role": role,
                "content": content,
                "created_at": _timestamp(created_at),
            }
            for message_id, role, content, created_at in page
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
