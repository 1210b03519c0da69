"""External guardrails over HTTP: for what needs a model (toxicity, topic, a DLP product).

Bastion POSTs JSON to the rule's URL:

    {"rule": "moderation", "where": "result", "server": "crm", "name": "get_ticket",
     "caller": {"key_name": "support-bot", "user_id": "ana", "team_id": null, "customer_id": null},
     "content": <the arguments, the result or the definition, as JSON>}

and expects, within the rule's timeout, a 2xx answer:

    {"match": false}                                   nothing to do
    {"match": true, "entity": "toxicity"}              the rule's action applies (block, warn, log)
    {"match": true, "entity": "pii", "content": {...}} for a redact rule: what to send instead

Anything else (a timeout, a refused connection, another status, an answer that is not that JSON, an
answer larger than 1 MiB, a payload larger than the rule's `max_payload_bytes`) is a failure, and
the rule's `fail` decides: "closed" blocks, "open" lets the payload through and logs that it could
not be checked. The caller's key id and the key itself are never sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson

from libs.common.contracts.guardrails import WebhookGuard, Where

from .base import Subject

__all__ = ["MAX_ANSWER_BYTES", "WebhookClient", "WebhookVerdict", "webhook_request"]

MAX_ANSWER_BYTES: Final = 1024 * 1024
_ENTITY_CHARS: Final = 64


@dataclass(frozen=True, slots=True)
class WebhookVerdict:
    match: bool = False
    entity: str | None = None
    content: Any = None
    has_content: bool = False
    failed: str | None = None
    """Why the service gave no usable answer: timeout, unreachable, status, invalid, too_large."""


def webhook_request(rule: str, where: Where, subject: Subject, content: Any) -> dict[str, Any]:
    caller = subject.caller
    return {
        "rule": rule,
        "where": where,
        "server": subject.server,
        "name": subject.name,
        "caller": None
        if caller is None
        else {
            "key_name": caller.key_name,
            "user_id": caller.user_id,
            "team_id": caller.team_id,
            "customer_id": caller.customer_id,
        },
        "content": content,
    }


def _entity(value: Any) -> str:
    """The service's name for what it found, kept short and printable (it lands in audit rows)."""
    if not isinstance(value, str) or not value:
        return "match"
    clean = "".join(c if c.isalnum() or c in "_-.:" else "_" for c in value[:_ENTITY_CHARS])
    return clean or "match"


class WebhookClient:
    """One HTTP client (connection pool) for every webhook rule of an executor."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16), follow_redirects=False
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def check(self, guard: WebhookGuard, request: dict[str, Any]) -> WebhookVerdict:
        try:
            body = orjson.dumps(request, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            return WebhookVerdict(failed="invalid")
        if len(body) > guard.max_payload_bytes:
            return WebhookVerdict(failed="too_large")
        headers = {**guard.headers, "content-type": "application/json"}
        try:
            # httpx's timeout bounds each read, not the whole answer: a service trickling a byte a
            # second would hold the call for ever; this bounds the whole exchange
            async with asyncio.timeout(guard.timeout):
                answer = await self._post(guard, body, headers)
        except (TimeoutError, httpx.TimeoutException):
            return WebhookVerdict(failed="timeout")
        except _TooLarge:
            return WebhookVerdict(failed="too_large")
        except httpx.HTTPError:
            return WebhookVerdict(failed="unreachable")
        if answer is None:
            return WebhookVerdict(failed="status")
        try:
            parsed = orjson.loads(answer)
        except orjson.JSONDecodeError:
            return WebhookVerdict(failed="invalid")
        if not isinstance(parsed, dict) or not isinstance(parsed.get("match"), bool):
            return WebhookVerdict(failed="invalid")
        if not parsed["match"]:
            return WebhookVerdict()
        entity, content = _entity(parsed.get("entity")), parsed.get("content")
        return WebhookVerdict(match=True, entity=entity, content=content, has_content="content" in parsed)

    async def _post(self, guard: WebhookGuard, body: bytes, headers: dict[str, str]) -> bytes | None:
        """The answer's body, or None for a status other than 2xx."""
        async with self._client.stream(
            "POST", guard.url, content=body, headers=headers, timeout=httpx.Timeout(guard.timeout)
        ) as response:
            if not 200 <= response.status_code < 300:
                return None
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise _TooLarge
                chunks.append(chunk)
            return b"".join(chunks)


class _TooLarge(Exception):
    pass
