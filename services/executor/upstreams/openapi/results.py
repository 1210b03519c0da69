"""An HTTP answer as the tool result of the call (a `CallToolResult`, wire JSON).

2xx: JSON becomes `structuredContent` (wrapped as `{"result": ...}` where the output schema says so)
beside its text, after a check against the output schema: an answer that breaks the schema the tool
promised is a tool error naming the first violation (clients would refuse it with less to go on);
text answers are text, images and audio their MCP content, other binary bodies an embedded resource.
502, 503 and 504 say the API is unwell: a gateway error the breaker counts and idempotent calls are
retried on. Any other status is a tool error (`isError`) carrying the status and the first
`MAX_EXCERPT` bytes of the body. Bodies are bounded before they get here (the executor's HTTP client
reads no more than the result limit allows).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from jsonschema import Draft202012Validator, SchemaError
from jsonschema.exceptions import ValidationError
from referencing import Registry

from libs.common.contracts import json_codec
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import GatewayError

from .definitions import Binding
from .operations import media_kind

__all__ = ["MAX_EXCERPT", "Answer", "OutputCheck", "to_result"]

MAX_EXCERPT: Final = 4096
"""Bytes of an error answer's body quoted in the tool error."""
_UNWELL: Final = frozenset({502, 503, 504})
_TEXTUAL: Final = ("xml", "yaml", "javascript", "csv", "html", "graphql", "x-www-form-urlencoded")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    reason: str
    content_type: str
    body: bytes
    url: str
    location: str | None = None


class OutputCheck:
    """A tool's compiled output schema validator (compiling costs tens of times a validation)."""

    __slots__ = ("_validator",)

    def __init__(self, schema: dict[str, Any]) -> None:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError:
            self._validator: Draft202012Validator | None = None
            return
        self._validator = Draft202012Validator(schema, registry=Registry())

    def problem(self, value: Any) -> str | None:
        if self._validator is None:
            return None
        error: ValidationError | None = next(iter(self._validator.iter_errors(value)), None)
        if error is None:
            return None
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path) or " (top level)"
        return f"at answer{where}: {error.message[:300]}"


def _excerpt(body: bytes) -> str:
    text = body[:MAX_EXCERPT].decode("utf-8", "replace")
    more = len(body) - MAX_EXCERPT
    return text + (f" … ({more:,} more bytes)" if more > 0 else "")


def _charset(content_type: str) -> str:
    for piece in content_type.split(";")[1:]:
        key, _, value = piece.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip('"')
    return "utf-8"


def _text(answer: Answer) -> str:
    try:
        return answer.body.decode(_charset(answer.content_type), "replace")
    except LookupError:
        return answer.body.decode("utf-8", "replace")


def _without_query(url: str) -> str:
    """The request URL without its query, which may carry an API key."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))


def _status(answer: Answer) -> str:
    return f"HTTP {answer.status}{f' {answer.reason}' if answer.reason else ''}"


def _content(answer: Answer) -> list[dict[str, Any]]:
    media = answer.content_type.split(";", 1)[0].strip().lower()
    if not answer.body:
        return [{"type": "text", "text": _status(answer)}]
    if media.startswith("image/"):
        return [{"type": "image", "data": base64.b64encode(answer.body).decode(), "mimeType": media}]
    if media.startswith("audio/"):
        return [{"type": "audio", "data": base64.b64encode(answer.body).decode(), "mimeType": media}]
    if media.startswith("text/") or any(t in media for t in _TEXTUAL) or media_kind(media) == "json" or not media:
        return [{"type": "text", "text": _text(answer)}]
    blob = base64.b64encode(answer.body).decode()
    resource = {"uri": _without_query(answer.url), "mimeType": media, "blob": blob}
    return [{"type": "resource", "resource": resource}]


def to_result(
    binding: Binding, answer: Answer, check: OutputCheck | None, server: str
) -> dict[str, Any] | GatewayError:
    """The tool result of `answer`, or the gateway error it amounts to (the API is unwell)."""
    if answer.status in _UNWELL:
        message = f"server {server!r} answered {_status(answer)}: {_excerpt(answer.body)}"
        return GatewayError(kind=ErrorKind.UPSTREAM_UNAVAILABLE, message=message)
    if not 200 <= answer.status < 300:
        text = f"{_status(answer)}"
        if answer.location is not None and 300 <= answer.status < 400:
            text += f" (Location: {answer.location})"
        if answer.body:
            text += f": {_excerpt(answer.body)}"
        return {"content": [{"type": "text", "text": text}], "isError": True}
    media = answer.content_type.split(";", 1)[0].strip().lower()
    content = _content(answer)
    if not answer.body or media_kind(media) != "json":
        return {"content": content}
    try:
        value = json_codec.loads(answer.body)
    except ValueError:
        return {"content": content}
    structured = {"result": value} if binding.wrapped else value
    if not isinstance(structured, dict):
        return {"content": content}
    if check is not None and (problem := check.problem(structured)) is not None:
        note = (
            f"{_status(answer)}: the request ran, but the answer does not match the operation's documented schema "
            f"({problem}); the answer: {_excerpt(answer.body)}"
        )
        return {"content": [{"type": "text", "text": note}], "isError": True}
    return {"content": content, "structuredContent": structured}
