"""The OpenAI wire format on the way out of `/v1`.

JSON answers, server-sent event streams (the agent-mode stream too), and errors in OpenAI's shape
(`{"error": {"message", "type", "param", "code"}}`) with the HTTP status OpenAI's SDKs expect for each
gateway error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.llm import LlmOutcome
from libs.common.contracts.messages import GatewayError
from services.ingress.mcp_edge.answers import JSON_HEADERS, SSE_HEADERS
from services.ingress.mcp_edge.http_steps import Gone, TooLarge
from services.ingress.mcp_edge.http_steps import read_body as edge_read_body

__all__ = [
    "REQUEST_ID_HEADER",
    "STATUS",
    "Receive",
    "Refused",
    "ResponseWriter",
    "Scope",
    "Send",
    "error_body",
    "json_object",
    "read_body",
    "send_error",
    "send_gateway_error",
    "send_json",
    "with_pending",
]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

REQUEST_ID_HEADER = "x-bastion-request-id"
"""Response header naming the `llm_request` audit event; send it back as `X-Bastion-Parent-Id` when
executing one of its tool calls from another replica (this one remembers its own tool calls)."""
STATUS: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.INVALID_ARGUMENTS: (400, "invalid_request_error"),
    ErrorKind.UNKNOWN_TOOL: (404, "invalid_request_error"),
    ErrorKind.KEY_REVOKED: (401, "authentication_error"),
    ErrorKind.FORBIDDEN: (403, "permission_error"),
    ErrorKind.BUDGET_EXCEEDED: (402, "insufficient_quota"),
    ErrorKind.RATE_LIMITED: (429, "rate_limit_error"),
    ErrorKind.UPSTREAM_ERROR: (502, "api_error"),
    ErrorKind.UPSTREAM_UNAVAILABLE: (502, "api_error"),
    ErrorKind.UPSTREAM_TIMEOUT: (504, "api_error"),
    ErrorKind.CIRCUIT_OPEN: (503, "api_error"),
    ErrorKind.GATEWAY_UNAVAILABLE: (503, "api_error"),
    ErrorKind.GATEWAY_TIMEOUT: (504, "api_error"),
    ErrorKind.POLICY_UNAVAILABLE: (503, "api_error"),
}


class Refused(Exception):
    """A request `/v1` answers with an error of its own (bad body, unknown route or model)."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.code = status, kind, code


class ResponseWriter:
    """The HTTP answer of one chat completion: one JSON body, or an SSE stream spanning every round.

    A stream's first chunk carries `delta.role` (the SDKs' accumulators take the message's role from
    the deltas, once); a usage chunk (no choices) goes out only when the client asked for one with
    `stream_options.include_usage` (Bastion always asks the provider, for audit and budgets). In agent
    mode a stream carries the rounds' text as it comes; tool-call deltas, finish reasons and usage
    chunks of the rounds are held back, and the end of the loop is told in chunks of its own."""

    def __init__(self, send: Send, *, streaming: bool, agent: bool, include_usage: bool = False) -> None:
        self._send = send
        self.streaming, self.agent, self.include_usage = streaming, agent, include_usage
        self.sent = 0
        self.request_id = ""
        self._started = False
        self._last: dict[str, Any] = {}
        self._roles: set[int] = set()
        """Indexes of the choices whose role went out."""

    def _headers(self, base: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return [*base, (REQUEST_ID_HEADER.encode(), self.request_id.encode())]

    async def chunk(self, chunk: dict[str, Any]) -> None:
        self._last = chunk
        if self.agent:
            chunk = _text_only(chunk)
        elif not self.include_usage:
            chunk = _without_usage(chunk)
        if chunk:
            await self._event(self._with_role(chunk))

    def _with_role(self, chunk: dict[str, Any]) -> dict[str, Any]:
        """`chunk` with `delta.role` on each choice whose first chunk it is."""
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return chunk
        if len(choices) == 1 and isinstance(choices[0], dict) and choices[0].get("index", 0) in self._roles:
            return chunk  # the stream's every later chunk: its role went out, nothing to copy
        roled = []
        for choice in choices:
            index = choice.get("index", 0) if isinstance(choice, dict) else None
            if isinstance(index, int) and index not in self._roles:
                self._roles.add(index)
                delta = choice.get("delta")
                choice = {**choice, "delta": {"role": "assistant", **(delta if isinstance(delta, dict) else {})}}
            roled.append(choice)
        return {**chunk, "choices": roled}

    async def _event(self, payload: dict[str, Any] | None) -> None:
        """One SSE event; None is the closing `[DONE]`."""
        await self._start()
        data = b"data: " + (orjson.dumps(payload) if payload is not None else b"[DONE]") + b"\n\n"
        await self._send({"type": "http.response.body", "body": data, "more_body": payload is not None})
        self.sent += len(data)

    async def _start(self) -> None:
        if not self._started:
            self._started = True
            await self._send({"type": "http.response.start", "status": 200, "headers": self._headers(SSE_HEADERS)})

    async def close(self, outcome: LlmOutcome, summary: dict[str, Any] | None = None) -> None:
        """The answer's end: the completion (JSON), or the stream's last chunks and `[DONE]`; or the error."""
        error = outcome.error
        if not self.streaming or (not self._started and error is not None):
            if error is not None:
                self.sent += await send_gateway_error(self._send, error, self._headers([]))
                return
            response = dict(outcome.response or {})
            if summary is not None:
                response = with_pending(response, summary.pop("pending"))
                response["bastion"] = summary
            self.sent += await send_json(self._send, 200, response, self._headers([]))
            return
        if error is not None:
            # mid-stream: OpenAI sends the error as an event of its own, which the SDKs raise; no
            # `[DONE]` after it, so no client takes the text so far for a whole answer
            data = b"data: " + orjson.dumps(error_body(error.message, "api_error", error.kind.value)) + b"\n\n"
            await self._send({"type": "http.response.body", "body": data, "more_body": False})
            self.sent += len(data)
            return
        if summary is not None:
            base = {k: self._last.get(k) for k in ("id", "object", "created", "model")}
            pending = summary.pop("pending")
            if pending:
                deltas = [{"index": i, **call} for i, call in enumerate(pending)]
                await self._event(self._with_role({**base, "choices": [{"index": 0, "delta": {"tool_calls": deltas}}]}))
            finish = "tool_calls" if pending else outcome.finish_reason or "stop"
            last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "bastion": summary}
            await self._event(self._with_role(last))
            if outcome.usage is not None and self.include_usage:
                await self._event({**base, "choices": [], "usage": outcome.usage.model_dump()})
        await self._event(None)


def _text_only(chunk: dict[str, Any]) -> dict[str, Any]:
    """A chunk with only its text deltas.

    (Agent mode holds tool calls, finish reasons and usage back; the role goes out once, with the
    stream's first chunk)."""
    choices = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {} if isinstance(choice, dict) else {}
        if isinstance(delta.get("content"), str) and delta["content"]:
            choices.append(
                {"index": choice.get("index", 0), "delta": {"content": delta["content"]}, "finish_reason": None}
            )
    return {**{k: v for k, v in chunk.items() if k not in ("choices", "usage")}, "choices": choices} if choices else {}


def _without_usage(chunk: dict[str, Any]) -> dict[str, Any]:
    """A chunk as a client that did not ask for usage gets it: a usage-only chunk not at all."""
    if chunk.get("usage") is None:
        return chunk
    return {k: v for k, v in chunk.items() if k != "usage"} if chunk.get("choices") else {}


def with_pending(response: dict[str, Any], pending: list[dict[str, Any]]) -> dict[str, Any]:
    """The last completion with only the calls still pending in its message."""
    choices = [dict(c) for c in response.get("choices") or []]
    if choices:
        message = dict(choices[0].get("message") or {})
        message.pop("tool_calls", None)
        if pending:
            message["tool_calls"] = pending
        else:
            choices[0]["finish_reason"] = choices[0].get("finish_reason") or "stop"
        choices[0]["message"] = message
    return {**response, "choices": choices}


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, f"the body is not valid JSON ({exc})", code="invalid_json") from None
    if not isinstance(body, dict):
        raise Refused(400, "the body must be a JSON object", code="invalid_json")
    return body


async def read_body(receive: Receive, limit: int) -> bytes:
    """The request body as `/mcp` reads it (`mcp_edge.read_body`), refused in OpenAI's shape."""
    try:
        return await edge_read_body(receive, limit)
    except Gone:
        raise Refused(400, "the client disconnected before its body arrived") from None
    except TooLarge:
        raise Refused(413, f"request body is larger than this gateway accepts ({limit} bytes)") from None


def error_body(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


async def send_gateway_error(send: Send, error: GatewayError, extra: list[tuple[bytes, bytes]] | None = None) -> int:
    status, kind = STATUS.get(error.kind, (500, "api_error"))
    retry_after = (error.data or {}).get("retry_after") if isinstance(error.data, dict) else None
    headers = list(extra or [])
    if isinstance(retry_after, int | float):
        headers.append((b"retry-after", str(max(1, round(retry_after))).encode()))
    return await send_json(send, status, error_body(error.message, kind, error.kind.value), headers)


async def send_error(send: Send, status: int, message: str, kind: str, code: str | None) -> int:
    return await send_json(send, status, error_body(message, kind, code))


async def send_json(send: Send, status: int, payload: Any, extra: list[tuple[bytes, bytes]] | None = None) -> int:
    data = orjson.dumps(payload)
    headers = [*JSON_HEADERS, (b"content-length", str(len(data)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
    return len(data)
