"""The JSON-RPC step of `/mcp`.

One step reads the message (`ReadMessage`): the body is JSON, one JSON-RPC 2.0 message whose fields are
within their caps, and a request goes on; a notification or an agent's answer is taken and acknowledged
(`TakeNotification`), so only requests go on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp_types import INVALID_REQUEST, PARSE_ERROR

from libs.common.contracts import json_codec
from libs.common.contracts.messages import CancelCall
from services.ingress.field_limits import FieldLimits, oversized
from services.ingress.mcp_edge.answers import plain
from services.ingress.mcp_edge.chain import Answering, Check, Exchange, Refusal
from services.ingress.protocol import error_body
from services.ingress.sessions.session_ids import LiveSessions
from services.ingress.sessions.streams import CallStreams

__all__ = [
    "SESSION_HEADER",
    "ReadMessage",
    "TakeNotification",
    "echo_id",
    "envelope_problem",
]

SESSION_HEADER = "mcp-session-id"
_IDS = (str, int)


def envelope_problem(message: Any) -> str | None:
    # the usual request first, in one pass without a call: an object of JSON-RPC 2.0 with a method and
    # a string or integer id (JSON values are of their exact types: a bool id is not an int here)
    if (
        type(message) is dict
        and "jsonrpc" in message
        and message["jsonrpc"] == "2.0"
        and "method" in message
        and type(method := message["method"]) is str
        and method
        and "id" in message
        and type(message["id"]) in _IDS
    ):
        return None
    if isinstance(message, list):
        return "JSON-RPC batches are not supported: send one message per POST"
    if not isinstance(message, dict):
        return "the body must be a JSON-RPC 2.0 object"
    if message.get("jsonrpc") != "2.0":
        return "not a JSON-RPC 2.0 message: 'jsonrpc' must be \"2.0\""
    if "method" in message:
        if not isinstance(message["method"], str) or not message["method"]:
            return "'method' must be a non-empty string"
        if "id" in message and (isinstance(message["id"], bool) or not isinstance(message["id"], str | int)):
            return "'id' must be a string or an integer"
        return None
    if "id" in message and ("result" in message or "error" in message):
        return None
    return "a JSON-RPC request needs 'method' (and 'id' unless it is a notification)"


def echo_id(message: Any) -> Any:
    """The id to answer a malformed message with: its own when that is a valid id, else null."""
    request_id = message.get("id") if isinstance(message, dict) else None
    return request_id if isinstance(request_id, str | int) and not isinstance(request_id, bool) else None


class ReadMessage(Check):
    """400 / -32700 for a body that is not JSON (integers beyond 64 bits stay exact).

    400 / -32600 for anything but one JSON-RPC 2.0 request, notification or response object, 400 for a
    method, id, name, URI or `_meta` over its cap (`field_limits`), before anything is looked up,
    forwarded or written into an audit event; what is not a request goes to `take` (202). One step
    where there were four: the message is read, shaped and capped in one frame, each field looked up
    where it is decided."""

    __slots__ = ("limits", "take")

    def __init__(self, limits: FieldLimits, take: Answering) -> None:
        self.limits, self.take = limits, take

    def check(self, x: Exchange) -> Answering | None:
        try:
            message = x.message = json_codec.loads(x.body)
        except ValueError as exc:  # orjson.JSONDecodeError and json.JSONDecodeError are ValueErrors
            return Refusal(400, error_body(None, PARSE_ERROR, f"Parse error: the body is not valid JSON ({exc})"))
        if problem := envelope_problem(message):
            return Refusal(400, error_body(echo_id(message), INVALID_REQUEST, problem))
        if (too_big := oversized(message, self.limits)) is not None:
            return Refusal(400, too_big.body(None if too_big.field == "id" else message.get("id")))
        if "method" in message and "id" in message:
            x.params = message["params"] if "params" in message else None
            return None
        return self.take


class TakeNotification:
    """202 for what is not a request (`ReadMessage` hands it here).

    An agent's answer to a request Bastion relayed from an upstream (delivered to the replica waiting for
    it), `notifications/cancelled` (the replica running the request abandons it), any other notification
    (nothing to do)."""

    __slots__ = ("cancel", "sessions", "streams")

    def __init__(
        self,
        streams: CallStreams | None,
        cancel: Callable[[CancelCall], Awaitable[None]],
        sessions: LiveSessions,
    ) -> None:
        self.streams, self.cancel, self.sessions = streams, cancel, sessions

    async def __call__(self, x: Exchange) -> None:
        message = x.message
        if "method" not in message and self.streams is not None:
            await self.streams.deliver_reply(x.caller.key_id, message)
        elif message.get("method") == "notifications/cancelled":
            await self._cancelled(x, message.get("params"))
        await plain(x.send, 202, None)

    async def _cancelled(self, x: Exchange, params: Any) -> None:
        request_id = params.get("requestId") if isinstance(params, dict) else None
        session_id = x.headers.get(SESSION_HEADER)
        if not isinstance(request_id, str | int) or isinstance(request_id, bool) or not session_id:
            return
        key_id = x.caller.key_id
        if (session := self.sessions.find(session_id, key_id)) is not None:
            await self.cancel(CancelCall(key_id=key_id, session=session.handle, request_id=request_id))
