"""Reading one POST to `/mcp` and checking its JSON-RPC envelope: pure functions over what the
endpoint received (`endpoint.McpEndpoint`), each saying what is wrong rather than raising into it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp.shared.inbound import InboundLadderRejection, classify_inbound_request, find_duplicated_routing_header
from mcp_types import HEADER_MISMATCH

__all__ = [
    "Gone",
    "TooLarge",
    "agent_requests",
    "disconnected",
    "echo_id",
    "envelope_problem",
    "listen_problem",
    "modern_rejection",
    "positive_float",
    "read_body",
    "repeated_headers",
]

Receive = Callable[[], Awaitable[dict[str, Any]]]

_AGENT_REQUESTS = ("sampling", "elicitation", "roots")
"""Client capabilities that let an upstream ask the agent something mid-call."""
_GUARDED_HEADERS = (b"host", b"origin")
"""Headers a request may send once only: a proxy and the app could each read a different copy."""


class TooLarge(Exception):
    pass


class Gone(Exception):
    """The client disconnected (or was cut off for sending too slowly) before its body arrived."""


def positive_float(value: str | None) -> float | None:
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return number if number is not None and 0 < number < 1e6 else None


def repeated_headers(raw_headers: list[tuple[bytes, bytes]]) -> tuple[str, ...]:
    """Which of the headers that must be single the request sent more than once."""
    names = [name for name, _ in raw_headers]
    return tuple(h.decode() for h in _GUARDED_HEADERS if names.count(h) > 1)


def echo_id(message: Any) -> Any:
    """The id to answer a malformed message with: its own when that is a valid id, else null."""
    request_id = message.get("id") if isinstance(message, dict) else None
    return request_id if isinstance(request_id, str | int) and not isinstance(request_id, bool) else None


def listen_problem(wanted: Any, max_resources: int) -> str | None:
    if not isinstance(wanted, dict):
        return "subscriptions/listen needs 'params.notifications', an object"
    uris = wanted.get("resourceSubscriptions")
    if uris is None:
        return None
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        return "'params.notifications.resourceSubscriptions' must be a list of resource URIs (strings)"
    if len(uris) > max_resources:
        return f"'params.notifications.resourceSubscriptions' names {len(uris)} resources; at most {max_resources}"
    return None


def envelope_problem(message: Any) -> str | None:
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


def modern_rejection(
    message: dict[str, Any], raw_headers: list[tuple[bytes, bytes]], headers: dict[str, str]
) -> InboundLadderRejection | None:
    duplicated = find_duplicated_routing_header((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers)
    if duplicated is not None:
        return InboundLadderRejection(code=HEADER_MISMATCH, message=f"{duplicated} header appears more than once")
    verdict = classify_inbound_request(message, headers=headers)
    return verdict if isinstance(verdict, InboundLadderRejection) else None


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            raise Gone
        chunk = event.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise TooLarge
            chunks.append(chunk)
        if not event.get("more_body"):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


async def disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def agent_requests(params: Any) -> tuple[str, ...]:
    capabilities = params.get("capabilities") if isinstance(params, dict) else None
    if not isinstance(capabilities, dict):
        return ()
    return tuple(name for name in _AGENT_REQUESTS if isinstance(capabilities.get(name), dict))
