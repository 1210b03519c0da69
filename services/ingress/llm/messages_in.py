"""An Anthropic Messages request (`POST /v1/messages`) as the OpenAI chat completion the pipeline and the bus speak.

System, text and image blocks, `tool_use` and `tool_result` blocks, tools and `tool_choice`. What
Messages has and chat completions lacks is refused with a clear 400 (server tools, documents) or dropped
where it changes nothing the model is asked (`cache_control`, `thinking` blocks and settings, `top_k`,
`metadata`); docs/llm-fronts.md lists both."""

from __future__ import annotations

from typing import Any

import orjson

from services.ingress.llm.translate import bad, chat_function, estimated_tokens, positive_int, translated_tools

__all__ = ["chat_request", "count_tokens"]

_PASSED = ("temperature", "top_p", "stream")
_DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})


def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions body of a Messages request (raises `Refused` on what Messages refuses)."""
    max_tokens = positive_int(body.get("max_tokens"), "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages: a non-empty array of messages is required")
    chat: dict[str, Any] = {"model": body.get("model"), "max_tokens": max_tokens}
    chat["messages"] = [*_system(body.get("system")), *_messages(messages)]
    chat.update({key: body[key] for key in _PASSED if key in body})
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise bad("stop_sequences: an array of strings is required")
        chat["stop"] = stop
    chat.update(translated_tools(body, _tool))
    if body.get("tool_choice") is not None:
        chat.update(_tool_choice(body["tool_choice"]))
    return chat


def count_tokens(body: dict[str, Any]) -> int:
    """An estimate of a Messages request's input tokens (no provider is asked).

    Its translated text at about four characters a token. The key's MCP tools, which a completion adds,
    are not counted."""
    if "max_tokens" not in body:
        body = {**body, "max_tokens": 1}  # count_tokens requests carry none
    return estimated_tokens(chat_request(body))


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None or system == "":
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    if not isinstance(system, list):
        raise bad("system: a string or an array of text blocks is required")
    texts = []
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise bad(f"system.{i}: only text blocks are accepted")
        texts.append(block["text"])
    return [{"role": "system", "content": "\n".join(texts)}] if texts else []


def _messages(messages: list[Any]) -> list[dict[str, Any]]:
    chat: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad(f"messages.{i}: an object with 'role' and 'content' is required")
        role, content = message.get("role"), message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise bad(f"messages.{i}.content: a string or an array of content blocks is required")
        if role == "user":
            chat += _user(i, content)
        elif role == "assistant":
            chat.append(_assistant(i, content))
        else:
            raise bad(f"messages.{i}.role: 'user' or 'assistant' is required (got {role!r})")
    return chat


def _user(i: int, blocks: list[Any]) -> list[dict[str, Any]]:
    """A user turn.

    Its `tool_result` blocks as `tool` messages first (they must follow the assistant's calls), then the
    rest as one user message; a tool result's images follow in a user message of their own, since a
    `tool` message carries text only."""
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        where = f"messages.{i}.content.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result":
            message, images = _tool_result(where, block)
            results.append(message)
            parts += images
        elif kind in _DROPPED_BLOCKS:
            continue
        else:
            parts.append(_part(where, block))
    if not parts:
        return results
    only_text = all(part["type"] == "text" for part in parts)
    content: Any = "\n".join(part["text"] for part in parts) if only_text else parts
    return [*results, {"role": "user", "content": content}]


def _part(where: str, block: Any) -> dict[str, Any]:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise bad(f"{where}.text: a string is required")
        return {"type": "text", "text": block["text"]}
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _image_url(where, block.get("source"))}}
    raise bad(f"{where}: content blocks of type {kind!r} are not accepted here (text, image, tool_use, tool_result)")


def _image_url(where: str, source: Any) -> str:
    if isinstance(source, dict) and source.get("type") == "base64":
        media, data = source.get("media_type"), source.get("data")
        if isinstance(media, str) and media.startswith("image/") and isinstance(data, str):
            return f"data:{media};base64,{data}"
    if isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
        return str(source["url"])
    raise bad(f"{where}.source: a base64 image (media_type, data) or an image url is required")


def _tool_result(where: str, block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    call_id, content = block.get("tool_use_id"), block.get("content")
    if not isinstance(call_id, str) or not call_id:
        raise bad(f"{where}.tool_use_id: the id of the tool_use block it answers is required")
    if content is None:
        content = []
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise bad(f"{where}.content: a string or an array of text and image blocks is required")
    parts = [_part(f"{where}.content.{k}", inner) for k, inner in enumerate(content)]
    text = "\n".join(part["text"] for part in parts if part["type"] == "text")
    if block.get("is_error") is True:
        text = f"Error: {text}"
    images = [part for part in parts if part["type"] != "text"]
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _assistant(i: int, blocks: list[Any]) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        where = f"messages.{i}.content.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
            if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
                raise bad(f"{where}: a tool_use block needs an 'id' and a 'name'")
            if not isinstance(arguments, dict):
                raise bad(f"{where}.input: an object is required")
            function = {"name": name, "arguments": orjson.dumps(arguments).decode()}
            calls.append({"id": call_id, "type": "function", "function": function})
        elif kind not in _DROPPED_BLOCKS:
            raise bad(f"{where}: an assistant turn holds text and tool_use blocks only (got {kind!r})")
    # no text: null beside calls, as OpenAI sends it; an empty string alone (strict providers refuse
    # an assistant message with neither content nor calls)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool(i: int, tool: Any) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise bad(f"tools.{i}: an object is required")
    if tool.get("type") not in (None, "custom"):
        raise bad(f"tools.{i}: server tools ({tool.get('type')!r}) are not served through this gateway")
    name, schema = tool.get("name"), tool.get("input_schema")
    if not isinstance(name, str) or not name:
        raise bad(f"tools.{i}.name: a string is required")
    if not isinstance(schema, dict):
        raise bad(f"tools.{i}.input_schema: a JSON schema object is required")
    return chat_function(name, schema, tool.get("description"))


def _tool_choice(choice: Any) -> dict[str, Any]:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if not isinstance(choice, dict) or kind not in ("auto", "any", "none", "tool"):
        raise bad("tool_choice: {'type': 'auto' | 'any' | 'none'} or {'type': 'tool', 'name': ...} is required")
    if kind == "none":
        return {"tool_choice": "none"}
    parallel = {"parallel_tool_calls": False} if choice.get("disable_parallel_tool_use") is True else {}
    if kind == "tool":
        if not isinstance(choice.get("name"), str):
            raise bad("tool_choice.name: the name of the tool to use is required")
        return {"tool_choice": {"type": "function", "function": {"name": choice["name"]}}, **parallel}
    return {"tool_choice": "auto" if kind == "auto" else "required", **parallel}
