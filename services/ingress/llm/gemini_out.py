"""The pipeline's answer in Gemini's wire (the Generative Language API).

A `GenerateContentResponse` (`candidates[0].content.parts` of text and `functionCall` parts,
`finishReason`, `usageMetadata`, `modelVersion`, `responseId`), or a stream of them as `data:` events
(`:streamGenerateContent?alt=sse`): text as it comes, each function call whole (Gemini never splits
one), the finish reason and usage on the last. Errors are Google's `{"error": {"code", "message",
"status"}}`, mid-stream too (the google-genai SDK raises on such an event)."""

from __future__ import annotations

from typing import Any

import orjson

from libs.common.contracts.llm import THOUGHT_SIGNATURE, Usage
from libs.common.contracts.messages import GatewayError
from services.ingress.llm.front_writer import Finished, FrontWriter, arguments_object

__all__ = ["GeminiWriter", "contents", "error_body", "function_call_part"]

_CANONICAL = {
    "INVALID_ARGUMENT": (400, 413),
    "UNAUTHENTICATED": (401,),
    "RESOURCE_EXHAUSTED": (402, 429),
    "PERMISSION_DENIED": (403,),
    "NOT_FOUND": (404,),
    "UNAVAILABLE": (502, 503),
    "DEADLINE_EXCEEDED": (504,),
}
"""Google's canonical error codes, and the HTTP statuses each stands for here."""
_STATUS = {status: name for name, statuses in _CANONICAL.items() for status in statuses}
_FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}


def error_body(status: int, message: str, _kind: str = "", _code: str | None = None) -> dict[str, Any]:
    """Google's error envelope; its `status` is the canonical code Google's APIs pair with the HTTP status."""
    return {"error": {"code": status, "message": message, "status": _STATUS.get(status, "INTERNAL")}}


def function_call_part(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    """A chat tool call as a `functionCall` part: its id, and the `thoughtSignature` the id carried apart."""
    given, _, signature = call_id.partition(THOUGHT_SIGNATURE)
    part: dict[str, Any] = {"functionCall": {"name": name, "args": arguments_object(arguments)}}
    if given:
        part["functionCall"]["id"] = given
    if signature:
        part["thoughtSignature"] = signature
    return part


def _call_part(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") if isinstance(call.get("function"), dict) else {}
    assert isinstance(function, dict)
    return function_call_part(str(call.get("id") or ""), str(function.get("name") or ""), function.get("arguments"))


def usage_metadata(tokens: Usage) -> dict[str, int]:
    """Gemini counts thinking apart from `candidatesTokenCount`; OpenAI counts it within completion tokens."""
    thoughts = min(tokens.reasoning_tokens, tokens.completion_tokens)
    metadata = {
        "promptTokenCount": tokens.prompt_tokens,
        "candidatesTokenCount": tokens.completion_tokens - thoughts,
        "totalTokenCount": tokens.prompt_tokens + tokens.completion_tokens,
    }
    if tokens.cached_tokens:
        metadata["cachedContentTokenCount"] = tokens.cached_tokens
    if thoughts:
        metadata["thoughtsTokenCount"] = thoughts
    return metadata


def contents(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An agent loop's transcript (OpenAI messages) as the Gemini contents to append.

    A model turn with its text and `functionCall` parts, then one user turn with a `functionResponse`
    for each."""
    names: dict[str, str] = {}
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.get("role") == "tool":
            call_id = str(message.get("tool_call_id") or "")
            response: dict[str, Any] = {"name": names.get(call_id, ""), "response": {"result": message.get("content")}}
            given = call_id.partition(THOUGHT_SIGNATURE)[0]
            if given:
                response["id"] = given
            if turns and turns[-1]["role"] == "user":
                turns[-1]["parts"].append({"functionResponse": response})
            else:
                turns.append({"role": "user", "parts": [{"functionResponse": response}]})
            continue
        parts: list[dict[str, Any]] = []
        if isinstance(message.get("content"), str) and message["content"]:
            parts.append({"text": message["content"]})
        for call in message.get("tool_calls") or []:
            part = _call_part(call)
            names[str(call.get("id") or "")] = part["functionCall"]["name"]
            parts.append(part)
        turns.append({"role": "model", "parts": parts})
    return turns


class GeminiWriter(FrontWriter):
    """One answer as a `GenerateContentResponse`, or a stream of them; calls are held until whole."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list[list[str]] = []
        """The calls streaming now: [id, name, arguments so far], written whole at the end."""

    def error_body(self, status: int, message: str, kind: str, code: str | None) -> dict[str, Any]:
        return error_body(status, message)

    def _response(self, parts: list[dict[str, Any]], finish: str | None, tokens: Usage | None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish is not None:
            candidate["finishReason"] = _FINISH_REASONS.get(finish, "STOP")
        response: dict[str, Any] = {"candidates": [candidate]}
        if tokens is not None:
            response["usageMetadata"] = usage_metadata(tokens)
        response["modelVersion"] = self.model
        response["responseId"] = self.answer_id
        return response

    def answer(self, finished: Finished) -> dict[str, Any]:
        parts = [{"text": finished.text}] if finished.text else []
        parts += [_call_part(call) for call in finished.calls]
        response = self._response(parts, finished.finish, finished.usage)
        if finished.summary is not None:
            response["bastion"] = _bastion(finished)
        return response

    async def _data(self, payload: dict[str, Any]) -> None:
        """One event of Gemini's SSE stream: `data:` lines only, no event names."""
        data = b"data: " + orjson.dumps(payload) + b"\r\n\r\n"
        await self._send({"type": "http.response.body", "body": data, "more_body": True})
        self.sent += len(data)

    async def opened(self) -> None:
        return None  # Gemini's stream opens with its first content

    async def text(self, piece: str) -> None:
        await self._data(self._response([{"text": piece}], None, None))

    async def call_started(self, call_id: str, name: str) -> None:
        self._pending.append([call_id, name, ""])

    async def arguments(self, piece: str) -> None:
        if self._pending:
            self._pending[-1][2] += piece

    async def finished(self, finished: Finished) -> None:
        parts = [function_call_part(*call) for call in self._pending] or [{"text": ""}]
        self._pending = []
        last = self._response(parts, finished.finish, finished.usage)
        if finished.summary is not None:
            last["bastion"] = _bastion(finished)
        await self._data(last)

    async def failed(self, error: GatewayError) -> None:
        await self._data(error_body(502, error.message))


def _bastion(finished: Finished) -> dict[str, Any]:
    summary = dict(finished.summary or {})
    summary["transcript"] = contents(summary.get("transcript") or [])
    return summary
