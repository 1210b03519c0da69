"""Anthropic's Messages API: `POST <base_url>/messages` with `x-api-key` and `anthropic-version`.

Translated: system and developer messages to `system`; text and base64 images to content blocks;
tool calls to `tool_use` blocks and tool messages to `tool_result` blocks (consecutive ones in one
user turn); tools, `tool_choice` and `parallel_tool_calls`; `max_tokens` (required by Anthropic: 4096
when the request sets none), `temperature`, `top_p`, `stop`, `user` as `metadata.user_id`. Answers:
text and `tool_use` blocks (thinking blocks are left out), stop reasons, usage with the prompt cache's
read and written tokens counted as prompt tokens (OpenAI counts them so) and the read ones as cached.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import httpx2
import orjson

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.llm import Usage
from libs.common.contracts.llm_config import ProviderConfig

from .base import Outgoing, WireFailure, chat_completion, failure_of, json_detail, token_count
from .messages import (
    arguments_of,
    data_image,
    functions_of,
    max_tokens_of,
    parts_of,
    stop_list,
    system_text,
    text_of,
    tool_choice_of,
    turns,
)
from .sse import JsonEventDecoder

__all__ = ["AnthropicWire"]

VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _usage(usage: Any, prior: Usage | None = None) -> Usage:
    """Anthropic's usage (`input_tokens` leaves the cache's tokens out; OpenAI's prompt counts them)."""
    found = prior.model_copy() if prior is not None else Usage()
    if not isinstance(usage, dict):
        return found
    count = functools.partial(token_count, usage)

    read = count("cache_read_input_tokens", found.cached_tokens)
    written = count("cache_creation_input_tokens", 0)
    if "input_tokens" in usage:
        found.prompt_tokens = count("input_tokens", 0) + read + written
    found.cached_tokens = read
    found.completion_tokens = count("output_tokens", found.completion_tokens)
    found.total_tokens = found.prompt_tokens + found.completion_tokens
    return found


class AnthropicWire:
    def __init__(self, config: ProviderConfig, credential: str | None) -> None:
        url = httpx2.URL(config.base_url)
        self.endpoint = url.copy_with(path=url.path.rstrip("/") + "/messages")
        self._headers = {"content-type": "application/json", "anthropic-version": config.api_version or VERSION}
        if credential:
            self._headers["x-api-key"] = credential

    async def request(self, body: dict[str, Any], streaming: bool) -> Outgoing:
        return Outgoing(self.endpoint, self._headers, orjson.dumps(translated(body, streaming)))

    def completion(self, payload: Any, model: str) -> dict[str, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("content"), list):
            raise WireFailure(ErrorKind.UPSTREAM_ERROR, "the provider's answer is not an Anthropic message")
        texts, calls = [], []
        for block in payload["content"]:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                texts.append(block.get("text") or "")
            elif block.get("type") == "tool_use":
                arguments = orjson.dumps(block.get("input") or {}).decode()
                function = {"name": block.get("name") or "", "arguments": arguments}
                calls.append({"id": block.get("id") or "", "type": "function", "function": function})
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
        if calls:
            message["tool_calls"] = calls
        finish = STOP_REASONS.get(payload.get("stop_reason") or "", "stop")
        return chat_completion(str(payload.get("id") or ""), model, message, finish, _usage(payload.get("usage")))

    def decoder(self, model: str) -> AnthropicDecoder:
        return AnthropicDecoder(model)

    def failure(self, status: int, body: bytes, headers: Mapping[str, str]) -> WireFailure:
        overloaded = json_detail(body, "error", "type") == "overloaded_error"
        return failure_of(status, json_detail(body, "error", "message"), headers, overloaded)


def translated(body: dict[str, Any], streaming: bool) -> dict[str, Any]:
    messages = body.get("messages") or []
    request: dict[str, Any] = {
        "model": body.get("model"),
        "max_tokens": max_tokens_of(body) or DEFAULT_MAX_TOKENS,
        "messages": [
            {"role": role, "content": blocks} for role, blocks in turns(messages, "Anthropic", _blocks, _call, _result)
        ],
    }
    system = system_text(messages)
    if system:
        request["system"] = system
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p")):
        if isinstance(body.get(ours), int | float):
            request[theirs] = body[ours]
    if stop_list(body):
        request["stop_sequences"] = stop_list(body)
    if isinstance(body.get("user"), str):
        request["metadata"] = {"user_id": body["user"]}
    functions = functions_of(body)
    if functions:
        request["tools"] = [
            {"name": f["name"], "description": f["description"], "input_schema": f["parameters"]} for f in functions
        ]
        request["tool_choice"] = _tool_choice(body)
    if streaming:
        request["stream"] = True
    return request


def _tool_choice(body: dict[str, Any]) -> dict[str, Any]:
    mode, name = tool_choice_of(body)
    choices: dict[str, dict[str, Any]] = {
        "auto": {"type": "auto"},
        "required": {"type": "any"},
        "none": {"type": "none"},
        "function": {"type": "tool", "name": name},
    }
    choice = choices[mode]
    if body.get("parallel_tool_calls") is False and mode != "none":
        choice["disable_parallel_tool_use"] = True
    return choice


def _call(call: dict[str, Any]) -> dict[str, Any]:
    name = (call.get("function") or {}).get("name") or ""
    return {"type": "tool_use", "id": call.get("id") or "", "name": name, "input": arguments_of(call)}


def _result(message: dict[str, Any]) -> dict[str, Any]:
    content = text_of(message.get("content"))
    return {"type": "tool_result", "tool_use_id": message.get("tool_call_id") or "", "content": content}


def _blocks(content: Any) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in parts_of(content):
        if part["type"] == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
            continue
        url = (part.get("image_url") or {}).get("url") or ""
        if url.startswith(("https://", "http://")):
            blocks.append({"type": "image", "source": {"type": "url", "url": url}})
        else:
            image = data_image(url, "anthropic")
            blocks.append({"type": "image", "source": {"type": "base64", "media_type": image.mime, "data": image.data}})
    return blocks


def _stream_failure(error: dict[str, Any]) -> WireFailure:
    """An `error` event (an overload, mostly) after the answer began."""
    overloaded = error.get("type") == "overloaded_error"
    kind = ErrorKind.UPSTREAM_UNAVAILABLE if overloaded else ErrorKind.UPSTREAM_ERROR
    return WireFailure(kind, str(error.get("message") or "the provider reported an error mid-stream"))


class AnthropicDecoder(JsonEventDecoder):
    """Anthropic Messages' streaming events as OpenAI chunks; usage comes last.

    The events: `message_start`, `content_block_start`/`_delta`/`_stop`, `message_delta`,
    `message_stop`, `ping`, `error`; an event's `type` names it, else its SSE name."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self._usage: Usage | None = None
        self._tool_blocks: set[int] = set()

    def _failure(self, name: str, event: dict[str, Any]) -> WireFailure | None:
        return _stream_failure(event.get("error") or {}) if str(event.get("type") or name) == "error" else None

    def _event(self, name: str, event: dict[str, Any]) -> list[dict[str, Any]]:
        chunks, kind = self._chunks, str(event.get("type") or name)
        if kind == "message_start":
            message = event.get("message") or {}
            chunks.id = str(message.get("id") or "")
            self._usage = _usage(message.get("usage"))
            return [chunks.role()]
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                self._tool_blocks.add(event.get("index", -1))
                return [chunks.tool_start(block.get("id") or "", block.get("name") or "")]
            return [chunks.text(block["text"])] if block.get("type") == "text" and block.get("text") else []
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [chunks.text(delta.get("text") or "")]
            if delta.get("type") == "input_json_delta" and event.get("index", -1) in self._tool_blocks:
                return [chunks.tool_arguments(delta.get("partial_json") or "")]
            return []  # thinking and signature deltas are not translated
        if kind == "message_delta":
            self._usage = _usage(event.get("usage"), self._usage)
            reason = (event.get("delta") or {}).get("stop_reason")
            return [chunks.finish(STOP_REASONS.get(reason or "", "stop"))]
        if kind == "message_stop":
            self.finished = True
            return [chunks.usage(self._usage or Usage())]
        return []  # ping, and event types added after this was written

    def end(self) -> list[dict[str, Any]]:
        return []
