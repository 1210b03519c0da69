"""MCP protocol facts ingress needs: versions, result shaping per revision, error bodies.

Two eras reach `/mcp`: the handshake era (2024-11-05 .. 2025-11-25: `initialize`, then requests
on an `Mcp-Session-Id`) and the 2026-07-28 per-request era (`server/discover`, every request
self-describing in `params._meta` and mirrored in headers). The version constants and the
inbound validation ladder come from the official SDK, not copies of it.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

import orjson
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    INTERNAL_ERROR,
    PROTOCOL_VERSION_META_KEY,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS

from libs.common.contracts.errors import JSONRPC_CODE, ErrorKind
from libs.common.contracts.messages import GatewayError
from libs.common.contracts.oauth_upstream import for_the_agent
from libs.common.contracts.results import SERVER_INFO, shape_result

__all__ = [
    "DEFAULT_LEGACY_VERSION",
    "ENVELOPE_META_KEYS",
    "SERVER_INFO",
    "RawJson",
    "encode_json",
    "error_body",
    "negotiate_handshake",
    "ok_body",
    "result_object",
    "shape_result",
    "tool_error_result",
]

log = logging.getLogger(__name__)

DEFAULT_LEGACY_VERSION: Final = "2025-03-26"
"""What a request with neither session nor version header is assumed to speak (the spec's rule)."""

ENVELOPE_META_KEYS: Final = frozenset({PROTOCOL_VERSION_META_KEY, CLIENT_INFO_META_KEY, CLIENT_CAPABILITIES_META_KEY})
"""Per-request envelope keys of 2026-07-28: about the agent's hop, never forwarded upstream."""


def negotiate_handshake(requested: Any) -> str:
    return requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION


def is_modern(version: str) -> bool:
    return version in MODERN_PROTOCOL_VERSIONS


INVALID_ARGUMENTS_AS_TOOL_ERROR_SINCE: Final = "2025-11-25"
"""SEP-1303: from this revision on, arguments that fail a tool's `inputSchema` are a tool result."""


def tool_error_result(error: GatewayError, version: str) -> dict[str, Any] | None:
    """The `isError` tool result that answers `error` for an agent on `version`, or None for a JSON-RPC error.

    Only invalid arguments qualify, and only from 2025-11-25 on (SEP-1303): the model reads every
    violation and can call again with fixed arguments, where a JSON-RPC error would often stop at the
    client. Earlier agents keep -32602, as their revisions prescribe. (Revisions are ISO dates, so they
    compare as strings.)"""
    if error.kind is not ErrorKind.INVALID_ARGUMENTS or version < INVALID_ARGUMENTS_AS_TOOL_ERROR_SINCE:
        return None
    return {"content": [{"type": "text", "text": error.message}], "isError": True}


def ok_body(request_id: Any, version: str, result: dict[str, Any]) -> dict[str, Any]:
    """A JSON-RPC answer carrying `result`, shaped for the agent's protocol revision."""
    return {"jsonrpc": "2.0", "id": request_id, "result": shape_result(result, version)}


def error_body(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def gateway_error_body(request_id: Any, error: GatewayError, **context: Any) -> dict[str, Any]:
    code = error.code if error.kind is ErrorKind.UPSTREAM_ERROR and error.code is not None else JSONRPC_CODE[error.kind]
    data = {"kind": error.kind.value, **context}
    if isinstance(error.data, dict):
        data.update(error.data)  # e.g. a limit refusal's scope, resets_at and retry_after
    elif error.data is not None:
        data["detail"] = error.data
    # the audit row keeps `error.message`; only the agent's answer names the user's authorization link
    return error_body(request_id, code, for_the_agent(error.message, error.data), data)


class RawJson:
    """JSON an executor encoded for the agent (a result, shaped for the agent's revision).

    Spliced into the answer as it is, never parsed on the way (`encode_json`). Not a dataclass: orjson
    would encode one field by field instead of asking `default`."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def parsed(self) -> Any:
        return json.loads(self.raw)  # the standard library keeps integers beyond 64 bits exact


def result_object(result: Any) -> dict[str, Any]:
    """A JSON-RPC answer's `result` as a dict, for the few readers that need one (`/v1` tool messages)."""
    value = result.parsed() if isinstance(result, RawJson) else result
    return value if isinstance(value, dict) else {}


def _raw(value: Any) -> Any:
    if isinstance(value, RawJson):
        return orjson.Fragment(value.raw)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _parsed(value: Any) -> Any:
    if isinstance(value, RawJson):
        return value.parsed()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode_json(message: dict[str, Any]) -> bytes:
    """JSON for a message to the agent; cannot fail.

    A `RawJson` goes in as its bytes. orjson refuses integers beyond 64 bits and nesting past 255 levels,
    both valid JSON an upstream may send: the standard library encodes those. What neither can encode
    becomes an internal error naming why."""
    try:
        return orjson.dumps(message, default=_raw)
    except TypeError as first:
        try:
            return json.dumps(
                message, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_parsed
            ).encode()
        except (TypeError, ValueError, RecursionError):
            log.warning("a message could not be encoded as JSON (%s)", first)
            request_id = message.get("id")
            if not isinstance(request_id, str | int) or isinstance(request_id, bool):
                request_id = None
            return orjson.dumps(
                error_body(request_id, INTERNAL_ERROR, f"the gateway could not encode the answer as JSON ({first})")
            )
