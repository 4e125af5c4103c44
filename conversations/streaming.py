"""Streamed replies (CONTRACT §9): the AI SDK's UI message stream, made
by a thread that does not depend on the client, and relayed for resuming.

The request commits the user's message (conversations.services), then a
producer thread runs the agent (agent.runner.agent_reply_stream), turns
its items into events, writes them to the reply's buffer, and stores the
reply with its tool calls at the end, as the JSON chat does. The response
only reads the buffer: a client that goes away changes nothing for the
producer, so the reply is still completed and stored.

Resuming (GET .../chat/stream/{conversation_id}/stream) replays the reply
in progress from its first event and follows it live. The reply in
progress of each (user, conversation) is found in this process's registry,
or, with REDIS_URL set, in Redis, where the producer mirrors every event
(a Redis stream per reply, with a TTL), so any worker of any server can
resume it. docs/STREAMING.md describes the protocol and these choices.
"""

import functools
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.db import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    connections,
)
from django.dispatch import receiver
from django.http import StreamingHttpResponse

import redis
from redis.exceptions import RedisError
from rest_framework import serializers
from rest_framework.request import Request

from agent.backends.base import AgentReply, HistoryMessage, ModelUsage, ToolCall
from agent.exceptions import AgentError
from agent.runner import agent_reply_stream
from conversations.idempotency import (
    REPLAYED,
    StoredResponse,
    idempotency_key_fail,
    idempotency_key_finish,
    idempotency_key_release,
    idempotency_request_claim,
)
from conversations.models import IdempotencyKey, Message
from conversations.services import (
    ChatExchange,
    agent_failure_log,
    chat_history_for_agent,
    message_assistant_create,
    message_user_create,
)
from core.exceptions import NotFoundError

logger = logging.getLogger(__name__)

# What the AI SDK's own server helpers send (UI_MESSAGE_STREAM_HEADERS),
# but `Connection`: a hop-by-hop header is the server's, not the app's.
# X-Accel-Buffering: proxies (nginx) pass each event on as it comes.
HEADERS = {
    "Cache-Control": "no-cache",
    "x-vercel-ai-ui-message-stream": "v1",
    "X-Accel-Buffering": "no",
}
CONTENT_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"
# A comment line, which SSE parsers skip: sent while the agent is silent,
# so that proxies and load balancers do not close an idle connection.
KEEP_ALIVE = b": keep-alive\n\n"
KEEP_ALIVE_SECONDS = 15.0
# A finished reply's events stay readable this long (a slow reader, or a
# resume that found it just before it ended).
FINISHED_TTL_SECONDS = 60
# Reply stores (and their database connections) at once, per process.
STORE_CONCURRENCY = 4
# Pauses between the attempts to store a reply when the database cannot be
# reached; the last failure is the reply's error.
STORE_RETRY_PAUSES = (0.25, 0.5, 1.0, 2.0, 4.0)
_store_slots = threading.BoundedSemaphore(STORE_CONCURRENCY)


def event(part: dict[str, Any]) -> bytes:
    """One part of the UI message stream, as the SDK frames it."""
    return b"data: " + json.dumps(part, separators=(",", ":")).encode() + b"\n\n"


DELETED = "The conversation was deleted; the reply was not kept."


def error_text(exc: AgentError) -> str:
    return str(exc.detail)


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# --- the response ------------------------------------------------------------


def event_stream_response(
    chunks: Iterator[bytes], *, replayed: bool = False
) -> StreamingHttpResponse:
    """200 `text/event-stream`, sent chunk by chunk as `chunks` yields."""
    response = StreamingHttpResponse(chunks, content_type=CONTENT_TYPE)
    for name, value in HEADERS.items():
        response[name] = value
    if replayed:
        for name, value in REPLAYED.items():
            response[name] = value
    return response


def chat_stream_response(
    request: Request,
    *,
    owner_id: str,
    payload: serializers.Serializer,
    body: Callable[[ChatExchange], dict[str, Any]],
) -> StreamingHttpResponse:
    """The streamed chat: validate, claim the Idempotency-Key, commit the
    user's message, start the producer; the response follows its events.

    Everything that can fail up to the user's message raises, for the
    usual JSON error. `body(exchange)` is the JSON chat's answer, stored
    for repeats of an Idempotency-Key; a repeat gets that reply (or
    failure) replayed as a stream.
    """
    data, claim = idempotency_request_claim(request, owner_id=owner_id, payload=payload)
    if isinstance(claim, StoredResponse):
        return event_stream_response(stored_events(claim), replayed=True)
    try:
        buffer = chat_stream_start(
            owner_id=owner_id,
            content=data["message"],
            conversation_id=data.get("conversation_id"),
            create_missing=data.get("create_missing", False),
            claim=claim,
            body=body,
        )
    except BaseException:
        if claim is not None:
            idempotency_key_release(claim)
        raise
    return event_stream_response(_db_released(buffer.follow()))


def _db_released(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """`chunks`, after closing this thread's database connection: a stream
    holds its thread for the whole reply and needs no connection meanwhile
    (the next request on the thread opens a new one)."""
    if not connection.in_atomic_block:
        connection.close()
    yield from chunks


def chat_stream_start(
    *,
    owner_id: str,
    content: str,
    conversation_id: uuid.UUID | None,
    create_missing: bool,
    claim: IdempotencyKey | None,
    body: Callable[[ChatExchange], dict[str, Any]],
) -> "ReplyBuffer":
    """Commit the user's message and start the producer thread; returns
    the reply's buffer, which already holds the `start` event.

    Raises NotFoundError (nothing written) when the conversation is not the
    owner's. The producer finishes (or fails) the Idempotency-Key `claim`.
    """
    user_message = message_user_create(
        owner_id=owner_id,
        conversation_id=conversation_id,
        content=content,
        create_missing=create_missing,
    )
    history = chat_history_for_agent(user_message=user_message)
    producer = ReplyProducer(
        owner_id=owner_id,
        user_message=user_message,
        history=history,
        claim=claim,
        body=body,
    )
    producer.start()
    return producer.buffer


# --- the producer ------------------------------------------------------------


class ReplyProducer(threading.Thread):
    """Runs the agent for one reply, writes its events, stores it.

    Not a daemon: a worker process that shuts down lets its replies finish
    (each is bounded by AGENT_TIMEOUT_SECONDS) before it exits.
    """

    def __init__(
        self,
        *,
        owner_id: str,
        user_message: Message,
        history: list[HistoryMessage],
        claim: IdempotencyKey | None,
        body: Callable[[ChatExchange], dict[str, Any]],
    ) -> None:
        super().__init__(name="chat-stream")
        self.owner_id = owner_id
        self.user_message = user_message
        self.history = history
        self.claim = claim
        self.body = body
        self.message_id = uuid.uuid4()
        self.buffer = ReplyBuffer()
        self.relay = relay_open(
            owner_id=owner_id,
            conversation_id=user_message.conversation_id,
            reply_id=self.message_id,
            buffer=self.buffer,
        )
        self.write(
            event(
                {
                    "type": "start",
                    "messageId": str(self.message_id),
                    "messageMetadata": {
                        "conversationId": str(user_message.conversation_id)
                    },
                }
            )
        )

    def write(self, chunk: bytes) -> None:
        self.buffer.append(chunk)
        self.relay.append(chunk)

    def run(self) -> None:
        try:
            self.write(self._reply_events_and_store())
        except Exception:
            logger.exception(
                "Streamed reply failed in conversation %s",
                self.user_message.conversation_id,
            )
            self._release()
            self.write(event({"type": "error", "errorText": "An error occurred."}))
        finally:
            self.write(DONE)
            self.buffer.close()
            self.relay.close()

    def _reply_events_and_store(self) -> bytes:
        """Stream the agent's items; store the reply. Returns the last
        event: `finish`, or `error` when the agent failed."""
        pieces: list[str] = []
        calls: list[ToolCall] = []
        call_ids: list[uuid.UUID] = []
        usage: ModelUsage | None = None
        text_id: str | None = None
        try:
            for item in agent_reply_stream(
                user_id=self.owner_id,
                message=self.user_message.content,
                history=self.history,
            ):
                if isinstance(item, str):
                    if not item:
                        continue
                    if text_id is None:
                        text_id = f"text-{len(pieces)}"
                        self.write(event({"type": "text-start", "id": text_id}))
                    self.write(
                        event({"type": "text-delta", "id": text_id, "delta": item})
                    )
                    pieces.append(item)
                    continue
                if isinstance(item, ModelUsage):
                    # Stored with the reply, for operators: no event, and
                    # the text in progress (if any) goes on.
                    usage = item
                    continue
                if text_id is not None:
                    self.write(event({"type": "text-end", "id": text_id}))
                    text_id = None
                call_id = uuid.uuid4()
                calls.append(item)
                call_ids.append(call_id)
                for part in tool_call_parts(str(call_id), item):
                    self.write(event(part))
        except AgentError as exc:
            agent_failure_log(
                user_message=self.user_message, owner_id=self.owner_id, exc=exc
            )
            if self.claim is not None:
                claim = self.claim
                self._store(functools.partial(idempotency_key_fail, claim, exc))
            return event({"type": "error", "errorText": error_text(exc)})
        if text_id is not None:
            self.write(event({"type": "text-end", "id": text_id}))
        reply = AgentReply(
            content="".join(pieces), tool_calls=tuple(calls), usage=usage
        )
        try:
            exchange = self._store(
                functools.partial(self._reply_store, reply, call_ids)
            )
        except NotFoundError:
            # The conversation was deleted meanwhile: the reply is dropped.
            self._release()
            return event({"type": "error", "errorText": DELETED})
        if self.claim is not None:
            claim = self.claim
            self._store(
                lambda: idempotency_key_finish(
                    claim, status=200, body=self.body(exchange)
                )
            )
        return event({"type": "finish", "finishReason": "stop"})

    def _reply_store(
        self, reply: AgentReply, call_ids: list[uuid.UUID]
    ) -> ChatExchange:
        try:
            return message_assistant_create(
                user_message=self.user_message,
                reply=reply,
                message_id=self.message_id,
                tool_call_ids=call_ids,
            )
        except IntegrityError:
            # A retry of a write whose commit went through before the
            # connection broke: the reply is stored under its id already.
            stored = Message.objects.filter(pk=self.message_id).first()
            if stored is None:
                raise
            return ChatExchange(
                user_message=self.user_message,
                assistant_message=stored,
                tool_calls=list(stored.tool_calls.order_by("position")),
            )

    def _store(self, write: Callable[[], Any]) -> Any:
        """`write()` in this thread, with at most STORE_CONCURRENCY at once
        per process, closing the connection it opened.

        A database that cannot be reached (restarting, out of connections)
        is retried for a few seconds: the reply is not lost to a blip.
        """
        for pause in (*STORE_RETRY_PAUSES, None):
            with _store_slots:
                try:
                    return write()
                except (OperationalError, InterfaceError) as exc:
                    if pause is None:
                        raise
                    logger.warning(
                        "Storing reply %s failed, retrying in %.1fs: %s",
                        self.message_id,
                        pause,
                        _first_line(exc),
                    )
                finally:
                    connections.close_all()
            time.sleep(pause)
        raise AssertionError("unreachable")

    def _release(self) -> None:
        if self.claim is not None:
            claim = self.claim
            self._store(lambda: idempotency_key_release(claim))


def tool_call_parts(call_id: str, call: ToolCall) -> list[dict[str, Any]]:
    """A tool call's two parts: its input, then its output (or its error,
    whose `errorText` is the result as JSON when it is not a string)."""
    parts: list[dict[str, Any]] = [
        {
            "type": "tool-input-available",
            "toolCallId": call_id,
            "toolName": call.tool_name,
            "input": call.parameters,
        }
    ]
    if call.status == "success":
        parts.append(
            {
                "type": "tool-output-available",
                "toolCallId": call_id,
                "output": call.result,
            }
        )
    else:
        text = call.result if isinstance(call.result, str) else json.dumps(call.result)
        parts.append(
            {"type": "tool-output-error", "toolCallId": call_id, "errorText": text}
        )
    return parts


def stored_events(stored: StoredResponse) -> Iterator[bytes]:
    """A stored answer replayed as a stream: the reply of a 200 (the JSON
    chat's body) as one piece, or the failure of a 502/504 as an error."""
    body = stored.body
    if stored.status != 200:
        yield event({"type": "error", "errorText": str(body.get("detail", ""))})
        yield DONE
        return
    yield event(
        {
            "type": "start",
            "messageId": body["assistant_message_id"],
            "messageMetadata": {"conversationId": body["conversation_id"]},
        }
    )
    for call in body["tool_calls"]:
        stored_call = ToolCall(
            tool_name=call["tool_name"],
            parameters=call["parameters"],
            result=call["result"],
            status=call["status"],
        )
        for part in tool_call_parts(call["id"], stored_call):
            yield event(part)
    if body["response"]:
        yield event({"type": "text-start", "id": "text-0"})
        yield event({"type": "text-delta", "id": "text-0", "delta": body["response"]})
        yield event({"type": "text-end", "id": "text-0"})
    yield event({"type": "finish", "finishReason": "stop"})
    yield DONE


# --- relaying ----------------------------------------------------------------


class ReplyBuffer:
    """A reply's events in this process: appended by the producer, read
    from the start by any number of readers, each at its own pace."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._closed = False
        self._changed = threading.Condition()

    def append(self, chunk: bytes) -> None:
        with self._changed:
            self._chunks.append(chunk)
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def follow(self) -> Iterator[bytes]:
        """Every event from the first, then each as it comes, until the
        reply ends; a keep-alive comment when none came for a while."""
        sent = 0
        while True:
            with self._changed:
                if sent == len(self._chunks) and not self._closed:
                    self._changed.wait(KEEP_ALIVE_SECONDS)
                chunks = self._chunks[sent:]
                closed = self._closed
            sent += len(chunks)
            if chunks:
                yield b"".join(chunks)
            elif closed:
                return
            else:
                yield KEEP_ALIVE


class Relay:
    """Where a reply in progress can be found for resuming; this base
    class is the process's own registry (no REDIS_URL)."""

    _active: dict[tuple[str, uuid.UUID], ReplyBuffer] = {}
    _lock = threading.Lock()

    def __init__(self, key: tuple[str, uuid.UUID], buffer: ReplyBuffer) -> None:
        self.key = key
        self.buffer = buffer
        with self._lock:
            self._active[key] = buffer

    def append(self, chunk: bytes) -> None:
        """The buffer has it already."""

    def close(self) -> None:
        with self._lock:
            if self._active.get(self.key) is self.buffer:
                del self._active[self.key]

    @classmethod
    def follow(cls, key: tuple[str, uuid.UUID]) -> Iterator[bytes] | None:
        with cls._lock:
            buffer = cls._active.get(key)
        return None if buffer is None else buffer.follow()


class RedisRelay(Relay):
    """Also mirrors every event to Redis: a stream per reply (XADD), and a
    key per (user, conversation) naming the reply in progress. Both expire
    (a producer that died leaves nothing behind for long). A Redis that
    fails stops the mirroring, never the reply."""

    def __init__(
        self, key: tuple[str, uuid.UUID], buffer: ReplyBuffer, reply_id: uuid.UUID
    ) -> None:
        super().__init__(key, buffer)
        self.client = redis_client()
        self.active_key = _active_key(key)
        self.stream_key = f"chat:stream:reply:{reply_id}"
        self.reply_id = str(reply_id)
        self.ttl = int(settings.AGENT_TIMEOUT_SECONDS) + FINISHED_TTL_SECONDS
        self.failed = False
        self.opened = False

    def append(self, chunk: bytes) -> None:
        if self.failed:
            return
        try:
            if self.opened:
                self.client.xadd(self.stream_key, {"d": chunk})
                return
            pipe = self.client.pipeline(transaction=False)
            pipe.xadd(self.stream_key, {"d": chunk})
            pipe.expire(self.stream_key, self.ttl)
            pipe.set(self.active_key, self.reply_id, ex=self.ttl)
            pipe.execute()
            self.opened = True
        except RedisError as exc:
            self._failed(exc)

    def close(self) -> None:
        super().close()
        if self.failed or not self.opened:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.xadd(self.stream_key, {"end": b"1"})
            pipe.expire(self.stream_key, FINISHED_TTL_SECONDS)
            pipe.execute()
            self.client.eval(_DELETE_IF_OURS, 1, self.active_key, self.reply_id)
        except RedisError as exc:
            self._failed(exc)

    def _failed(self, exc: RedisError) -> None:
        self.failed = True
        logger.warning("Reply %s not relayed to Redis: %r", self.reply_id, exc)

    @classmethod
    def follow(cls, key: tuple[str, uuid.UUID]) -> Iterator[bytes] | None:
        client = redis_client()
        reply_id: Any = client.get(_active_key(key))
        if reply_id is None:
            return None
        return _redis_follow(client, f"chat:stream:reply:{reply_id.decode()}")


# Deletes KEYS[1] if it still names the reply ARGV[1] (a newer reply in the
# same conversation may have taken it over).
_DELETE_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _active_key(key: tuple[str, uuid.UUID]) -> str:
    owner_id, conversation_id = key
    # Hashed: a Better Auth id is any text, a Redis key had better not be.
    owner = hashlib.sha256(owner_id.encode()).hexdigest()[:32]
    return f"chat:stream:active:{owner}:{conversation_id}"


def _redis_follow(client: redis.Redis, stream_key: str) -> Iterator[bytes]:
    """A reply's events from Redis, from the first, then live to the end
    marker (or until the reply could no longer be running)."""
    last = "0-0"
    deadline = time.monotonic() + settings.AGENT_TIMEOUT_SECONDS + FINISHED_TTL_SECONDS
    while time.monotonic() < deadline:
        found: Any = client.xread(
            {stream_key: last}, count=500, block=int(KEEP_ALIVE_SECONDS * 1000)
        )
        if not found:
            if not client.exists(stream_key):
                return
            yield KEEP_ALIVE
            continue
        chunks: list[bytes] = []
        for entry_id, fields in found[0][1]:
            last = entry_id
            if b"end" in fields:
                if chunks:
                    yield b"".join(chunks)
                return
            chunks.append(fields[b"d"])
        yield b"".join(chunks)


def relay_open(
    *,
    owner_id: str,
    conversation_id: uuid.UUID,
    reply_id: uuid.UUID,
    buffer: ReplyBuffer,
) -> Relay:
    key = (owner_id, conversation_id)
    if settings.REDIS_URL:
        return RedisRelay(key, buffer, reply_id)
    return Relay(key, buffer)


def reply_in_progress(*, owner_id: str, conversation_id: str) -> Iterator[bytes] | None:
    """The events of the owner's reply in progress in that conversation,
    from the first; None when there is none (or the id is malformed)."""
    try:
        key = (owner_id, uuid.UUID(conversation_id))
    except ValueError:
        return None
    if settings.REDIS_URL:
        try:
            return RedisRelay.follow(key)
        except RedisError as exc:
            logger.warning("Reply not resumable, Redis unavailable: %r", exc)
            return None
    return Relay.follow(key)


@functools.cache
def _redis_client(url: str) -> redis.Redis:
    # The socket timeout is above XREAD's BLOCK, which holds a read open.
    return redis.Redis.from_url(
        url, socket_connect_timeout=1, socket_timeout=KEEP_ALIVE_SECONDS + 5
    )


def redis_client() -> redis.Redis:
    return _redis_client(settings.REDIS_URL)


@receiver(setting_changed)
def _forget_redis_client(*, setting: str, **kwargs: Any) -> None:
    if setting == "REDIS_URL":
        _redis_client.cache_clear()
