"""An OpenAI-compatible Chat Completions server answering from a script.

`ScriptedModel()` serves on 127.0.0.1 (a free port) in a daemon thread; give
`model.url` (ending in `/v1`) to the `openai` SDK as `base_url`. A test
queues one step per expected request with `model.script(...)`, then reads
what the client sent in `model.requests` (JSON bodies of POST
/v1/chat/completions, in order) and `model.request_headers` (their headers,
names in lower case).

Each step answers as OpenAI does: a `chat.completion` JSON object, or, when
the request has `"stream": true`, server-sent `chat.completion.chunk`s ended
by `data: [DONE]` (with `stream_options.include_usage`, a last chunk with
empty `choices` carrying the usage). A request with no step left gets a 500
whose error message says the script is exhausted, so a test expecting fewer
requests fails loudly. `GET /v1/models` lists `model.models`.
"""

import dataclasses
import json
import re
import threading
from collections import deque
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

MODEL = "scripted-model"
CREATED = 1_700_000_000  # a fixed `created` timestamp, so answers are equal
GATE_TIMEOUT = 10.0  # the longest a step waits for its gate


@dataclasses.dataclass
class Text:
    """A text answer. Streamed in `pieces` (default: word by word, each word
    with the spaces after it). With a `gate`, a stream waits for the gate
    (at most GATE_TIMEOUT s) after the first piece, and a plain answer waits
    for it before answering."""

    content: str
    model: str = MODEL
    usage: tuple[int, int] | None = None  # (prompt tokens, completion tokens)
    pieces: Sequence[str] | None = None
    gate: threading.Event | None = None


@dataclasses.dataclass
class ToolCalls:
    """An answer calling tools: `calls` is a list of (name, arguments as a
    JSON string); ids are "call_1", "call_2"... counted since the last
    `reset()`. Streamed as OpenAI does: the first delta of each call has its
    index, id, type, name and empty arguments; the next ones carry the
    arguments in a few fragments."""

    calls: Sequence[tuple[str, str]]
    content: str = ""
    model: str = MODEL
    usage: tuple[int, int] | None = None


@dataclasses.dataclass
class Error:
    """An HTTP error (500 by default; also 400, 401, 429...) with a JSON body
    shaped as OpenAI's, and extra `headers` (e.g. {"retry-after": "0"})."""

    status: int = 500
    body: dict[str, Any] | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def json_body(self) -> dict[str, Any]:
        if self.body is not None:
            return self.body
        return {
            "error": {
                "message": "scripted error",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }


@dataclasses.dataclass
class Hang:
    """No answer at all (not even headers) for `seconds`; then the connection
    is closed. `reset()` and `close()` end the wait early."""

    seconds: float = 10.0


@dataclasses.dataclass
class HangMidStream:
    """A stream that stops: sends the headers and the first `after_pieces`
    pieces of `content` (word by word), then nothing for `seconds`, then
    closes the connection without a finish reason or `[DONE]`. To a request
    without `stream`, sends the headers and half the JSON body, then hangs."""

    content: str
    after_pieces: int = 1
    seconds: float = 10.0
    model: str = MODEL


@dataclasses.dataclass
class Malformed:
    """Raw bytes as the answer (not JSON, or JSON without `choices`)."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"


Step = Text | ToolCalls | Error | Hang | HangMidStream | Malformed


def words(content: str) -> list[str]:
    """`content` cut after the spaces following each word."""
    return re.findall(r"\s*\S+\s*", content) or ([content] if content else [])


def fragments(arguments: str, count: int = 3) -> list[str]:
    """`arguments` cut into at most `count` non-empty fragments."""
    if not arguments:
        return []
    size = max(1, -(-len(arguments) // count))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


def usage_json(usage: tuple[int, int]) -> dict[str, int]:
    prompt, completion = usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class ScriptedModel:
    """The server, started on construction; `close()` stops it."""

    def __init__(self, models: Sequence[str] = (MODEL,)) -> None:
        self.default_models = list(models)
        self.models = list(models)
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self.models_request_headers: list[dict[str, str]] = []
        self._steps: deque[Step] = deque()
        self._calls = 0
        self._completions = 0
        self._released = threading.Event()
        self._received = threading.Condition()
        self._http = _Server(("127.0.0.1", 0), _Handler)
        self._http.scripted = self
        host, port = self._http.server_address[:2]
        self.url = f"http://{host!s}:{port}/v1"
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="scripted-model",
            daemon=True,
        )
        self._thread.start()

    def script(self, *steps: Step) -> None:
        """Queue the answers to the next requests, one step per request."""
        with self._received:
            self._steps.extend(steps)

    @property
    def pending(self) -> int:
        """How many scripted steps no request has taken yet."""
        with self._received:
            return len(self._steps)

    def wait_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until `count` chat completion requests have arrived."""
        with self._received:
            return self._received.wait_for(lambda: len(self.requests) >= count, timeout)

    def reset(self) -> None:
        """Forget the script and the records, restore the model list, and end
        the waits of hanging steps."""
        with self._received:
            self._steps.clear()
            self.requests.clear()
            self.request_headers.clear()
            self.models_request_headers.clear()
            self.models = list(self.default_models)
            self._calls = 0
            self._released.set()
            self._released = threading.Event()

    def close(self) -> None:
        self._released.set()
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(10)

    def _take(
        self, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[Step | None, threading.Event]:
        """Record a request; return its step (None: the script is exhausted)
        and the event that ends hangs early."""
        with self._received:
            self.requests.append(body)
            self.request_headers.append(headers)
            self._received.notify_all()
            step = self._steps.popleft() if self._steps else None
            return step, self._released

    def _next_ids(self, count: int) -> list[str]:
        with self._received:
            first = self._calls + 1
            self._calls += count
        return [f"call_{n}" for n in range(first, first + count)]

    def _completion_id(self) -> str:
        with self._received:
            self._completions += 1
            return f"chatcmpl-scripted-{self._completions}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hanging answer does not block close()
    scripted: ScriptedModel


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ScriptedModel"
    # Headers and body go out in separate writes: with Nagle's algorithm on,
    # the body would wait ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the records, not a log."""

    @property
    def scripted(self) -> ScriptedModel:
        return cast(_Server, self.server).scripted

    def _headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers.items()}

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            self._json(404, {"error": {"message": f"no route GET {self.path}"}})
            return
        self.scripted.models_request_headers.append(self._headers())
        data = [
            {"id": name, "object": "model", "created": CREATED, "owned_by": "tests"}
            for name in self.scripted.models
        ]
        self._json(200, {"object": "list", "data": data})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route POST {self.path}"}})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._json(400, {"error": {"message": "the body is not JSON"}})
            return
        step, released = self.scripted._take(body, self._headers())
        stream = body.get("stream") is True
        include_usage = stream and bool(
            (body.get("stream_options") or {}).get("include_usage")
        )
        match step:
            case None:
                message = (
                    "ScriptedModel: script exhausted: no step queued for "
                    f"request {len(self.scripted.requests)}"
                )
                self._json(500, {"error": {"message": message, "type": "exhausted"}})
            case Error():
                self._json(step.status, step.json_body(), step.headers)
            case Malformed():
                self._send(step.status, step.body, step.content_type)
            case Hang():
                released.wait(step.seconds)
                self.close_connection = True
            case HangMidStream():
                self._hang_mid_stream(step, stream, released)
            case Text() | ToolCalls() if stream:
                self._stream(step, include_usage)
            case Text() | ToolCalls():
                self._complete(step)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(
        self, status: int, body: object, headers: dict[str, str] | None = None
    ) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _complete(self, step: Text | ToolCalls) -> None:
        message: dict[str, Any] = {"role": "assistant", "content": step.content}
        finish_reason = "stop"
        if isinstance(step, Text):
            if step.gate is not None:
                step.gate.wait(GATE_TIMEOUT)
        else:
            finish_reason = "tool_calls"
            message["content"] = step.content or None
            ids = self.scripted._next_ids(len(step.calls))
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
                for call_id, (name, arguments) in zip(ids, step.calls, strict=True)
            ]
        answer: dict[str, Any] = {
            "id": self.scripted._completion_id(),
            "object": "chat.completion",
            "created": CREATED,
            "model": step.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
        }
        if step.usage is not None:
            answer["usage"] = usage_json(step.usage)
        self._json(200, answer)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        # No length: the body ends when the connection closes.
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _event(self, data: str) -> None:
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()

    def _chunk(
        self,
        step: Text | ToolCalls | HangMidStream,
        completion_id: str,
        choices: list[dict[str, Any]],
        **extra: Any,
    ) -> None:
        event = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": step.model,
            "choices": choices,
            **extra,
        }
        self._event(json.dumps(event))

    def _stream(self, step: Text | ToolCalls, include_usage: bool) -> None:
        completion_id = self.scripted._completion_id()
        # With include_usage, OpenAI sends `"usage": null` in every chunk.
        extra = {"usage": None} if include_usage else {}

        def delta(fields: dict[str, Any], finish_reason: str | None = None) -> None:
            choice = {
                "index": 0,
                "delta": fields,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            self._chunk(step, completion_id, [choice], **extra)

        self._start_stream()
        try:
            is_text = isinstance(step, Text)
            delta({"role": "assistant", "content": "" if is_text else None})
            pieces = words(step.content)
            if isinstance(step, Text) and step.pieces is not None:
                pieces = list(step.pieces)
            for number, piece in enumerate(pieces):
                delta({"content": piece})
                if number == 0 and isinstance(step, Text) and step.gate is not None:
                    step.gate.wait(GATE_TIMEOUT)
            finish_reason = "stop"
            if isinstance(step, ToolCalls):
                finish_reason = "tool_calls"
                ids = self.scripted._next_ids(len(step.calls))
                calls = zip(ids, step.calls, strict=True)
                for index, (call_id, (name, arguments)) in enumerate(calls):
                    function = {"name": name, "arguments": ""}
                    first = {"index": index, "id": call_id, "type": "function"}
                    delta({"tool_calls": [{**first, "function": function}]})
                    for fragment in fragments(arguments):
                        function = {"arguments": fragment}
                        delta({"tool_calls": [{"index": index, "function": function}]})
            delta({}, finish_reason)
            if include_usage and step.usage is not None:
                self._chunk(step, completion_id, [], usage=usage_json(step.usage))
            self._event("[DONE]")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (a test's timeout or cancellation)

    def _hang_mid_stream(
        self, step: HangMidStream, stream: bool, released: threading.Event
    ) -> None:
        try:
            if not stream:
                body = json.dumps(
                    {"id": "chatcmpl-hang", "object": "chat.completion"}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
            else:
                self._start_stream()
                completion_id = self.scripted._completion_id()
                for piece in words(step.content)[: step.after_pieces]:
                    choice = {
                        "index": 0,
                        "delta": {"content": piece},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                    self._chunk(step, completion_id, [choice])
            released.wait(step.seconds)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True
