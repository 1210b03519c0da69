"""What the Anthropic Messages and OpenAI Responses fronts share on the way out.

The pipeline's OpenAI chunks and outcomes read as text pieces, tool-call pieces and a finished message,
which each front then writes in its own wire (`messages_out`, `responses_out`).

The pipeline (`endpoint.LlmEndpoint`) drives every front's writer the same way: `chunk` for each
chunk the provider streams, `close` once with the last round's outcome (and, in agent mode, the
loop's summary). In agent mode only the rounds' text goes out as it comes; the calls still pending
at the end are written at `close`, as the OpenAI front does."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from libs.common.contracts.llm import LlmOutcome, Usage
from libs.common.contracts.messages import GatewayError, new_id
from services.ingress.llm.wire import REQUEST_ID_HEADER, STATUS, Send, send_json, with_pending
from services.ingress.mcp_edge.answers import SSE_HEADERS

__all__ = ["Finished", "FrontWriter", "arguments_object"]


def arguments_object(arguments: Any) -> dict[str, Any]:
    """A tool call's JSON `arguments` as the object Anthropic's `input` and Gemini's `args` are ({} if not one)."""
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except orjson.JSONDecodeError:
        value = {}
    return value if isinstance(value, dict) else {}


class Finished:
    """The answer of the pipeline's last round, in OpenAI's terms, for a front to write in its own."""

    def __init__(self, outcome: LlmOutcome, summary: dict[str, Any] | None) -> None:
        response: dict[str, Any] = dict(outcome.response or {})
        if not response:  # a stream: what its deltas assembled to
            assembled = {"role": "assistant", "content": outcome.content, "tool_calls": outcome.tool_calls}
            response = {"choices": [{"message": assembled, "finish_reason": outcome.finish_reason}]}
        pending = summary.pop("pending") if summary is not None else None
        if pending is not None:
            response = with_pending(response, pending)
        choices = response.get("choices") or [{}]
        choice: dict[str, Any] = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message")
        self.message: dict[str, Any] = message if isinstance(message, dict) else {}
        content = self.message.get("content")
        self.text: str = content if isinstance(content, str) else ""
        calls = self.message.get("tool_calls") or []
        self.calls: list[dict[str, Any]] = [c for c in calls if isinstance(c, dict)]
        finish = "tool_calls" if pending else choice.get("finish_reason")
        self.finish: str = finish or outcome.finish_reason or ("tool_calls" if self.calls else "stop")
        self.usage = outcome.usage or Usage()
        self.summary = summary
        """The agent loop's `bastion` object (its transcript still in OpenAI's messages), or None."""


class FrontWriter(ABC):
    """One answer in a front's own wire: one JSON body, or one SSE stream spanning every round."""

    def __init__(self, send: Send, *, streaming: bool, agent: bool, model: str) -> None:
        self._send = send
        self.streaming, self.agent, self.model = streaming, agent, model
        self.sent = 0
        self.request_id = ""
        self.answer_id = new_id()
        self._started = False
        self._calls: dict[int, dict[str, Any]] = {}
        """The tool calls of the round streaming now, by their OpenAI index (id, name, arguments so far)."""
        self.keep: Callable[[Finished], Awaitable[bool]] | None = None
        """Called with the answer before it goes out (the Responses front keeps its conversation)."""
        self.kept = False

    # ------------------------------------------------------------------ what a front writes

    @abstractmethod
    def error_body(self, status: int, message: str, kind: str, code: str | None) -> dict[str, Any]:
        """An error in the front's shape."""

    @abstractmethod
    def answer(self, finished: Finished) -> dict[str, Any]:
        """The whole (non-streaming) answer."""

    @abstractmethod
    async def opened(self) -> None:
        """The stream's first events (once, before anything else)."""

    @abstractmethod
    async def text(self, piece: str) -> None: ...

    @abstractmethod
    async def call_started(self, call_id: str, name: str) -> None: ...

    @abstractmethod
    async def arguments(self, piece: str) -> None: ...

    @abstractmethod
    async def finished(self, finished: Finished) -> None:
        """The stream's last events."""

    @abstractmethod
    async def failed(self, error: GatewayError) -> None:
        """The stream's end when the provider failed midway (an event the front's SDKs raise on)."""

    # ------------------------------------------------------------------ the pipeline's side

    async def chunk(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict) or choice.get("index", 0) != 0:
                continue
            content = delta.get("content")
            if isinstance(content, str) and content:
                await self._open()
                await self.text(content)
            if not self.agent:  # agent mode holds the rounds' calls back: what is pending goes out at close
                for call in delta.get("tool_calls") or []:
                    if isinstance(call, dict):
                        await self._call_delta(call)

    async def _call_delta(self, call: dict[str, Any]) -> None:
        index = call.get("index", 0)
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        assert isinstance(function, dict)
        if index not in self._calls:
            self._calls[index] = {"id": call.get("id") or f"call_{new_id()}", "name": function.get("name") or ""}
            await self._open()
            await self.call_started(self._calls[index]["id"], self._calls[index]["name"])
        piece = function.get("arguments")
        if isinstance(piece, str) and piece:
            await self.arguments(piece)

    async def close(self, outcome: LlmOutcome, summary: dict[str, Any] | None = None) -> None:
        error = outcome.error
        if error is not None and (not self.streaming or not self._started):
            status, kind = STATUS.get(error.kind, (500, "api_error"))
            retry_after = (error.data or {}).get("retry_after") if isinstance(error.data, dict) else None
            headers = self._headers([])
            if isinstance(retry_after, int | float):
                headers.append((b"retry-after", str(max(1, round(retry_after))).encode()))
            self.sent += await send_json(
                self._send, status, self.error_body(status, error.message, kind, None), headers
            )
            return
        if error is not None:
            await self.failed(error)
            await self._end()
            return
        finished = Finished(outcome, summary)
        if self.keep is not None:  # before the answer: the client's next request may name it at once
            self.kept = await self.keep(finished)
        if not self.streaming:
            self.sent += await send_json(self._send, 200, self.answer(finished), self._headers([]))
            return
        await self._open()
        if self.agent:
            self._calls = {}
            for index, call in enumerate(finished.calls):
                function = call.get("function") or {}
                await self._call_delta({"index": index, "id": call.get("id"), "function": function})
        await self.finished(finished)
        await self._end()

    # ------------------------------------------------------------------ SSE

    def _headers(self, base: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return [*base, (REQUEST_ID_HEADER.encode(), self.request_id.encode())]

    async def _open(self) -> None:
        if not self._started:
            self._started = True
            await self._send({"type": "http.response.start", "status": 200, "headers": self._headers(SSE_HEADERS)})
            await self.opened()

    async def event(self, name: str, payload: dict[str, Any]) -> None:
        data = b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
        await self._send({"type": "http.response.body", "body": data, "more_body": True})
        self.sent += len(data)

    async def _end(self) -> None:
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})
