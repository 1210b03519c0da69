"""MCP protocol facts ingress needs: versions, result shaping per revision, error bodies.

Two eras reach `/mcp`: the handshake era (2024-11-05 .. 2025-11-25: `initialize`, then requests
on an `Mcp-Session-Id`) and the 2026-07-28 per-request era (`server/discover`, every request
self-describing in `params._meta` and mirrored in headers). The version constants and the
inbound validation ladder come from the official SDK, not copies of it.
"""

from __future__ import annotations

from typing import Any, Final

from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    PROTOCOL_VERSION_META_KEY,
    SERVER_INFO_META_KEY,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS

from bastion_common.errors import JSONRPC_CODE, ErrorKind
from bastion_common.messages import GatewayError

__all__ = [
    "DEFAULT_LEGACY_VERSION",
    "ENVELOPE_META_KEYS",
    "SERVER_INFO",
    "error_body",
    "negotiate_handshake",
    "shape_result",
]

SERVER_INFO: Final = {"name": "bastion", "title": "Bastion MCP gateway", "version": "0.1.0"}

DEFAULT_LEGACY_VERSION: Final = "2025-03-26"
"""What a request with neither session nor version header is assumed to speak (the spec's rule)."""

ENVELOPE_META_KEYS: Final = frozenset({PROTOCOL_VERSION_META_KEY, CLIENT_INFO_META_KEY, CLIENT_CAPABILITIES_META_KEY})
"""Per-request envelope keys of 2026-07-28: about the agent's hop, never forwarded upstream."""

_LATER_RESULT_FIELDS: Final = ("resultType", "ttlMs", "cacheScope")


def negotiate_handshake(requested: Any) -> str:
    return requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION


def is_modern(version: str) -> bool:
    return version in MODERN_PROTOCOL_VERSIONS


def shape_result(result: dict[str, Any], version: str) -> dict[str, Any]:
    """Fit a result (ours or an upstream's, of any revision) to the agent's revision.

    Modern agents get the required `resultType` and Bastion's `serverInfo` stamp (an upstream's
    own stamp would misreport who answered); handshake-era agents get neither, nor cache hints.
    """
    if version in MODERN_PROTOCOL_VERSIONS:
        meta = result.get("_meta")
        stamped = {**meta, SERVER_INFO_META_KEY: SERVER_INFO} if isinstance(meta, dict) else {SERVER_INFO_META_KEY: SERVER_INFO}
        return {**result, "resultType": result.get("resultType") or "complete", "_meta": stamped}
    if any(field in result for field in _LATER_RESULT_FIELDS) or (
        isinstance(result.get("_meta"), dict) and SERVER_INFO_META_KEY in result["_meta"]
    ):
        result = {k: v for k, v in result.items() if k not in _LATER_RESULT_FIELDS}
        meta = result.get("_meta")
        if isinstance(meta, dict):
            meta = {k: v for k, v in meta.items() if k != SERVER_INFO_META_KEY}
            if meta:
                result["_meta"] = meta
            else:
                del result["_meta"]
    return result


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
    return error_body(request_id, code, error.message, data)
