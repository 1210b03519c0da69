"""What the fronts' request translators (`messages_in`, `responses_in`) share.

How they refuse a body, and the checks every front makes the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.ingress.llm.wire import Refused

__all__ = ["bad", "positive_int", "translated_tools"]


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
