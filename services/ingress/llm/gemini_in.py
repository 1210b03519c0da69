"""A Gemini `generateContent` request (the Generative Language API) as the OpenAI chat completion the bus speaks.

`contents` (user and model turns: text, inline or file images, `functionCall` and `functionResponse`
parts), `systemInstruction`, `tools[].functionDeclarations`, `toolConfig.functionCallingConfig` and
`generationConfig` (temperature, topP, maxOutputTokens, stopSequences, seed, penalties, JSON output).
Gemini pairs a `functionResponse` with its call by name and order (or by `id` when given); the chat
completion pairs them by id, so each call of a model turn gets an id here, carrying its
`thoughtSignature` as the executor's Gemini wire does. Server tools (Google Search, code execution, ...),
cached contents and more than one candidate are refused with a clear 400; thought parts, `topK`,
`thinkingConfig` and `safetySettings` are dropped. docs/llm-fronts.md lists both."""

from __future__ import annotations

import re
from typing import Any

import orjson

from libs.common.contracts.llm import THOUGHT_SIGNATURE
from services.ingress.llm.translate import bad, chat_function, positive_int

__all__ = ["MODEL_ROUTE", "api_key", "call_id", "chat_request", "json_schema"]

MODEL_ROUTE = re.compile(r"^/(?P<version>v1|v1beta)/models/(?P<model>[^:]+):(?P<method>[A-Za-z]+)$")
"""`POST /v1beta/models/<model>:<method>` (and `/v1/...`, the google-genai SDK's default version)."""
_REFUSED_FIELDS = {"cachedContent": "cached contents are not kept by this gateway: send the whole conversation"}
_REFUSED_CONFIG = ("responseModalities", "speechConfig", "imageConfig", "responseLogprobs")
_CONFIG = {
    "temperature": "temperature",
    "topP": "top_p",
    "seed": "seed",
    "presencePenalty": "presence_penalty",
    "frequencyPenalty": "frequency_penalty",
}
_MODES = {"AUTO": "auto", "VALIDATED": "auto", "MODE_UNSPECIFIED": "auto", "ANY": "required", "NONE": "none"}


def api_key(path: str, query: bytes, headers: dict[str, str]) -> str | None:
    """The Bastion key of a Gemini-wire request: `x-goog-api-key`, or `?key=` as Google's API takes it."""
    if headers.get("x-goog-api-key"):
        return headers["x-goog-api-key"]
    if not path.startswith("/v1beta/") and MODEL_ROUTE.match(path) is None:
        return None
    for pair in query.decode("latin-1").split("&"):
        name, _, value = pair.partition("=")
        if name == "key" and value:
            return value
    return None


def call_id(function_call: dict[str, Any], signature: Any, fallback: str) -> str:
    """The chat completion's id of a Gemini function call: its `id` (or `fallback`), then its signature."""
    given = function_call.get("id")
    base = given if isinstance(given, str) and given else fallback
    return base + THOUGHT_SIGNATURE + signature if isinstance(signature, str) and signature else base


def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions body of a Gemini request.

    `model` and `stream` come from the route (`fronts`); raises `Refused` on what is not served."""
    for field, why in _REFUSED_FIELDS.items():
        if body.get(field) is not None:
            raise bad(f"{field}: {why}")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise bad("contents: a non-empty array of contents is required")
    chat: dict[str, Any] = {"model": body.get("model"), "stream": body.get("stream") is True}
    chat["messages"] = [*_system(body.get("systemInstruction")), *_Conversation().messages(contents)]
    declarations = _declarations(body.get("tools"))
    if declarations:
        chat["tools"] = declarations
    chat.update(_tool_config(body.get("toolConfig")))
    chat.update(_generation(body.get("generationConfig")))
    return chat


def _parts_of(where: str, content: Any) -> list[Any]:
    if isinstance(content, str):  # systemInstruction as a plain string, as some clients send it
        return [{"text": content}]
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        raise bad(f"{where}.parts: an array of parts is required")
    return parts


def _system(instruction: Any) -> list[dict[str, Any]]:
    if instruction is None:
        return []
    texts = []
    for j, part in enumerate(_parts_of("systemInstruction", instruction)):
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            raise bad(f"systemInstruction.parts[{j}]: only text parts are accepted")
        texts.append(part["text"])
    text = "\n".join(texts)
    return [{"role": "system", "content": text}] if text else []


class _Conversation:
    """Gemini turns as chat messages; the calls of the last model turn await their responses by name.

    Consecutive model contents are one turn, as Gemini reads them (the google-genai SDK's chats keep a
    streamed answer as one content per chunk)."""

    def __init__(self) -> None:
        self._open: list[tuple[str, str, str]] = []
        """(Gemini id or "", name, chat id) of the last model turn's calls not answered yet."""

    def messages(self, contents: list[Any]) -> list[dict[str, Any]]:
        chat: list[dict[str, Any]] = []
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for i, content in enumerate(contents):
            where = f"contents[{i}]"
            if not isinstance(content, dict):
                raise bad(f"{where}: an object with 'role' and 'parts' is required")
            role, parts = content.get("role", "user"), _parts_of(where, content)
            if role == "model":
                if not texts and not calls:
                    self._open = []
                self._model(i, parts, texts, calls)
                continue
            if role not in ("user", "function"):
                raise bad(f"{where}.role: 'user' or 'model' is required (got {role!r})")
            if texts or calls:
                chat.append(_assistant(texts, calls))
                texts, calls = [], []
            chat += self._user(where, parts)
        return [*chat, _assistant(texts, calls)] if texts or calls else chat

    def _model(self, i: int, parts: list[Any], texts: list[str], calls: list[dict[str, Any]]) -> None:
        """One model content's text and calls, added to the turn's."""
        where = f"contents[{i}]"
        for j, part in enumerate(parts):
            if not isinstance(part, dict):
                raise bad(f"{where}.parts[{j}]: an object is required")
            if part.get("thought") is True:
                continue  # the model's thinking: not sent back to any provider
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part.get("functionCall"), dict):
                calls.append(self._call(f"{where}.parts[{j}]", part, f"call_{i}_{j}"))
            else:
                raise bad(f"{where}.parts[{j}]: a model turn holds text and functionCall parts only")

    def _call(self, where: str, part: dict[str, Any], fallback: str) -> dict[str, Any]:
        call = part["functionCall"]
        name, args = call.get("name"), call.get("args", {})
        if not isinstance(name, str) or not name:
            raise bad(f"{where}.functionCall.name: a string is required")
        if not isinstance(args, dict):
            raise bad(f"{where}.functionCall.args: an object is required")
        chat_id = call_id(call, part.get("thoughtSignature"), fallback)
        given = call.get("id") if isinstance(call.get("id"), str) else ""
        self._open.append((given, name, chat_id))
        function = {"name": name, "arguments": orjson.dumps(args).decode()}
        return {"id": chat_id, "type": "function", "function": function}

    def _user(self, where: str, parts: list[Any]) -> list[dict[str, Any]]:
        """A user turn: its function responses as `tool` messages first, then the rest as one user message."""
        results: list[dict[str, Any]] = []
        content: list[dict[str, Any]] = []
        for j, part in enumerate(parts):
            at = f"{where}.parts[{j}]"
            if not isinstance(part, dict):
                raise bad(f"{at}: an object is required")
            if isinstance(part.get("functionResponse"), dict):
                results.append(self._response(at, part["functionResponse"]))
            elif part.get("thought") is not True:
                content.append(_part(at, part))
        self._open = []
        if not content:
            return results
        only_text = all(part["type"] == "text" for part in content)
        text: Any = "\n".join(part["text"] for part in content) if only_text else content
        return [*results, {"role": "user", "content": text}]

    def _response(self, where: str, response: dict[str, Any]) -> dict[str, Any]:
        name, given = response.get("name"), response.get("id")
        if not isinstance(name, str) or not name:
            raise bad(f"{where}.functionResponse.name: the name of the function it answers is required")
        matches = [c for c in self._open if given and c[0] == given] or [c for c in self._open if c[1] == name]
        if not matches:
            raise bad(
                f"{where}.functionResponse: it answers no functionCall named {name!r} of the model turn before it"
            )
        self._open.remove(matches[0])
        return {"role": "tool", "tool_call_id": matches[0][2], "content": _result_text(response.get("response"))}


def _assistant(texts: list[str], calls: list[dict[str, Any]]) -> dict[str, Any]:
    # no text: null beside calls, as OpenAI sends it; an empty string alone
    text = "".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _result_text(response: Any) -> str:
    """A function response as the text a tool message carries.

    `{"result": ...}` or `{"output": ...}` alone is its value; `{"error": ...}` alone an error text."""
    if isinstance(response, dict) and len(response) == 1:
        ((key, value),) = response.items()
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        if key in ("result", "output"):
            return text
        if key == "error":
            return f"Error: {text}"
    return orjson.dumps(response if response is not None else {}).decode()


def _part(where: str, part: dict[str, Any]) -> dict[str, Any]:
    if isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    inline = part.get("inlineData")
    if isinstance(inline, dict):
        mime, data = inline.get("mimeType"), inline.get("data")
        if isinstance(mime, str) and mime.startswith("image/") and isinstance(data, str):
            return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
        raise bad(f"{where}.inlineData: only images (an image/* mimeType and base64 data) are accepted")
    file = part.get("fileData")
    if isinstance(file, dict):
        mime, uri = file.get("mimeType"), file.get("fileUri")
        if isinstance(mime, str) and mime.startswith("image/") and isinstance(uri, str):
            return {"type": "image_url", "image_url": {"url": uri}}
        raise bad(f"{where}.fileData: only images (an image/* mimeType and a fileUri) are accepted")
    kinds = sorted(key for key in part if key not in ("thoughtSignature", "thought"))
    raise bad(f"{where}: parts of kind {kinds} are not accepted here (text, inlineData, fileData, function parts)")


def _declarations(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise bad("tools: an array is required")
    functions = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise bad(f"tools[{i}]: an object is required")
        other = sorted(key for key in tool if key != "functionDeclarations")
        if other:
            raise bad(f"tools[{i}]: server tools ({other[0]}) are not served through this gateway")
        declared = tool.get("functionDeclarations") or []
        if not isinstance(declared, list):
            raise bad(f"tools[{i}].functionDeclarations: an array is required")
        functions += [_function(f"tools[{i}].functionDeclarations[{j}]", d) for j, d in enumerate(declared)]
    return functions


def _function(where: str, declaration: Any) -> dict[str, Any]:
    name = declaration.get("name") if isinstance(declaration, dict) else None
    if not isinstance(name, str) or not name:
        raise bad(f"{where}.name: a string is required")
    assert isinstance(declaration, dict)
    schema = declaration.get("parametersJsonSchema")
    if schema is None:
        schema = json_schema(declaration.get("parameters") or {"type": "OBJECT", "properties": {}})
    if not isinstance(schema, dict):
        raise bad(f"{where}.parameters: a schema object is required")
    return chat_function(name, schema, declaration.get("description"))


def json_schema(schema: Any) -> Any:
    """Gemini's OpenAPI `Schema` (`type: "OBJECT"`, `nullable`, `propertyOrdering`) as a JSON schema."""
    if isinstance(schema, list):
        return [json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            converted["type"] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            converted["properties"] = {name: json_schema(inner) for name, inner in value.items()}
        elif key in ("items", "anyOf"):
            converted[key] = json_schema(value)
        elif key not in ("nullable", "propertyOrdering"):
            converted[key] = value
    if schema.get("nullable") is True and isinstance(converted.get("type"), str):
        converted["type"] = [converted["type"], "null"]
    return converted


def _tool_config(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    calling = config.get("functionCallingConfig") if isinstance(config, dict) else None
    if calling is None:
        return {}
    mode = calling.get("mode", "AUTO") if isinstance(calling, dict) else None
    if mode not in _MODES:
        raise bad("toolConfig.functionCallingConfig.mode: AUTO, ANY, NONE or VALIDATED is required")
    assert isinstance(calling, dict)
    allowed = calling.get("allowedFunctionNames")
    if mode == "ANY" and isinstance(allowed, list) and len(allowed) == 1 and isinstance(allowed[0], str):
        return {"tool_choice": {"type": "function", "function": {"name": allowed[0]}}}
    return {"tool_choice": _MODES[mode]}


def _generation(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise bad("generationConfig: an object is required")
    for field in _REFUSED_CONFIG:
        if config.get(field) not in (None, False, ["TEXT"]):
            raise bad(f"generationConfig.{field}: only text answers are served through this gateway")
    if config.get("candidateCount") not in (None, 1):
        raise bad("generationConfig.candidateCount: one candidate is served through this gateway")
    chat: dict[str, Any] = {ours: config[theirs] for theirs, ours in _CONFIG.items() if theirs in config}
    if config.get("maxOutputTokens") is not None:
        chat["max_tokens"] = positive_int(config["maxOutputTokens"], "generationConfig.maxOutputTokens")
    stop = config.get("stopSequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise bad("generationConfig.stopSequences: an array of strings is required")
        chat["stop"] = stop
    if config.get("responseMimeType") == "application/json":
        schema = config.get("responseJsonSchema") or json_schema(config.get("responseSchema"))
        chat["response_format"] = (
            {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
            if isinstance(schema, dict)
            else {"type": "json_object"}
        )
    return chat
