"""Google's Gemini wire, `generateContent` and `streamGenerateContent?alt=sse`.

The Generative Language API (`x-goog-api-key`) here, Vertex AI (`vertex.py`: its URL, a bearer token)
beside it.

Translated: system and developer messages to `systemInstruction`; text and base64 images
(`inlineData`); tool calls to `functionCall` parts and tool messages to `functionResponse` parts
(named by the call they answer: Gemini pairs them by name and order); tools as
`functionDeclarations` with `parametersJsonSchema` (a JSON schema as MCP tools give it), `tool_choice`
as `functionCallingConfig`; `max_tokens`, `temperature`, `top_p`, `stop`, `seed`, the penalties,
`response_format` (JSON, with its schema). Answers: text (thought parts left out), function calls
(Gemini gives them no id: one is made, carrying the call's `thoughtSignature`, which Gemini wants
back with the call), finish reasons, usage with cached and thinking tokens.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx2
import orjson

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.llm import THOUGHT_SIGNATURE, Usage
from libs.common.contracts.llm_config import ProviderConfig

from .base import Outgoing, WireFailure, chat_completion, failure_of, json_detail, token_count
from .messages import (
    arguments_of,
    data_image,
    functions_of,
    max_tokens_of,
    parts_of,
    refuse,
    stop_list,
    system_text,
    text_of,
    tool_choice_of,
    tool_names_by_id,
    turns,
)
from .sse import JsonEventDecoder

__all__ = ["GeminiWire", "translated"]

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
_DELAY = re.compile(r"^(\d+(?:\.\d+)?)s$")


class GeminiWire:
    def __init__(self, config: ProviderConfig, credential: str | None) -> None:
        base = httpx2.URL(config.base_url)
        self._base = base.copy_with(path=base.path.rstrip("/") + self._models_path(config))
        self.endpoint = self._base
        self._headers = {"content-type": "application/json", **self._auth(credential)}
        # each model's URL made once per wire (an httpx URL costs ~0.1 ms to build)
        self._url = functools.lru_cache(maxsize=256)(self._make_url)

    @staticmethod
    def _models_path(_config: ProviderConfig) -> str:
        return "/models"

    @staticmethod
    def _auth(credential: str | None) -> dict[str, str]:
        return {"x-goog-api-key": credential} if credential else {}

    async def request(self, body: dict[str, Any], streaming: bool) -> Outgoing:
        url = self._url(str(body.get("model") or ""), streaming)
        return Outgoing(url, self._headers, orjson.dumps(translated(body)))

    def _make_url(self, model: str, streaming: bool) -> httpx2.URL:
        method = "streamGenerateContent" if streaming else "generateContent"
        url = self._base.copy_with(path=f"{self._base.path}/{quote(model, safe='')}:{method}")
        return url.copy_merge_params({"alt": "sse"}) if streaming else url

    def completion(self, payload: Any, model: str) -> dict[str, Any]:
        if not isinstance(payload, dict) or not ("candidates" in payload or "promptFeedback" in payload):
            raise WireFailure(ErrorKind.UPSTREAM_ERROR, "the provider's answer is not a GenerateContentResponse")
        texts, calls, finish = _answer(payload)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
        if calls:
            message["tool_calls"] = calls
        usage = _usage(payload.get("usageMetadata"))
        return chat_completion(str(payload.get("responseId") or ""), model, message, finish, usage)

    def decoder(self, model: str) -> GeminiDecoder:
        return GeminiDecoder(model)

    def failure(self, status: int, body: bytes, headers: Mapping[str, str]) -> WireFailure:
        failure = failure_of(status, json_detail(body, "error", "message"), headers)
        if failure.retry_after is None:
            failure.retry_after = _retry_delay(body)
        return failure


def _retry_delay(body: bytes) -> float | None:
    """`google.rpc.RetryInfo`'s `retryDelay` (`"30s"`) in an error's details."""
    try:
        details = orjson.loads(body)["error"]["details"]
        for detail in details:
            found = _DELAY.match(str(detail.get("retryDelay") or ""))
            if found:
                return float(found[1])
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        pass
    return None


def _usage(metadata: Any) -> Usage | None:
    """Gemini's `usageMetadata`: thinking tokens are output tokens OpenAI counts as completion tokens."""
    if not isinstance(metadata, dict):
        return None
    count = functools.partial(token_count, metadata)

    prompt = count("promptTokenCount") + count("toolUsePromptTokenCount")
    completion = count("candidatesTokenCount") + count("thoughtsTokenCount")
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=count("totalTokenCount") or prompt + completion,
        cached_tokens=count("cachedContentTokenCount"),
        reasoning_tokens=count("thoughtsTokenCount"),
    )


def _call(part: dict[str, Any]) -> dict[str, Any]:
    """A `functionCall` part as an OpenAI tool call (its id carries the part's thought signature)."""
    call = part["functionCall"]
    call_id = str(call.get("id") or f"call_{secrets.token_hex(8)}")
    if isinstance(part.get("thoughtSignature"), str):
        call_id += THOUGHT_SIGNATURE + part["thoughtSignature"]
    arguments = orjson.dumps(call.get("args") or {}).decode()
    return {"id": call_id, "type": "function", "function": {"name": call.get("name") or "", "arguments": arguments}}


def _answer(payload: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]], str | None]:
    """The first candidate's text, tool calls and finish reason (a blocked prompt: `content_filter`)."""
    candidates = payload.get("candidates") or []
    if not candidates:
        blocked = (payload.get("promptFeedback") or {}).get("blockReason")
        return [], [], "content_filter" if blocked else None
    candidate = candidates[0] if isinstance(candidates[0], dict) else {}
    texts, calls = [], []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if not isinstance(part, dict) or part.get("thought") is True:
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(part.get("functionCall"), dict):
            calls.append(_call(part))
    reason = candidate.get("finishReason")
    finish = None if reason is None else FINISH_REASONS.get(reason, "stop")
    return texts, calls, "tool_calls" if calls and finish == "stop" else finish


def translated(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages") or []
    conversation = turns(messages, "Gemini", _parts, _function_call, _result(tool_names_by_id(messages)))
    request: dict[str, Any] = {
        "contents": [
            {"role": "model" if role == "assistant" else "user", "parts": parts} for role, parts in conversation
        ]
    }
    system = system_text(messages)
    if system:
        request["systemInstruction"] = {"parts": [{"text": system}]}
    functions = functions_of(body)
    if functions:
        declarations = [
            {"name": f["name"], "description": f["description"], "parametersJsonSchema": f["parameters"]}
            for f in functions
        ]
        request["tools"] = [{"functionDeclarations": declarations}]
        request["toolConfig"] = {"functionCallingConfig": _calling(body)}
    config = _generation(body)
    if config:
        request["generationConfig"] = config
    return request


def _calling(body: dict[str, Any]) -> dict[str, Any]:
    mode, name = tool_choice_of(body)
    if mode == "function":
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    return {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}[mode]}


def _generation(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if max_tokens_of(body):
        config["maxOutputTokens"] = max_tokens_of(body)
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if isinstance(body.get(ours), int | float) and not isinstance(body.get(ours), bool):
            config[theirs] = body[ours]
    if stop_list(body):
        config["stopSequences"] = stop_list(body)
    response_format = body.get("response_format") or {}
    if response_format.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            config["responseJsonSchema"] = schema
    return config


def _function_call(call: dict[str, Any]) -> dict[str, Any]:
    name = (call.get("function") or {}).get("name") or ""
    part: dict[str, Any] = {"functionCall": {"name": name, "args": arguments_of(call)}}
    _, _, signature = str(call.get("id") or "").partition(THOUGHT_SIGNATURE)
    if signature:
        part["thoughtSignature"] = signature
    return part


def _result(names: dict[str, str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Tool messages as `functionResponse` parts, named by the call each answers (`names`: id -> name)."""

    def made(message: dict[str, Any]) -> dict[str, Any]:
        call_id = str(message.get("tool_call_id") or "")
        if call_id not in names:
            raise refuse(f"tool message answers {call_id!r}, which no assistant message called")
        return {"functionResponse": {"name": names[call_id], "response": {"result": text_of(message.get("content"))}}}

    return made


def _parts(content: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for part in parts_of(content):
        if part["type"] == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        else:
            image = data_image((part.get("image_url") or {}).get("url") or "", "gemini")
            parts.append({"inlineData": {"mimeType": image.mime, "data": image.data}})
    return parts


class GeminiDecoder(JsonEventDecoder):
    """Each event is a whole `GenerateContentResponse`.

    Text pieces, whole function calls, a finish reason on the last, usage (cumulative) on each; the usage
    goes out when the body ends."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self._metadata: Any = None
        self._started = False

    def _failure(self, _name: str, payload: dict[str, Any]) -> WireFailure | None:
        error = payload.get("error")
        if not isinstance(error, dict):
            return None
        kind = ErrorKind.UPSTREAM_UNAVAILABLE if error.get("code") == 503 else ErrorKind.UPSTREAM_ERROR
        return WireFailure(kind, str(error.get("message") or "the provider reported an error mid-stream"))

    def _event(self, _name: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
        chunks, out = self._chunks, []
        if not self._started:
            chunks.id = str(payload.get("responseId") or "")
            self._started = True
            out.append(chunks.role())
        self._metadata = payload.get("usageMetadata") or self._metadata  # cumulative: the last one counts
        texts, calls, finish = _answer(payload)
        out += [chunks.text(text) for text in texts if text]
        for call in calls:
            out.append(chunks.tool_start(call["id"], call["function"]["name"], call["function"]["arguments"]))
        if finish is not None:
            self.finished = True
            out.append(chunks.finish("tool_calls" if chunks.tool_index >= 0 and finish == "stop" else finish))
        return out

    def end(self) -> list[dict[str, Any]]:
        usage = _usage(self._metadata)
        return [self._chunks.usage(usage)] if self.finished and usage is not None else []
