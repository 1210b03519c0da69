"""MCP tools as OpenAI function tools, and back: pure functions the `/v1` endpoint is made of."""

from __future__ import annotations

from typing import Any

import orjson

from libs.common.contracts.json_codec import loads_object
from libs.common.contracts.llm import THOUGHT_SIGNATURE
from libs.common.contracts.messages import new_id
from services.ingress.llm import gemini_in

__all__ = [
    "ToolCallProblem",
    "answer_in_form",
    "app_tool_names",
    "as_tool_call",
    "function_tool",
    "merged_tools",
    "parse_tool_call",
    "tool_message",
]


class ToolCallProblem(ValueError):
    """The `tool_call` given to `/v1/mcp/tool/execute` is not one OpenAI would send."""


def function_tool(definition: dict[str, Any]) -> dict[str, Any]:
    """One MCP tool definition as `tools/list` lists it.

    As an OpenAI `function` tool (its gateway name; gateway names are at most 64 characters)."""
    function: dict[str, Any] = {
        "name": definition["name"],
        "parameters": definition.get("inputSchema") or {"type": "object", "properties": {}},
    }
    description = definition.get("description") or definition.get("title")
    if isinstance(description, str) and description:
        function["description"] = description
    return {"type": "function", "function": function}


def app_tool_names(app_tools: list[Any]) -> set[str]:
    names = set()
    for tool in app_tools:
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
            name = tool["function"].get("name")
            if isinstance(name, str):
                names.add(name)
    return names


def merged_tools(app_tools: list[Any], mcp_tools: list[dict[str, Any]]) -> tuple[list[Any], set[str]]:
    """The application's tools first.

    Then the MCP tools whose names it does not use (the application's own tool wins a clash); and the
    names of the MCP tools that made it in."""
    taken = app_tool_names(app_tools)
    kept = [tool for tool in mcp_tools if tool["function"]["name"] not in taken]
    return [*app_tools, *kept], {tool["function"]["name"] for tool in kept}


def as_tool_call(body: Any) -> tuple[str, Any]:
    """(form, OpenAI tool_call) of what `/v1/mcp/tool/execute` was given.

    An OpenAI `tool_call` ("chat"), an Anthropic `tool_use` block ("messages"), a Responses
    `function_call` item ("responses") or a Gemini `functionCall` part ("gemini"), so each front's
    client executes a call in the form its model proposed it."""
    kind = body.get("type") if isinstance(body, dict) else None
    if kind == "tool_use":
        arguments = body.get("input", {})
        if not isinstance(arguments, dict):
            raise ToolCallProblem("'input' must be the tool_use block's input object")
        function = {"name": body.get("name"), "arguments": arguments}
        return "messages", {"id": body.get("id"), "type": "function", "function": function}
    if kind == "function_call":
        function = {"name": body.get("name"), "arguments": body.get("arguments")}
        return "responses", {"id": body.get("call_id"), "type": "function", "function": function}
    if isinstance(body, dict) and isinstance(body.get("functionCall"), dict):
        return "gemini", _gemini_call(body)
    return "chat", body


def _gemini_call(part: dict[str, Any]) -> dict[str, Any]:
    """A Gemini `functionCall` part as a tool call; its id carries the part's `thoughtSignature` (`gemini_in`)."""
    call = part["functionCall"]
    arguments = call.get("args", {})
    if not isinstance(arguments, dict):
        raise ToolCallProblem("'functionCall.args' must be the call's argument object")
    call_id = gemini_in.call_id(call, part.get("thoughtSignature"), f"call_{new_id()}")
    return {"id": call_id, "type": "function", "function": {"name": call.get("name"), "arguments": arguments}}


def answer_in_form(form: str, message: dict[str, Any], is_error: bool, name: str = "") -> dict[str, Any]:
    """The `tool` message of a call (to the tool `name`), in the form the call came in (`as_tool_call`)."""
    if form == "gemini":
        given = message["tool_call_id"].partition(THOUGHT_SIGNATURE)[0]
        response = {"error" if is_error else "result": message["content"]}
        return {"functionResponse": {"id": given, "name": name, "response": response}}
    if form == "messages":
        result = {"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": message["content"]}
        return {**result, "is_error": True} if is_error else result
    if form == "responses":
        return {"type": "function_call_output", "call_id": message["tool_call_id"], "output": message["content"]}
    return message


def parse_tool_call(body: Any) -> tuple[str, str, dict[str, Any]]:
    """(tool_call id, function name, arguments) of an OpenAI `tool_call` (or `{"tool_call": ...}`)."""
    if isinstance(body, dict) and isinstance(body.get("tool_call"), dict):
        body = body["tool_call"]
    if not isinstance(body, dict):
        raise ToolCallProblem("the body must be one OpenAI tool_call object")
    call_id, function = body.get("id"), body.get("function")
    if not isinstance(call_id, str) or not call_id:
        raise ToolCallProblem("'id' must be the tool_call's id (a string)")
    if body.get("type", "function") != "function" or not isinstance(function, dict):
        raise ToolCallProblem("only tool calls of type 'function' can be executed")
    name, raw = function.get("name"), function.get("arguments")
    if not isinstance(name, str) or not name:
        raise ToolCallProblem("'function.name' must be the tool's name (a string)")
    if raw is None or raw == "":
        return call_id, name, {}
    if isinstance(raw, dict):
        return call_id, name, raw
    if not isinstance(raw, str):
        raise ToolCallProblem("'function.arguments' must be a JSON object encoded as a string")
    try:
        return call_id, name, loads_object(raw)
    except ValueError as exc:
        raise ToolCallProblem(f"'function.arguments' is {exc}") from None


def tool_message(call_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """The `tool` message to append for an MCP `CallToolResult`.

    Its text blocks joined, anything else (images, resources, structured content without text) as JSON."""
    blocks = result.get("content") or []
    texts = [block["text"] for block in blocks if isinstance(block, dict) and block.get("type") == "text"]
    if texts and len(texts) == len(blocks):
        content = "\n".join(texts)
    elif result.get("structuredContent") is not None and not blocks:
        content = orjson.dumps(result["structuredContent"]).decode()
    else:
        content = orjson.dumps(blocks).decode()
    if result.get("isError"):
        content = f"Error: {content}"
    return {"role": "tool", "tool_call_id": call_id, "content": content}
