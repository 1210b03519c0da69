"""Anthropic's Messages API as Anthropic speaks it: `POST /v1/messages`, `x-api-key`,
`anthropic-version`; messages, content blocks and streaming events as the `anthropic` SDK types them.

Requests are checked against the SDK's own `MessageCreateParams` types, and the conversation as the
API checks it: user and assistant turns alternate, starting with the user, and every `tool_use`
is answered by a `tool_result` in the next user turn (and every `tool_result` answers one).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import orjson
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming, MessageCreateParamsStreaming
from pydantic import TypeAdapter, ValidationError

from .base import Answer, Call, Reply, WireSpeaker, json_answer, retrying, turn_problem

__all__ = ["AnthropicSpeaker"]

VERSIONS = frozenset({"2023-06-01", "2026-10-21"})
"""The API's first stable version, which Bastion sends, and the one the `anthropic` SDK 2.x sends."""


@functools.cache
def _params(streaming: bool) -> TypeAdapter[Any]:
    return TypeAdapter(MessageCreateParamsStreaming if streaming else MessageCreateParamsNonStreaming)


def _forced(value: Any) -> Any:
    """A validated TypedDict with its lazily validated iterables run (validating each item)."""
    if isinstance(value, dict):
        return {k: _forced(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or type(value).__name__ == "ValidatorIterator":
        return [_forced(v) for v in value]
    return value


def conversation_problem(messages: list[dict[str, Any]]) -> str | None:
    return turn_problem(
        messages,
        lambda blocks: {b["id"] for b in blocks if b.get("type") == "tool_use"},
        lambda blocks: {b["tool_use_id"] for b in blocks if b.get("type") == "tool_result"},
        "messages.{i}: roles must alternate between user and assistant, starting with user",
        "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after, "
        "or `tool_result` blocks answer no `tool_use`",
    )


class AnthropicSpeaker(WireSpeaker):
    prefix = "/v1"
    overload_event = (
        b"event: error\ndata: "
        + orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        + b"\n\n"
    )

    def route(self, path: str, body: dict[str, Any]) -> tuple[str, bool] | None:
        return (str(body.get("model")), body.get("stream") is True) if path == "/v1/messages" else None

    @staticmethod
    def _error(status: int, kind: str, message: str) -> Answer:
        return json_answer(status, {"type": "error", "error": {"type": kind, "message": message}})

    def refusal(self, path: str, headers: dict[str, str], raw: bytes, body: dict[str, Any]) -> Answer | None:
        # an API key as `x-api-key`, or as bearer (the way the `anthropic` SDK 2.x sends it)
        given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        if self._key is not None and given != self._key:
            return self._error(401, "authentication_error", "invalid x-api-key")
        if headers.get("anthropic-version") not in VERSIONS:
            return self._error(400, "invalid_request_error", "anthropic-version: header is required")
        try:
            checked = _forced(_params(body.get("stream") is True).validate_python(body))
        except ValidationError as exc:
            return self._error(400, "invalid_request_error", str(exc).splitlines()[0])
        problem = conversation_problem(checked["messages"])
        return None if problem is None else self._error(400, "invalid_request_error", problem)

    def call_ids(self, count: int) -> list[str]:
        return [f"toolu_01{next(self._ids):022d}" for _ in range(count)]

    @staticmethod
    def _usage(reply: Reply, output: int | None = None) -> dict[str, Any]:
        prompt, completion = reply.usage
        return {
            "input_tokens": prompt - reply.cached,  # Anthropic counts the cache's tokens apart
            "cache_read_input_tokens": reply.cached,
            "cache_creation_input_tokens": 0,
            "output_tokens": completion if output is None else output,
        }

    def _message(self, model: str) -> dict[str, Any]:
        return {"id": f"msg_01{next(self._ids):022d}", "type": "message", "role": "assistant", "model": model}

    def completion(self, reply: Reply, calls: list[Call], model: str) -> Answer:
        content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        content += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in calls]
        message = {**self._message(model), "content": content, "stop_sequence": None}
        message |= {"stop_reason": "tool_use" if calls else "end_turn", "usage": self._usage(reply)}
        return json_answer(200, message)

    def stream(self, reply: Reply, calls: list[Call], model: str, body: dict[str, Any], whole: bool) -> Answer:
        events = list(self._events(reply, calls, model))
        if not whole:
            events = events[: 3 + bool(reply.text)]  # message_start, the text block's start, a ping, its delta
        frames = [f"event: {e['type']}\ndata: ".encode() + orjson.dumps(e) + b"\n\n" for e in events]
        return Answer(200, "text/event-stream", frames, streamed=True)

    def _events(self, reply: Reply, calls: list[Call], model: str) -> Iterator[dict[str, Any]]:
        message = {**self._message(model), "content": [], "stop_reason": None, "stop_sequence": None}
        yield {"type": "message_start", "message": {**message, "usage": self._usage(reply, output=1)}}
        index = 0
        if reply.text:
            yield {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
            yield {"type": "ping"}
            for i in range(0, len(reply.text), 4):
                delta = {"type": "text_delta", "text": reply.text[i : i + 4]}
                yield {"type": "content_block_delta", "index": 0, "delta": delta}
            yield {"type": "content_block_stop", "index": 0}
            index = 1
        for call in calls:
            block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
            yield {"type": "content_block_start", "index": index, "content_block": block}
            arguments = orjson.dumps(call.arguments).decode()
            for piece in ("", arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield {"type": "content_block_delta", "index": index, "delta": delta}
            yield {"type": "content_block_stop", "index": index}
            index += 1
        stop = {"stop_reason": "tool_use" if calls else "end_turn", "stop_sequence": None}
        yield {"type": "message_delta", "delta": stop, "usage": {"output_tokens": reply.usage[1]}}
        yield {"type": "message_stop"}

    def error(self, status: int, message: str, retry_after: float | None) -> Answer:
        kind = {400: "invalid_request_error", 429: "rate_limit_error"}.get(status, "api_error")
        answer = self._error(status, kind, message)
        return retrying(answer, retry_after)

    def overload(self) -> Answer:
        return self._error(529, "overloaded_error", "Overloaded")

    def tool_names(self, body: dict[str, Any]) -> list[str]:
        return [tool["name"] for tool in body.get("tools", [])]

    def tool_results(self, body: dict[str, Any]) -> list[str]:
        return [
            block["content"]
            for message in body.get("messages", [])
            if isinstance(message["content"], list)
            for block in message["content"]
            if block.get("type") == "tool_result"
        ]
