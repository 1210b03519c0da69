"""The pipeline's answer in OpenAI's Responses wire.

A `response` object whose `output` holds a `message` item (`output_text`) and `function_call` items, or
its SSE events (`response.created`, `response.in_progress`, `response.output_item.added`,
`response.content_part.added`, `response.output_text.delta`, `response.function_call_arguments.delta`,
their `.done` events, `response.output_item.done`, then `response.completed`, `response.incomplete` or,
when the provider failed midway, `response.failed`), each with its `sequence_number`. Errors before any
event use OpenAI's error shape, as `/v1/chat/completions` does."""

from __future__ import annotations

import time
from typing import Any

from libs.common.contracts.llm import Usage
from libs.common.contracts.messages import GatewayError, new_id
from services.ingress.llm.front_writer import Finished, FrontWriter
from services.ingress.llm.wire import error_body

__all__ = ["ResponsesWriter", "input_items"]


def usage(tokens: Usage) -> dict[str, Any]:
    return {
        "input_tokens": tokens.prompt_tokens,
        "input_tokens_details": {"cached_tokens": tokens.cached_tokens},
        "output_tokens": tokens.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": tokens.reasoning_tokens},
        "total_tokens": tokens.prompt_tokens + tokens.completion_tokens,
    }


def _text_item(text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {"type": "message", "id": f"msg_{new_id()}", "status": status, "role": "assistant", "content": content}


def _call_item(call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    function = call.get("function") if isinstance(call.get("function"), dict) else {}
    assert isinstance(function, dict)
    arguments = function.get("arguments") if isinstance(function.get("arguments"), str) else ""
    return {
        "type": "function_call",
        "id": f"fc_{new_id()}",
        "call_id": call.get("id"),
        "name": function.get("name"),
        "arguments": arguments if status == "completed" else "",
        "status": status,
    }


def input_items(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An agent loop's transcript (OpenAI messages) as the Responses input items to append."""
    items: list[dict[str, Any]] = []
    for message in messages:
        if message.get("role") == "tool":
            output = message.get("content")
            items.append({"type": "function_call_output", "call_id": message.get("tool_call_id"), "output": output})
            continue
        if isinstance(message.get("content"), str) and message["content"]:
            items.append(_text_item(message["content"]))
        items += [_call_item(call) for call in message.get("tool_calls") or []]
    return items


class ResponsesWriter(FrontWriter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sequence = 0
        self._created = int(time.time())
        self._output: list[dict[str, Any]] = []
        self._item: dict[str, Any] | None = None
        """The output item streaming now."""

    @property
    def response_id(self) -> str:
        return f"resp_{self.answer_id}"

    def error_body(self, status: int, message: str, kind: str, code: str | None) -> dict[str, Any]:
        return error_body(message, kind, code)

    def _response(self, status: str, output: list[dict[str, Any]], tokens: Usage | None) -> dict[str, Any]:
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self._created,
            "status": status,
            "model": self.model,
            "output": output,
            "usage": usage(tokens) if tokens is not None else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "store": self.kept,
        }

    def answer(self, finished: Finished) -> dict[str, Any]:
        output = [_text_item(finished.text)] if finished.text else []
        output += [_call_item(call) for call in finished.calls]
        response = self._response(_status(finished), output, finished.usage)
        if finished.summary is not None:
            response["bastion"] = {**finished.summary, "transcript": input_items(finished.summary["transcript"])}
        return response

    async def _emit(self, name: str, payload: dict[str, Any]) -> None:
        await self.event(name, {"type": name, "sequence_number": self._sequence, **payload})
        self._sequence += 1

    async def opened(self) -> None:
        response = self._response("in_progress", [], None)
        await self._emit("response.created", {"response": response})
        await self._emit("response.in_progress", {"response": response})

    async def _add(self, item: dict[str, Any]) -> None:
        await self._done()
        self._item = item
        self._output.append(item)
        await self._emit("response.output_item.added", {"output_index": len(self._output) - 1, "item": dict(item)})

    async def _done(self) -> None:
        item, self._item = self._item, None
        if item is None:
            return
        at = {"item_id": item["id"], "output_index": len(self._output) - 1}
        item["status"] = "completed"
        if item["type"] == "message":
            part = item["content"][0]
            await self._emit("response.output_text.done", {**at, "content_index": 0, "text": part["text"]})
            await self._emit("response.content_part.done", {**at, "content_index": 0, "part": part})
        else:
            await self._emit("response.function_call_arguments.done", {**at, "arguments": item["arguments"]})
        await self._emit("response.output_item.done", {"output_index": at["output_index"], "item": item})

    async def text(self, piece: str) -> None:
        if self._item is None or self._item["type"] != "message":
            await self._add(_text_item("", "in_progress"))
            assert self._item is not None
            part = {"type": "output_text", "text": "", "annotations": []}
            self._item["content"].append(part)
            at = {"item_id": self._item["id"], "output_index": len(self._output) - 1, "content_index": 0}
            await self._emit("response.content_part.added", {**at, "part": dict(part)})
        assert self._item is not None
        self._item["content"][0]["text"] += piece
        at = {"item_id": self._item["id"], "output_index": len(self._output) - 1, "content_index": 0}
        await self._emit("response.output_text.delta", {**at, "delta": piece, "logprobs": []})

    async def call_started(self, call_id: str, name: str) -> None:
        await self._add(_call_item({"id": call_id, "function": {"name": name}}, "in_progress"))

    async def arguments(self, piece: str) -> None:
        assert self._item is not None
        self._item["arguments"] += piece
        at = {"item_id": self._item["id"], "output_index": len(self._output) - 1}
        await self._emit("response.function_call_arguments.delta", {**at, "delta": piece})

    async def finished(self, finished: Finished) -> None:
        await self._done()
        status = _status(finished)
        response = self._response(status, self._output, finished.usage)
        if finished.summary is not None:
            response["bastion"] = {**finished.summary, "transcript": input_items(finished.summary["transcript"])}
        await self._emit(
            "response.completed" if status == "completed" else "response.incomplete", {"response": response}
        )

    async def failed(self, error: GatewayError) -> None:
        await self._done()
        response = self._response("failed", self._output, None)
        response["error"] = {"code": "server_error", "message": error.message}
        await self._emit("response.failed", {"response": response})


def _status(finished: Finished) -> str:
    return "incomplete" if finished.finish == "length" else "completed"
