"""Gemini's wire as Google speaks it: the Generative Language API (`/v1beta/models/<m>:generateContent`,
`:streamGenerateContent?alt=sse`, `x-goog-api-key`) and Vertex AI (the same under
`/v1/projects/<p>/locations/<l>/publishers/google/models`, a bearer token).

Requests are checked against the `google-genai` SDK's own types (`Content`, `Tool`, `ToolConfig`,
`GenerationConfig`: camelCase, unknown fields refused), and the conversation as Gemini checks it:
user and model turns alternate from the user, each model turn's function calls are answered by as
many `functionResponse` parts of the same names in the next user turn, and a call this provider
signed comes back with its `thoughtSignature` (as Gemini 3 requires).
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from google.genai import types
from pydantic import BaseModel, ValidationError

from .base import Answer, Call, Reply, WireSpeaker, json_answer

__all__ = ["GeminiSpeaker", "VertexSpeaker"]

_FIELDS: dict[str, type[BaseModel]] = {
    "systemInstruction": types.Content,
    "toolConfig": types.ToolConfig,
    "generationConfig": types.GenerationConfig,
}
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED"}


class GeminiSpeaker(WireSpeaker):
    prefix = "/v1beta"
    overload_event = (
        b"data: "
        + orjson.dumps({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})
        + b"\r\n\r\n"
    )
    models = re.compile(r"^/v1(beta)?/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)$")
    """Both API versions: Bastion's default is `v1beta`, the google-genai SDK's `v1`."""

    def __init__(self, key: str | None = None) -> None:
        super().__init__(key)
        self.signatures: set[bytes] = set()
        """The thought signatures this provider gave its function calls (bytes, as the SDK types them)."""

    def route(self, path: str, body: dict[str, Any]) -> tuple[str, bool] | None:
        parts = urlsplit(path)
        found = self.models.match(parts.path)
        if found is None:
            return None
        streaming = found["method"] == "streamGenerateContent"
        if streaming and parse_qs(parts.query).get("alt") != ["sse"]:
            return None  # without alt=sse Gemini streams a JSON array, which is not what the wire reads
        return found["model"], streaming

    def _authorized(self, headers: dict[str, str]) -> bool:
        return self._key is None or headers.get("x-goog-api-key") == self._key

    @staticmethod
    def _error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> Answer:
        error: dict[str, Any] = {"code": status, "message": message, "status": _STATUS.get(status, "INTERNAL")}
        if status == 503:
            error["status"] = "UNAVAILABLE"
        if details:
            error["details"] = details
        return json_answer(status, {"error": error})

    def refusal(self, path: str, headers: dict[str, str], raw: bytes, body: dict[str, Any]) -> Answer | None:
        if not self._authorized(headers):
            return self._error(401, "API key not valid. Please pass a valid API key.")
        unknown = set(body) - {"contents", "tools", *_FIELDS}
        if unknown:
            return self._error(400, f'Invalid JSON payload received. Unknown name "{sorted(unknown)[0]}"')
        try:
            contents = [types.Content.model_validate(c) for c in body.get("contents") or []]
            for tool in body.get("tools") or []:
                types.Tool.model_validate(tool)
            for name, model in _FIELDS.items():
                if name in body:
                    model.model_validate(body[name])
        except ValidationError as exc:
            return self._error(400, f"Invalid JSON payload received. {str(exc).splitlines()[0]}")
        problem = self._conversation_problem(contents)
        return None if problem is None else self._error(400, problem)

    def _conversation_problem(self, contents: list[types.Content]) -> str | None:
        if not contents:
            return "* GenerateContentRequest.contents: contents is not specified"
        expected, open_calls = "user", Counter[str]()
        for i, content in enumerate(contents):
            if content.role != expected:
                return f"contents[{i}]: turns must alternate between user and model, starting with user"
            parts = content.parts or []
            answered = Counter(p.function_response.name or "" for p in parts if p.function_response is not None)
            if content.role == "user" and answered != open_calls:
                return (
                    "Please ensure that the number of function response parts is equal to the number of "
                    "function call parts of the function call turn."
                )
            calls = [p for p in parts if p.function_call is not None]
            if calls and calls[0].thought_signature is not None and calls[0].thought_signature not in self.signatures:
                return f"contents[{i}]: the function call's thought signature is not valid"
            if calls and self.signatures and calls[0].thought_signature is None:
                return f"Function call is missing a thought_signature in functionCall parts (contents[{i}])"
            open_calls = Counter(p.function_call.name or "" for p in calls if p.function_call is not None)
            expected = "model" if expected == "user" else "user"
        return None

    def call_ids(self, count: int) -> list[str]:
        return ["" for _ in range(count)]  # Gemini's function calls have no id

    @staticmethod
    def _usage(reply: Reply) -> dict[str, Any]:
        prompt, completion = reply.usage
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": completion - reply.reasoning}
        usage["totalTokenCount"] = prompt + completion
        if reply.cached:
            usage["cachedContentTokenCount"] = reply.cached
        if reply.reasoning:
            usage["thoughtsTokenCount"] = reply.reasoning
        return usage

    def _call_parts(self, calls: list[Call]) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        for i, call in enumerate(calls):
            part: dict[str, Any] = {"functionCall": {"name": call.name, "args": call.arguments}}
            if i == 0:  # Gemini signs the first function call of a step
                signature = f"c2lnbmF0dXJl{next(self._ids):04d}"
                self.signatures.add(base64.b64decode(signature))
                part["thoughtSignature"] = signature
            parts.append(part)
        return parts

    def _response(self, parts: list[dict[str, Any]], model: str, finish: str | None, reply: Reply) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish is not None:
            candidate["finishReason"] = finish
        return {
            "candidates": [candidate],
            "usageMetadata": self._usage(reply),
            "modelVersion": model,
            "responseId": "r1",
        }

    def completion(self, reply: Reply, calls: list[Call], model: str) -> Answer:
        parts = ([{"text": reply.text}] if reply.text else []) + self._call_parts(calls)
        return json_answer(200, self._response(parts, model, "STOP", reply))

    def stream(self, reply: Reply, calls: list[Call], model: str, body: dict[str, Any], whole: bool) -> Answer:
        text = reply.text or ""
        events = [self._response([{"text": text[i : i + 4]}], model, None, reply) for i in range(0, len(text), 4)]
        if whole:
            events.append(self._response(self._call_parts(calls), model, "STOP", reply))
        frames = [b"data: " + orjson.dumps(event) + b"\r\n\r\n" for event in events]
        return Answer(200, "text/event-stream", frames, streamed=True)

    def error(self, status: int, message: str, retry_after: float | None) -> Answer:
        details = None
        if retry_after is not None:
            details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"}]
        return self._error(status, message, details)

    def overload(self) -> Answer:
        return self._error(503, "The model is overloaded. Please try again later.")

    def tool_names(self, body: dict[str, Any]) -> list[str]:
        return [d["name"] for tool in body.get("tools", []) for d in tool.get("functionDeclarations", [])]

    def tool_results(self, body: dict[str, Any]) -> list[str]:
        return [
            part["functionResponse"]["response"]["result"]
            for content in body.get("contents", [])
            for part in content.get("parts", [])
            if "functionResponse" in part
        ]


class VertexSpeaker(GeminiSpeaker):
    prefix = "/v1"
    models = re.compile(
        r"^/v1(beta1)?/projects/[a-z0-9-]+/locations/[a-z0-9-]+/publishers/google/models/(?P<model>[^/:]+)"
        r":(?P<method>generateContent|streamGenerateContent)$"
    )

    def _authorized(self, headers: dict[str, str]) -> bool:
        return self._key is None or headers.get("authorization") == f"Bearer {self._key}"
