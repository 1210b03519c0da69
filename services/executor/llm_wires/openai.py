"""The OpenAI chat completions wire (OpenAI, vLLM, Ollama, LiteLLM, any compatible server).

The body goes as it is, answers come back as they are, with the usage asked for on streams."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx2
import orjson

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.llm import Usage
from libs.common.contracts.llm_config import ProviderConfig

from .base import Outgoing, WireFailure, failure_of, json_detail
from .sse import SseParser

__all__ = ["OpenAiDecoder", "OpenAiWire", "usage_of"]


def usage_of(usage: Any) -> Usage | None:
    """OpenAI's `usage` object, cached and reasoning tokens read from their `*_details`."""
    if not isinstance(usage, dict):
        return None
    found = Usage.model_validate(usage)
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    if isinstance(prompt_details, dict) and isinstance(prompt_details.get("cached_tokens"), int):
        found.cached_tokens = prompt_details["cached_tokens"]
    if isinstance(completion_details, dict) and isinstance(completion_details.get("reasoning_tokens"), int):
        found.reasoning_tokens = completion_details["reasoning_tokens"]
    return found


class OpenAiWire:
    def __init__(self, config: ProviderConfig, credential: str | None) -> None:
        self.endpoint = self._url(config)
        self._headers = {"content-type": "application/json", **self._auth(config, credential)}

    @staticmethod
    def _url(config: ProviderConfig) -> httpx2.URL:
        url = httpx2.URL(config.base_url)
        return url.copy_with(path=url.path.rstrip("/") + "/chat/completions")

    @staticmethod
    def _auth(_config: ProviderConfig, credential: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {credential}"} if credential else {}

    async def request(self, body: dict[str, Any], streaming: bool) -> Outgoing:
        if streaming:
            # usage arrives in a last chunk only when asked for; audit and budgets need it
            body = {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
        return Outgoing(self._target(body), self._headers, orjson.dumps(body))

    def _target(self, _body: dict[str, Any]) -> httpx2.URL:
        return self.endpoint

    def completion(self, payload: Any, _model: str) -> dict[str, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
            raise WireFailure(ErrorKind.UPSTREAM_ERROR, "the provider's answer is not a chat completion")
        return payload

    def decoder(self, _model: str) -> OpenAiDecoder:
        return OpenAiDecoder()

    def failure(self, status: int, body: bytes, headers: Mapping[str, str]) -> WireFailure:
        return failure_of(status, json_detail(body, "error", "message"), headers)


class OpenAiDecoder:
    """Chunks as the provider sent them.

    The stream is complete at `[DONE]` (or, from servers that never send it, once a finish reason came)."""

    def __init__(self) -> None:
        self._sse = SseParser()
        self.finished = False
        self.failure: WireFailure | None = None
        self._finish_seen = False

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        for _event, text in self._sse.feed(data):
            if text.strip() == "[DONE]":
                self.finished = True
                continue
            chunk = orjson.loads(text)
            if not isinstance(chunk, dict):
                continue
            if isinstance(chunk.get("error"), dict):  # an error event after the 200 (OpenAI, vLLM)
                detail = chunk["error"].get("message") or "the provider reported an error mid-stream"
                self.failure = WireFailure(ErrorKind.UPSTREAM_ERROR, str(detail))
                break
            if any(isinstance(c, dict) and c.get("finish_reason") for c in chunk.get("choices") or []):
                self._finish_seen = True
            chunks.append(chunk)
        return chunks

    def end(self) -> list[dict[str, Any]]:
        self.finished = self.finished or self._finish_seen
        return []
