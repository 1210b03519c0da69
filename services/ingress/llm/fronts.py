"""The APIs agents speak to `/v1`, each a translator in front of one shared pipeline.

The request in the front's wire becomes an OpenAI chat completion (the format on the bus), and the
pipeline's chunks and outcome go back out in the front's wire, errors in the front's own shape.

- `/v1/chat/completions`: OpenAI chat completions, passed through (`wire.ResponseWriter`).
- `/v1/messages`: Anthropic Messages (`messages_in`, `messages_out`).
- `/v1/responses`: OpenAI Responses (`responses_in`, `responses_out`; `previous_response_id`: `response_store`).
- `/v1beta/models/<model>:generateContent` and `:streamGenerateContent` (and `/v1/...`, the google-genai
  SDK's default version): Gemini's Generative Language API (`gemini_in`, `gemini_out`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from libs.common.contracts.llm import LlmOutcome
from libs.common.contracts.messages import LlmFront
from services.ingress.llm import gemini_in, gemini_out, messages_in, messages_out, responses_in
from services.ingress.llm.gemini_out import GeminiWriter
from services.ingress.llm.responses_out import ResponsesWriter
from services.ingress.llm.wire import ResponseWriter, Send, error_body

__all__ = ["CHAT", "FRONTS", "GEMINI", "MESSAGES", "RESPONSES", "Front", "Writer", "front_of"]


class Writer(Protocol):
    """What the pipeline writes an answer through, whatever the front."""

    streaming: bool
    sent: int
    request_id: str

    async def chunk(self, chunk: dict[str, Any]) -> None: ...

    async def close(self, outcome: LlmOutcome, summary: dict[str, Any] | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class Front:
    name: LlmFront
    chat_request: Callable[[dict[str, Any]], dict[str, Any]]
    """The front's request body as a chat completion (raises `wire.Refused`)."""
    writer: Callable[[Send, dict[str, Any], bool], Writer]
    """The writer of one answer: (send, the translated chat body, agent mode)."""
    error_body: Callable[[int, str, str, str | None], dict[str, Any]]
    """(status, message, OpenAI error type, code) as the front's error body."""


def _chat_writer(send: Send, body: dict[str, Any], agent: bool) -> Writer:
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return ResponseWriter(send, streaming=body.get("stream") is True, agent=agent, include_usage=include_usage)


def _openai_error(_status: int, message: str, kind: str, code: str | None) -> dict[str, Any]:
    return error_body(message, kind, code)


CHAT = Front("chat_completions", lambda body: body, _chat_writer, _openai_error)
MESSAGES = Front(
    "messages",
    messages_in.chat_request,
    lambda send, body, agent: messages_out.MessagesWriter(
        send, streaming=body.get("stream") is True, agent=agent, model=str(body.get("model"))
    ),
    messages_out.error_body,
)
RESPONSES = Front(
    "responses",
    responses_in.chat_request,
    lambda send, body, agent: ResponsesWriter(
        send, streaming=body.get("stream") is True, agent=agent, model=str(body.get("model"))
    ),
    _openai_error,
)
FRONTS = {"/v1/chat/completions": CHAT, "/v1/messages": MESSAGES, "/v1/responses": RESPONSES}
"""The route of each front (POST)."""
GEMINI = Front(
    "gemini",
    gemini_in.chat_request,
    lambda send, body, agent: GeminiWriter(
        send, streaming=body.get("stream") is True, agent=agent, model=str(body.get("model"))
    ),
    gemini_out.error_body,
)
_GEMINI_METHODS = {"generateContent": False, "streamGenerateContent": True}


def front_of(path: str, query: bytes, headers: dict[str, str]) -> tuple[Front, bool]:
    """The front answering `path` (its errors in that front's shape), and whether `path` is its completion route.

    Gemini's route names the model and whether it streams: its front is bound to them here. A client
    that authenticates the Google way (`x-goog-api-key`) gets Gemini's shape on `/v1/models` too,
    which the google-genai SDK lists under its default version."""
    if path in FRONTS:
        return FRONTS[path], True
    found = gemini_in.MODEL_ROUTE.match(path)
    if found is not None and found["method"] in _GEMINI_METHODS:
        fields = {"model": found["model"], "stream": _GEMINI_METHODS[found["method"]]}
        if not fields["stream"] or b"alt=sse" in query.split(b"&"):  # without it: refused by `gemini_routes`
            return replace(GEMINI, chat_request=lambda body: gemini_in.chat_request({**body, **fields})), True
    google = path.startswith("/v1beta/") or found is not None or "x-goog-api-key" in headers
    if google and path.startswith(("/v1beta/", "/v1/models")):
        return GEMINI, False
    return (MESSAGES if path.startswith("/v1/messages") else CHAT), False
