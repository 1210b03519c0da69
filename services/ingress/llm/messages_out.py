"""The pipeline's answer in Anthropic's Messages wire.

A `message` object, or its SSE events in Anthropic's order (`message_start`, `content_block_start`,
`ping`, `content_block_delta` with `text_delta` / `input_json_delta`, `content_block_stop`,
`message_delta` with the stop reason and usage, `message_stop`), and errors as `{"type": "error",
"error": {"type", "message"}}`."""

from __future__ import annotations

from typing import Any

from libs.common.contracts.llm import Usage
from libs.common.contracts.messages import GatewayError
from services.ingress.llm.front_writer import Finished, FrontWriter, arguments_object

__all__ = ["MessagesWriter", "error_body", "transcript"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
}
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def error_body(status: int, message: str, _kind: str = "", _code: str | None = None) -> dict[str, Any]:
    """Anthropic's error shape; its `type` follows the HTTP status as Anthropic's API sets it."""
    return {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}}


def tool_use(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") if isinstance(call.get("function"), dict) else {}
    assert isinstance(function, dict)
    return {
        "type": "tool_use",
        "id": call.get("id"),
        "name": function.get("name"),
        "input": arguments_object(function.get("arguments")),
    }


def usage(tokens: Usage) -> dict[str, int]:
    """Anthropic counts cached input apart from `input_tokens`; OpenAI counts it within."""
    return {
        "input_tokens": max(0, tokens.prompt_tokens - tokens.cached_tokens),
        "output_tokens": tokens.completion_tokens,
        "cache_read_input_tokens": tokens.cached_tokens,
        "cache_creation_input_tokens": 0,
    }


def transcript(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An agent loop's transcript (OpenAI messages) as the Messages turns to append.

    An assistant turn with its text and `tool_use` blocks, then one user turn with a `tool_result` for
    each."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.get("role") == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id"),
                "content": message.get("content"),
            }
            if turns and turns[-1]["role"] == "user":
                turns[-1]["content"].append(result)
            else:
                turns.append({"role": "user", "content": [result]})
            continue
        blocks: list[dict[str, Any]] = []
        if isinstance(message.get("content"), str) and message["content"]:
            blocks.append({"type": "text", "text": message["content"]})
        blocks += [tool_use(call) for call in message.get("tool_calls") or []]
        turns.append({"role": "assistant", "content": blocks})
    return turns


def _bastion(finished: Finished) -> dict[str, Any]:
    summary = dict(finished.summary or {})
    summary["transcript"] = transcript(summary.get("transcript") or [])
    return summary


class MessagesWriter(FrontWriter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._index = -1
        self._open_block = False
        self._pinged = False
        self._in_text = False

    def error_body(self, status: int, message: str, kind: str, code: str | None) -> dict[str, Any]:
        return error_body(status, message)

    def _message(self, content: list[dict[str, Any]], stop: str | None, tokens: Usage) -> dict[str, Any]:
        return {
            "id": f"msg_{self.answer_id}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage(tokens),
        }

    def answer(self, finished: Finished) -> dict[str, Any]:
        content = [{"type": "text", "text": finished.text}] if finished.text else []
        content += [tool_use(call) for call in finished.calls]
        message = self._message(content, _STOP_REASONS.get(finished.finish, "end_turn"), finished.usage)
        if finished.summary is not None:
            message["bastion"] = _bastion(finished)
        return message

    async def opened(self) -> None:
        await self.event("message_start", {"type": "message_start", "message": self._message([], None, Usage())})

    async def _start_block(self, block: dict[str, Any]) -> None:
        await self._stop_block()
        self._index += 1
        self._open_block = True
        await self.event(
            "content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block}
        )
        await self._ping()

    async def _ping(self) -> None:
        if not self._pinged:
            self._pinged = True
            await self.event("ping", {"type": "ping"})

    async def _stop_block(self) -> None:
        if self._open_block:
            self._open_block = False
            await self.event("content_block_stop", {"type": "content_block_stop", "index": self._index})

    async def _delta(self, delta: dict[str, Any]) -> None:
        await self.event("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})

    async def text(self, piece: str) -> None:
        if not self._in_text:
            await self._start_block({"type": "text", "text": ""})
            self._in_text = True
        await self._delta({"type": "text_delta", "text": piece})

    async def call_started(self, call_id: str, name: str) -> None:
        self._in_text = False
        await self._start_block({"type": "tool_use", "id": call_id, "name": name, "input": {}})

    async def arguments(self, piece: str) -> None:
        await self._delta({"type": "input_json_delta", "partial_json": piece})

    async def finished(self, finished: Finished) -> None:
        await self._stop_block()
        await self._ping()
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": _STOP_REASONS.get(finished.finish, "end_turn"), "stop_sequence": None},
        }
        delta["usage"] = usage(finished.usage)
        if finished.summary is not None:
            delta["bastion"] = _bastion(finished)
        await self.event("message_delta", delta)
        await self.event("message_stop", {"type": "message_stop"})

    async def failed(self, error: GatewayError) -> None:
        await self.event("error", {"type": "error", "error": {"type": "api_error", "message": error.message}})
