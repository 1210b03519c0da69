"""The chat completions wire as OpenAI speaks it (and Azure OpenAI, under its deployments' paths)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from .base import Answer, Call, Reply, WireSpeaker, json_answer, retrying

__all__ = ["AzureSpeaker", "OpenAiSpeaker"]

AZURE_VERSION = "2024-10-21"


class OpenAiSpeaker(WireSpeaker):
    prefix = "/v1"
    overload_event = (
        b"data: "
        + orjson.dumps(
            {"error": {"message": "The server had an error while processing your request", "type": "server_error"}}
        )
        + b"\n\n"
    )

    def route(self, path: str, body: dict[str, Any]) -> tuple[str, bool] | None:
        return (
            (str(body.get("model")), body.get("stream") is True)
            if urlsplit(path).path.endswith("/chat/completions")
            else None
        )

    def _authorized(self, headers: dict[str, str]) -> bool:
        return self._key is None or headers.get("authorization") == f"Bearer {self._key}"

    def refusal(self, path: str, headers: dict[str, str], raw: bytes, body: dict[str, Any]) -> Answer | None:
        from tests.support.llm_provider import conversation_problem

        if not self._authorized(headers):
            return self._error(401, "Incorrect API key provided", "invalid_request_error")
        problem = conversation_problem(body.get("messages"))
        if problem is not None:
            return self._error(400, problem, "invalid_request_error", "messages")
        return None

    @staticmethod
    def _error(status: int, message: str, kind: str, param: str | None = None) -> Answer:
        return json_answer(status, {"error": {"message": message, "type": kind, "param": param, "code": None}})

    def call_ids(self, count: int) -> list[str]:
        return [f"call_{next(self._ids)}" for _ in range(count)]

    @staticmethod
    def _calls(calls: list[Call]) -> list[dict[str, Any]]:
        return [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": orjson.dumps(c.arguments).decode()},
            }
            for c in calls
        ]

    @staticmethod
    def _usage(reply: Reply) -> dict[str, Any]:
        prompt, completion = reply.usage
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if reply.cached or reply.reasoning:
            usage["prompt_tokens_details"] = {"cached_tokens": reply.cached}
            usage["completion_tokens_details"] = {"reasoning_tokens": reply.reasoning}
        return usage

    def completion(self, reply: Reply, calls: list[Call], model: str) -> Answer:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if calls:
            message["tool_calls"] = self._calls(calls)
        return json_answer(
            200,
            {
                "id": f"chatcmpl-{next(self._ids)}",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
                "usage": self._usage(reply),
            },
        )

    def stream(self, reply: Reply, calls: list[Call], model: str, body: dict[str, Any], whole: bool) -> Answer:
        chunks = self._chunks(reply, calls, model, body)
        if not whole:  # no finish reason, no usage
            chunks = [c for c in chunks if "usage" not in c and not c["choices"][0]["finish_reason"]]
        frames = [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks]
        return Answer(200, "text/event-stream", [*frames, b"data: [DONE]\n\n"] if whole else frames, streamed=True)

    def _chunks(self, reply: Reply, calls: list[Call], model: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """As OpenAI streams: a role delta, text in pieces, each tool call's name then its arguments
        in two pieces, a finish reason, and (when asked for) a last chunk with the usage."""
        base = {"id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion.chunk", "created": 1_700_000_000}
        base["model"] = model

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        chunks = [chunk({"role": "assistant", "content": ""})]
        text = reply.text or ""
        chunks += [chunk({"content": text[i : i + 4]}) for i in range(0, len(text), 4)]
        for index, call in enumerate(self._calls(calls)):
            head = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"]},
            }
            chunks.append(chunk({"tool_calls": [{**head, "function": {**head["function"], "arguments": ""}}]}))
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
        chunks.append(chunk({}, "tool_calls" if calls else "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": self._usage(reply)})
        return chunks

    def error(self, status: int, message: str, retry_after: float | None) -> Answer:
        answer = self._error(status, message, "rate_limit_error" if status == 429 else "server_error")
        return retrying(answer, retry_after)

    def overload(self) -> Answer:
        return self._error(503, "The engine is currently overloaded, please try again later", "server_error")

    def tool_names(self, body: dict[str, Any]) -> list[str]:
        return [tool["function"]["name"] for tool in body.get("tools", [])]

    def tool_results(self, body: dict[str, Any]) -> list[str]:
        return [m["content"] for m in body.get("messages", []) if m.get("role") == "tool"]


class AzureSpeaker(OpenAiSpeaker):
    """Azure OpenAI: `/openai/deployments/<deployment>/chat/completions?api-version=...`, `api-key`."""

    prefix = "/openai"

    def route(self, path: str, body: dict[str, Any]) -> tuple[str, bool] | None:
        parts = urlsplit(path)
        segments = parts.path.split("/")
        if len(segments) != 6 or segments[1:3] != ["openai", "deployments"] or segments[4:] != ["chat", "completions"]:
            return None
        return segments[3], body.get("stream") is True

    def refusal(self, path: str, headers: dict[str, str], raw: bytes, body: dict[str, Any]) -> Answer | None:
        if parse_qs(urlsplit(path).query).get("api-version") != [AZURE_VERSION]:
            return json_answer(404, {"error": {"code": "404", "message": "Resource not found"}})
        return super().refusal(path, headers, raw, body)

    def _authorized(self, headers: dict[str, str]) -> bool:
        return self._key is None or headers.get("api-key") == self._key
