"""An OpenAI Responses request (`POST /v1/responses`) as the chat completion the pipeline and the bus speak.

`instructions`, `input` (a string, or message, `function_call` and `function_call_output` items),
function tools, `tool_choice`, `text.format`. `previous_response_id` is the endpoint's
(`response_store`: the kept conversation goes before these messages). Built-in tools (web search, file
search, ...) and file inputs are refused with a clear 400; `reasoning` items are dropped.
docs/llm-fronts.md lists what is translated."""

from __future__ import annotations

from typing import Any

from services.ingress.llm.translate import bad, positive_int, translated_tools

__all__ = ["chat_request"]

_PASSED = ("model", "temperature", "top_p", "stream", "parallel_tool_calls", "user")
_ROLES = frozenset({"user", "assistant", "system", "developer"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "refusal"})


def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions body of a Responses request (raises `Refused` on what is not served)."""
    if body.get("background") is True:
        raise bad("background responses are not supported: this gateway runs every response while its request waits")
    chat: dict[str, Any] = {key: body[key] for key in _PASSED if key in body}
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise bad("instructions: a string is required")
    system = [{"role": "system", "content": instructions}] if instructions else []
    chat["messages"] = [*system, *_input(body.get("input"))]
    limit = body.get("max_output_tokens")
    if limit is not None:
        chat["max_tokens"] = positive_int(limit, "max_output_tokens")
    chat.update(translated_tools(body, _tool))
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    chat.update(_text_format(body.get("text")))
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        chat["reasoning_effort"] = reasoning["effort"]
    return chat


def _input(items: Any) -> list[dict[str, Any]]:
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise bad("input: a string or a non-empty array of input items is required")
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise bad(f"input[{i}]: an object is required")
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(i, item))
        elif kind == "function_call":
            _call(i, item, messages)
        elif kind == "function_call_output":
            messages.append(_output(i, item))
        elif kind != "reasoning":
            raise bad(
                f"input[{i}]: items of type {kind!r} are not accepted (message, function_call, function_call_output)"
            )
    return messages


def _message(i: int, item: dict[str, Any]) -> dict[str, Any]:
    role, content = item.get("role"), item.get("content")
    if role not in _ROLES:
        raise bad(f"input[{i}].role: one of user, assistant, system, developer is required (got {role!r})")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise bad(f"input[{i}].content: a string or an array of content parts is required")
    parts = [_part(f"input[{i}].content[{j}]", part) for j, part in enumerate(content)]
    if role != "user" or all(part["type"] == "text" for part in parts):
        if any(part["type"] != "text" for part in parts):
            raise bad(f"input[{i}].content: only a user message may hold images")
        return {"role": role, "content": "".join(part["text"] for part in parts)}
    return {"role": role, "content": parts}


def _part(where: str, part: Any) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in _TEXT_PARTS:
        text = part.get("text", part.get("refusal"))
        if not isinstance(text, str):
            raise bad(f"{where}.text: a string is required")
        return {"type": "text", "text": text}
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        image: dict[str, Any] = {"url": part["image_url"]}
        if isinstance(part.get("detail"), str):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise bad(
        f"{where}: content parts of type {kind!r} are not accepted here (input_text, output_text, input_image by url)"
    )


def _call(i: int, item: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    """A `function_call` item joins the assistant message just before it.

    (A turn's text and calls are one chat message), or starts one."""
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments", "")
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise bad(f"input[{i}]: a function_call item needs a 'call_id' and a 'name'")
    if not isinstance(arguments, str):
        raise bad(f"input[{i}].arguments: a JSON string is required")
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _output(i: int, item: dict[str, Any]) -> dict[str, Any]:
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str) or not call_id:
        raise bad(f"input[{i}].call_id: the call_id of the function_call it answers is required")
    if isinstance(output, list):
        parts = [_part(f"input[{i}].output[{j}]", part) for j, part in enumerate(output)]
        if any(part["type"] != "text" for part in parts):
            raise bad(f"input[{i}].output: only text is accepted in a function_call_output")
        output = "".join(part["text"] for part in parts)
    if not isinstance(output, str):
        raise bad(f"input[{i}].output: a string is required")
    return {"role": "tool", "tool_call_id": call_id, "content": output}


def _tool(i: int, tool: Any) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise bad(f"tools[{i}]: an object is required")
    if tool.get("type") != "function":
        raise bad(f"tools[{i}]: only function tools are served through this gateway (got {tool.get('type')!r})")
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise bad(f"tools[{i}].name: a string is required")
    parameters = tool.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise bad(f"tools[{i}].parameters: a JSON schema object is required")
    function: dict[str, Any] = {"name": name, "parameters": parameters}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise bad("tool_choice: 'auto', 'none', 'required' or {'type': 'function', 'name': ...} is required")


def _text_format(text: Any) -> dict[str, Any]:
    """`text.format` as chat's `response_format`."""
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return {}
    if fmt.get("type") == "json_object":
        return {"response_format": {"type": "json_object"}}
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        schema = {key: fmt[key] for key in ("name", "schema", "strict", "description") if key in fmt}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    raise bad("text.format: {'type': 'text' | 'json_object'} or a json_schema format with 'schema' is required")
