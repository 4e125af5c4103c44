"""Reading the AI SDK's UI message stream in tests."""

import json
from collections.abc import Iterable
from typing import Any

DONE = "[DONE]"


def parse(raw: bytes) -> list[Any]:
    """The `data:` payloads of an event stream: parts as dicts, `[DONE]`
    as the string; comment lines (keep-alives) left out."""
    found: list[Any] = []
    for block in raw.decode().split("\n\n"):
        if not block.strip() or block.startswith(":"):
            continue
        assert block.startswith("data: "), block
        data = block.removeprefix("data: ")
        found.append(data if data == DONE else json.loads(data))
    return found


def types(events: Iterable[Any]) -> list[str]:
    return [e if isinstance(e, str) else e["type"] for e in events]


def assembled(events: Iterable[Any]) -> dict[str, Any]:
    """What the AI SDK's processUIMessageStream builds from the parts this
    API sends: the message id, its metadata, its text and its tool parts."""
    message: dict[str, Any] = {"id": None, "metadata": {}, "text": "", "tools": []}
    tools: dict[str, dict[str, Any]] = {}
    for part in events:
        if part == DONE:
            continue
        kind = part["type"]
        if kind == "start":
            message["id"] = part.get("messageId")
            message["metadata"].update(part.get("messageMetadata", {}))
        elif kind == "text-delta":
            message["text"] += part["delta"]
        elif kind == "tool-input-available":
            tool = {"id": part["toolCallId"], "name": part["toolName"]}
            tool["input"] = part["input"]
            tools[part["toolCallId"]] = tool
            message["tools"].append(tool)
        elif kind == "tool-output-available":
            tools[part["toolCallId"]]["output"] = part["output"]
        elif kind == "tool-output-error":
            tools[part["toolCallId"]]["errorText"] = part["errorText"]
    return message
