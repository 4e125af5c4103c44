"""The scripted model server answers the real `openai` SDK as OpenAI does."""

import json
import threading
import time

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from agent.tests.scripted_model import (
    Error,
    Hang,
    HangMidStream,
    Malformed,
    ScriptedModel,
    Text,
    ToolCalls,
    fragments,
    words,
)

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def client_for(model: ScriptedModel, timeout: float = 10) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=model.url, api_key="k", max_retries=0, timeout=timeout
    )


def stream_of(
    model: ScriptedModel, include_usage: bool = False
) -> list[ChatCompletionChunk]:
    stream = client_for(model).chat.completions.create(
        model="m",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True} if include_usage else openai.omit,
    )
    return list(stream)


def test_words_and_fragments_join_back_to_the_text() -> None:
    assert words("Hello  big world ") == ["Hello  ", "big ", "world "]
    assert fragments('{"title": "milk"}') == ['{"titl', 'e": "m', 'ilk"}']
    assert fragments("{}") == ["{", "}"]
    assert words("") == []
    assert fragments("") == []


def test_text_answers_a_plain_request(scripted_model: ScriptedModel) -> None:
    scripted_model.script(Text("Hello there", usage=(12, 3)))

    completion = client_for(scripted_model).chat.completions.create(
        model="m", messages=MESSAGES
    )

    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == ("Hello there", "stop")
    assert completion.model == "scripted-model"
    assert completion.usage is not None
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        12,
        3,
        15,
    )
    assert scripted_model.requests == [
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    ]
    assert scripted_model.request_headers[0]["authorization"] == "Bearer k"


def test_text_streams_word_by_word_then_usage(scripted_model: ScriptedModel) -> None:
    scripted_model.script(Text("One two three", usage=(5, 3)))

    chunks = stream_of(scripted_model, include_usage=True)

    texts = [c.choices[0].delta.content for c in chunks if c.choices]
    assert texts == ["", "One ", "two ", "three", None]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 8
    assert all(c.usage is None for c in chunks[:-1])
    assert scripted_model.requests[0]["stream"] is True


def test_text_streams_no_usage_chunk_unless_asked(
    scripted_model: ScriptedModel,
) -> None:
    scripted_model.script(Text("Hi", usage=(5, 1), pieces=["H", "i"]))

    chunks = stream_of(scripted_model)

    assert [c.choices[0].delta.content for c in chunks] == ["", "H", "i", None]


def test_text_gate_holds_the_stream_after_the_first_piece(
    scripted_model: ScriptedModel,
) -> None:
    gate = threading.Event()
    scripted_model.script(Text("first then the rest", gate=gate))
    stream = client_for(scripted_model).chat.completions.create(
        model="m", messages=MESSAGES, stream=True
    )
    received = iter(stream)

    next(received)  # the role
    assert next(received).choices[0].delta.content == "first "
    gate.set()
    rest = "".join(c.choices[0].delta.content or "" for c in received)

    assert rest == "then the rest"


def test_tool_calls_answer_a_plain_request(scripted_model: ScriptedModel) -> None:
    scripted_model.script(
        ToolCalls([("add_task", '{"title": "milk"}'), ("list_tasks", "{}")])
    )

    completion = client_for(scripted_model).chat.completions.create(
        model="m", messages=MESSAGES
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    calls = [
        (call.id, call.function.name, call.function.arguments)  # type: ignore[union-attr]
        for call in choice.message.tool_calls
    ]
    assert calls == [
        ("call_1", "add_task", '{"title": "milk"}'),
        ("call_2", "list_tasks", "{}"),
    ]


def test_tool_calls_stream_as_openai_does(scripted_model: ScriptedModel) -> None:
    arguments = json.dumps({"title": "buy milk", "description": "2 litres"})
    scripted_model.script(
        ToolCalls([("add_task", arguments), ("server_time", "{}")], usage=(9, 4)),
        ToolCalls([("list_tasks", "{}")]),
    )

    chunks = stream_of(scripted_model, include_usage=True)

    calls: dict[int, dict[str, str]] = {}
    fragments_received = 0
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if delta.id is not None:
                assert delta.function is not None
                assert delta.function.arguments == ""
                calls[delta.index] = {"id": delta.id, "name": delta.function.name or ""}
                calls[delta.index]["arguments"] = ""
            else:
                assert delta.function is not None
                calls[delta.index]["arguments"] += delta.function.arguments or ""
                fragments_received += 1
    assert calls == {
        0: {"id": "call_1", "name": "add_task", "arguments": arguments},
        1: {"id": "call_2", "name": "server_time", "arguments": "{}"},
    }
    assert fragments_received == 5  # 3 for add_task, 2 for server_time
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    # Ids go on counting across answers until the next reset.
    second = stream_of(scripted_model)
    ids = [d.id for c in second for d in (c.choices[0].delta.tool_calls or []) if d.id]
    assert ids == ["call_3"]


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (500, openai.InternalServerError),
        (401, openai.AuthenticationError),
        (429, openai.RateLimitError),
    ],
)
def test_error_raises_the_sdk_status_error(
    scripted_model: ScriptedModel, status: int, error_class: type[Exception]
) -> None:
    scripted_model.script(Error(status, headers={"retry-after": "7"}))

    with pytest.raises(error_class, match="scripted error") as raised:
        client_for(scripted_model).chat.completions.create(model="m", messages=MESSAGES)

    assert isinstance(raised.value, openai.APIStatusError)
    assert raised.value.status_code == status
    assert raised.value.response.headers["retry-after"] == "7"


def test_error_body_is_sent_as_given(scripted_model: ScriptedModel) -> None:
    body = {"error": {"message": "bad key", "type": "invalid_request_error"}}
    scripted_model.script(Error(401, body=body))

    with pytest.raises(openai.AuthenticationError) as raised:
        client_for(scripted_model).chat.completions.create(
            model="m", messages=MESSAGES, stream=True
        )

    assert raised.value.body == body["error"]


def test_exhausted_script_answers_500(scripted_model: ScriptedModel) -> None:
    scripted_model.script(Text("only one"))
    client = client_for(scripted_model)
    client.chat.completions.create(model="m", messages=MESSAGES)

    with pytest.raises(openai.InternalServerError, match="script exhausted"):
        client.chat.completions.create(model="m", messages=MESSAGES)

    assert len(scripted_model.requests) == 2
    assert scripted_model.pending == 0


def test_hang_times_out_the_client(scripted_model: ScriptedModel) -> None:
    scripted_model.script(Hang(seconds=5))
    started = time.monotonic()

    with pytest.raises(openai.APITimeoutError):
        client_for(scripted_model, timeout=0.2).chat.completions.create(
            model="m", messages=MESSAGES
        )

    assert time.monotonic() - started < 2
    assert scripted_model.wait_requests(1, timeout=0) is True


def test_hang_mid_stream_sends_the_first_pieces_then_times_out(
    scripted_model: ScriptedModel,
) -> None:
    scripted_model.script(HangMidStream("Partial answer here", after_pieces=2))
    stream = client_for(scripted_model, timeout=0.3).chat.completions.create(
        model="m", messages=MESSAGES, stream=True
    )
    received: list[str | None] = []

    def read_all() -> None:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)

    with pytest.raises((openai.APITimeoutError, httpx2.ReadTimeout)):
        read_all()

    assert received == ["Partial ", "answer "]


def test_hang_ends_when_the_model_is_reset(scripted_model: ScriptedModel) -> None:
    scripted_model.script(Hang(seconds=30))
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client_for(scripted_model).chat.completions.create(
                model="m", messages=MESSAGES
            )
        except openai.APIConnectionError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    assert scripted_model.wait_requests(1) is True
    scripted_model.reset()
    thread.join(5)

    assert not thread.is_alive()
    assert len(outcome) == 1  # the connection closed with no answer


@pytest.mark.parametrize(
    "body", [b"not json at all", b'{"id": "x", "object": "chat.completion"}']
)
def test_malformed_body_reaches_the_client(
    scripted_model: ScriptedModel, body: bytes
) -> None:
    scripted_model.script(Malformed(body))

    response = client_for(scripted_model).chat.completions.with_raw_response.create(
        model="m", messages=MESSAGES
    )

    assert response.http_response.content == body


def test_models_are_listed(scripted_model: ScriptedModel) -> None:
    scripted_model.models = ["gpt-x", "scripted-model"]

    listed = client_for(scripted_model).models.list()

    assert [model.id for model in listed.data] == ["gpt-x", "scripted-model"]
    assert scripted_model.models_request_headers[0]["authorization"] == "Bearer k"
    assert scripted_model.requests == []


def test_reset_forgets_script_records_and_models(
    scripted_model: ScriptedModel,
) -> None:
    scripted_model.script(Text("a"), Text("b"))
    client_for(scripted_model).chat.completions.create(model="m", messages=MESSAGES)
    scripted_model.models = ["other"]

    scripted_model.reset()

    assert scripted_model.pending == 0
    assert scripted_model.requests == []
    assert scripted_model.request_headers == []
    assert scripted_model.models == ["scripted-model"]
