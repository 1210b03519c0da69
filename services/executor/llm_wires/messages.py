"""Reading OpenAI chat messages for the wires that translate them: content parts, images, tool calls."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

import orjson

from libs.common.contracts.errors import ErrorKind

from .base import WireFailure

__all__ = [
    "DataImage",
    "arguments_of",
    "data_image",
    "functions_of",
    "max_tokens_of",
    "parts_of",
    "refuse",
    "stop_list",
    "system_text",
    "text_of",
    "tool_choice_of",
    "tool_names_by_id",
    "turns",
]

_DATA_URL = re.compile(r"^data:(?P<mime>image/[a-z0-9.+-]+);base64,(?P<data>.+)$", re.IGNORECASE | re.DOTALL)


def refuse(detail: str) -> WireFailure:
    """A request the wire cannot express: the client's to fix, never retried."""
    return WireFailure(ErrorKind.INVALID_ARGUMENTS, detail, 400)


class DataImage:
    def __init__(self, mime: str, data: str) -> None:
        self.mime, self.data = mime.lower(), data

    @property
    def format(self) -> str:
        """`png`, `jpeg`, `gif`, `webp`: the subtype, as Bedrock names image formats."""
        return self.mime.split("/", 1)[1].replace("jpg", "jpeg")


def data_image(url: str, wire: str) -> DataImage:
    """A `data:image/...;base64,` URL's image; other URLs are refused (`wire` cannot fetch them)."""
    found = _DATA_URL.match(url)
    if found is None:
        raise refuse(f"the {wire} wire takes images as data: URLs (base64) only, not {url[:40]!r}...")
    try:
        base64.b64decode(found["data"], validate=True)
    except binascii.Error:
        raise refuse("an image's data: URL is not valid base64") from None
    return DataImage(found["mime"], found["data"])


def parts_of(content: Any) -> list[dict[str, Any]]:
    """A message's content as OpenAI parts (`text`, `image_url`); a string is one text part."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise refuse("a message's content must be a string or an array of parts")
    parts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in ("text", "image_url", "refusal"):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise refuse(f"content parts of type {kind!r} are not translated to this provider")
        if part["type"] == "refusal":
            part = {"type": "text", "text": part.get("refusal") or ""}
        parts.append(part)
    return parts


def text_of(content: Any) -> str:
    """A message's text parts joined (images are left out: tool results and system prompts are text)."""
    return "".join(part.get("text") or "" for part in parts_of(content) if part["type"] == "text")


def system_text(messages: list[dict[str, Any]]) -> str:
    """The `system` and `developer` messages' text, in order, one paragraph each."""
    return "\n\n".join(text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))


def arguments_of(call: dict[str, Any]) -> dict[str, Any]:
    """A tool call's arguments as an object (OpenAI sends them as a JSON string)."""
    raw = (call.get("function") or {}).get("arguments") or "{}"
    try:
        value = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        raise refuse(f"tool call {call.get('id')!r}: its arguments are not JSON") from None
    if not isinstance(value, dict):
        raise refuse(f"tool call {call.get('id')!r}: its arguments must be a JSON object")
    return value


def tool_names_by_id(messages: list[dict[str, Any]]) -> dict[str, str]:
    """Tool call id -> function name, from the assistant messages (wires that answer a call by name need it)."""
    return {
        call["id"]: (call.get("function") or {}).get("name") or ""
        for m in messages
        if m.get("role") == "assistant"
        for call in m.get("tool_calls") or []
        if isinstance(call, dict) and isinstance(call.get("id"), str)
    }


Block = dict[str, Any]


def turns(
    messages: list[dict[str, Any]],
    wire: str,
    content: Callable[[Any], list[Block]],
    call: Callable[[dict[str, Any]], Block],
    result: Callable[[dict[str, Any]], Block],
) -> list[tuple[str, list[Block]]]:
    """The conversation as `user` and `assistant` turns of a wire's blocks.

    `content` makes a message's text and images into blocks, `call` a tool call, `result` a tool message.
    System and developer messages are left to the wire's own field (`system_text`); consecutive turns of
    one role are merged into one (tool results after a call become one user turn), as providers that want
    user and assistant turns to alternate require."""
    found: list[tuple[str, list[Block]]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            continue
        if role == "tool":
            found.append(("user", [result(message)]))
        elif role == "assistant":
            found.append(
                ("assistant", content(message.get("content")) + [call(c) for c in message.get("tool_calls") or []])
            )
        elif role == "user":
            found.append(("user", content(message.get("content"))))
        else:
            raise refuse(f"messages with role {role!r} are not translated to {wire}")
    return _merged(found)


def _merged(turns: list[tuple[str, list[Block]]]) -> list[tuple[str, list[Block]]]:
    merged: list[tuple[str, list[Block]]] = []
    for role, blocks in turns:
        if not blocks:
            continue
        if merged and merged[-1][0] == role:
            merged[-1][1].extend(blocks)
        else:
            merged.append((role, list(blocks)))
    return merged


def stop_list(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)]


def max_tokens_of(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return value if isinstance(value, int) and value > 0 else None


def tool_choice_of(body: dict[str, Any]) -> tuple[str, str | None]:
    """(`auto` | `required` | `none` | `function`, the function's name when one is forced)."""
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        return "function", (choice.get("function") or {}).get("name")
    if choice in ("required", "none"):
        return choice, None
    return "auto", None


def functions_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's function tools (`name`, `description`, `parameters`); other tool types are refused."""
    functions = []
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise refuse("only tools of type 'function' are translated to this provider")
        function = tool.get("function") or {}
        functions.append(
            {
                "name": function.get("name") or "",
                "description": function.get("description") or "",
                "parameters": function.get("parameters") or {"type": "object", "properties": {}},
            }
        )
    return functions
