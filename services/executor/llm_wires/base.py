"""What every wire adapter shares: the request it builds, the error it raises, the OpenAI shapes it answers in.

Inside Bastion a completion is OpenAI chat completions whatever the provider speaks: a wire turns the
request body into its provider's request, and its provider's answer (one JSON document, or a stream
of events) back into a `ChatCompletion` dict or `chat.completion.chunk` dicts, usage included.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2
import orjson

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.llm import Usage

__all__ = [
    "MAX_EVENT_BYTES",
    "ChunkMaker",
    "Decoder",
    "Outgoing",
    "Wire",
    "WireFailure",
    "chat_completion",
    "failure_of",
    "json_detail",
    "openai_usage",
    "retry_after_of",
    "token_count",
]

MAX_EVENT_BYTES = 8 * 1024 * 1024
"""One streamed event at most: a provider that sends more without an event boundary is broken."""
_OVERLOADED = frozenset({503, 529})
"""Statuses providers answer when they are overloaded (529: Anthropic's `overloaded_error`)."""


@dataclass(frozen=True)
class Outgoing:
    """One HTTP request to a provider (always a POST)."""

    url: httpx2.URL
    headers: dict[str, str]
    content: bytes


class WireFailure(Exception):
    """A provider's error answer (an HTTP status, or an error event in a stream), in Bastion's kinds.

    `detail` is the provider's own words (they may quote the prompt, and are redacted of the key by
    the caller); `retryable` says another attempt, here or on another deployment, may succeed."""

    def __init__(self, kind: ErrorKind, detail: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(detail)
        self.kind, self.detail, self.status, self.retry_after = kind, detail, status, retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in (ErrorKind.RATE_LIMITED, ErrorKind.UPSTREAM_UNAVAILABLE) or (self.status or 0) >= 500


class Decoder(Protocol):
    """A provider's stream, fed its body as it arrives, as OpenAI chunks."""

    finished: bool
    """Whether the stream said the answer is complete (a stream that stops short of it broke)."""
    failure: WireFailure | None
    """The provider's error event, once one came: the chunks before it go out first, then this."""

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The chunks `data` completes, up to an error event (which sets `failure`)."""

    def end(self) -> list[dict[str, Any]]:
        """The chunks held back until the body ended (the usage, for wires that send it early)."""


class Wire(Protocol):
    """One provider's wire: built from its configuration and credential when the provider is (re)configured."""

    endpoint: httpx2.URL
    """Where requests go, for error messages (the caller strips its userinfo and query)."""

    async def request(self, body: dict[str, Any], streaming: bool) -> Outgoing:
        """The provider's request for an OpenAI request body; raises `WireFailure` for what cannot be translated."""

    def completion(self, payload: Any, model: str) -> dict[str, Any]:
        """The provider's non-streamed answer as a `ChatCompletion` dict; raises `WireFailure` on a malformed one."""

    def decoder(self, model: str) -> Decoder: ...

    def failure(self, status: int, body: bytes, headers: Mapping[str, str]) -> WireFailure:
        """An HTTP error answer in Bastion's kinds."""


def openai_usage(usage: Usage) -> dict[str, Any]:
    """`usage` as OpenAI writes it: cached and reasoning tokens in their `*_details`."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def token_count(usage: Mapping[str, Any], name: str, default: int = 0) -> int:
    """The provider's count `usage[name]`, or `default` where it sent none (or something not a count)."""
    value = usage.get(name)
    return value if isinstance(value, int) else default


def chat_completion(
    response_id: str,
    model: str,
    message: dict[str, Any],
    finish_reason: str | None,
    usage: Usage | None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
    }
    if usage is not None:
        payload["usage"] = openai_usage(usage)
    return payload


class ChunkMaker:
    """`chat.completion.chunk` dicts of one streamed answer (one id, one model, one creation time)."""

    def __init__(self, response_id: str, model: str) -> None:
        self.id, self.model, self.created = response_id, model, int(time.time())
        self.tool_index = -1
        """The OpenAI index of the tool call being streamed (-1: none yet)."""

    def _base(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {**self._base(), "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

    def role(self) -> dict[str, Any]:
        return self.delta({"role": "assistant", "content": ""})

    def text(self, text: str) -> dict[str, Any]:
        return self.delta({"content": text})

    def tool_start(self, call_id: str, name: str, arguments: str = "") -> dict[str, Any]:
        self.tool_index += 1
        function = {"name": name, "arguments": arguments}
        return self.delta(
            {"tool_calls": [{"index": self.tool_index, "id": call_id, "type": "function", "function": function}]}
        )

    def tool_arguments(self, piece: str) -> dict[str, Any]:
        return self.delta({"tool_calls": [{"index": self.tool_index, "function": {"arguments": piece}}]})

    def finish(self, reason: str) -> dict[str, Any]:
        return self.delta({}, reason)

    def usage(self, usage: Usage) -> dict[str, Any]:
        return {**self._base(), "choices": [], "usage": openai_usage(usage)}


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    """Seconds the provider asked to wait: `retry-after-ms` (OpenAI, Azure), `retry-after` in seconds or as a date."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def failure_of(status: int, detail: str, headers: Mapping[str, str], overloaded: bool = False) -> WireFailure:
    """An HTTP error in Bastion's kinds: 429 rate limited, an overload unavailable, the rest an upstream error."""
    if status == 429:
        kind = ErrorKind.RATE_LIMITED
    elif overloaded or status in _OVERLOADED:
        kind = ErrorKind.UPSTREAM_UNAVAILABLE
    else:
        kind = ErrorKind.UPSTREAM_ERROR
    return WireFailure(kind, detail, status, retry_after_of(headers))


def json_detail(body: bytes, *path: str) -> str:
    """The message at `path` in a JSON error body, else the body as text."""
    try:
        found: Any = orjson.loads(body)
        for key in path:
            found = found[key]
        if isinstance(found, str):
            return found
    except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):
        pass
    return body.decode(errors="replace")
