"""What the fronts' request translators (`messages_in`, `responses_in`) share.

How they refuse a body, and the checks every front makes the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from services.ingress.llm.wire import Refused

__all__ = ["bad", "chat_function", "estimated_tokens", "positive_int", "translated_tools"]

_CHARS_PER_TOKEN = 4
"""The estimate token counts answer: about four characters of the request's text per token."""


def bad(message: str) -> Refused:
    """A 400 in the front's error shape (the endpoint renders it), naming the field at fault."""
    return Refused(400, message, code="invalid_request")


def positive_int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise bad(f"{name}: a positive integer is required")
    return value


def translated_tools(body: dict[str, Any], translate: Callable[[int, Any], dict[str, Any]]) -> dict[str, Any]:
    """`{"tools": [...]}` as chat function tools, each translated by `translate(index, tool)`; `{}` without tools."""
    tools = body.get("tools")
    if tools is None:
        return {}
    if not isinstance(tools, list):
        raise bad("tools: an array is required")
    return {"tools": [translate(i, tool) for i, tool in enumerate(tools)]}


def estimated_tokens(chat: dict[str, Any]) -> int:
    """An estimate of a translated request's input tokens (no provider is asked).

    Its messages and tools at about four characters a token. The key's MCP tools, which a completion
    adds, are not counted."""
    size = len(orjson.dumps(chat["messages"])) + len(orjson.dumps(chat.get("tools") or []))
    return max(1, size // _CHARS_PER_TOKEN)


def chat_function(name: str, parameters: dict[str, Any], description: Any) -> dict[str, Any]:
    """A chat completion's function tool (`description` kept when it is a string)."""
    function: dict[str, Any] = {"name": name, "parameters": parameters}
    if isinstance(description, str):
        function["description"] = description
    return {"type": "function", "function": function}
