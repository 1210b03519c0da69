"""OpenAI Responses conversations kept on the bus, for `previous_response_id` (`/v1/responses`).

Each answer's conversation (its chat messages up to and with the answer, the request's `instructions`
left out as OpenAI leaves them out) is kept in the KV bucket `bastion_responses` under the caller's
prefix and a digest of the response id, before the answer goes out: the next request, on any ingress
replica, continues it by naming the id. A key never reads another key's: its id looks up a key that
does not exist. Entries live a day (the bucket's TTL); the bucket drops its oldest when full, and a
conversation over `MAX_ENTRY_BYTES` is not kept (the answer says `"store": false`)."""

from __future__ import annotations

import logging
from typing import Any, Final

import orjson
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from libs.common.contracts.gateway_tasks import task_key
from services.ingress.llm.front_writer import Finished
from services.ingress.llm.responses_out import ResponsesWriter
from services.ingress.llm.wire import Refused

__all__ = ["MAX_ENTRY_BYTES", "ResponseStore", "continued", "conversation"]

log = logging.getLogger(__name__)

MAX_ENTRY_BYTES: Final = 900 * 1024
"""The largest conversation kept: under NATS's default 1 MiB message, with room for the headers."""


class ResponseStore:
    def __init__(self, kv: KeyValue | None) -> None:
        self.kv = kv
        """None: a gateway started without the bus bucket, which keeps nothing."""

    async def prepare(
        self, key_id: str, request: dict[str, Any], writer: ResponsesWriter, body: dict[str, Any]
    ) -> None:
        """Continue the conversation `previous_response_id` names, and keep this one's answer.

        Its messages go before `body`'s; `writer` keeps the answer's conversation (unless `store: false`)."""
        previous = request.get("previous_response_id")
        if previous is not None:
            body["messages"] = continued(await self.earlier(key_id, previous), body["messages"])
        if request.get("store") is not False:
            messages = body["messages"]

            async def keep(finished: Finished) -> bool:
                return await self.keep(key_id, writer.response_id, conversation(messages, finished))

            writer.keep = keep

    async def earlier(self, key_id: str, response_id: Any) -> list[dict[str, Any]]:
        """The kept conversation `response_id` ends, for the key that made it (else a 404)."""
        if not isinstance(response_id, str) or not response_id:
            raise Refused(400, "previous_response_id: a response id (a string) is required", code="invalid_request")
        try:  # the caller's prefix and the id's digest: another key's id names a key that does not exist
            entry = await self.kv.get(task_key(key_id, response_id)) if self.kv is not None else None
        except KeyNotFoundError:
            entry = None
        if entry is None or not entry.value:
            raise Refused(
                404,
                f"previous response {response_id!r} not found: it expired (responses are kept a day), was not "
                "stored (store: false, or too large to keep), or was made with another key",
                code="previous_response_not_found",
            )
        messages: list[dict[str, Any]] = orjson.loads(entry.value)["messages"]
        return messages

    async def keep(self, key_id: str, response_id: str, messages: list[dict[str, Any]]) -> bool:
        """Keep the conversation `response_id` ends; False when it is too large or the bus refused it."""
        value = orjson.dumps({"messages": messages})
        if self.kv is None:
            return False
        if len(value) > MAX_ENTRY_BYTES:
            log.info("a Responses conversation of %d bytes is not kept (over %d)", len(value), MAX_ENTRY_BYTES)
            return False
        try:
            await self.kv.put(task_key(key_id, response_id), value)
        except Exception as exc:  # a lost conversation costs the client a resend, never the answer
            log.warning("a Responses conversation was not kept: %s", type(exc).__name__)
            return False
        return True


def _instructions(messages: list[dict[str, Any]]) -> int:
    """How many of a Responses request's messages its `instructions` made (a first system message)."""
    return 1 if messages and messages[0].get("role") == "system" else 0


def continued(earlier: list[dict[str, Any]], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request's messages after the kept conversation, its own instructions first."""
    lead = _instructions(messages)
    return [*messages[:lead], *earlier, *messages[lead:]]


def conversation(messages: list[dict[str, Any]], finished: Finished) -> list[dict[str, Any]]:
    """What to keep of an answered request.

    Its messages (less its instructions), what agent mode ran, and the answer."""
    answer: dict[str, Any] = {"role": "assistant", "content": finished.text or None}
    if finished.calls:
        answer["tool_calls"] = finished.calls
    transcript = (finished.summary or {}).get("transcript") or []
    return [*messages[_instructions(messages) :], *transcript, answer]
