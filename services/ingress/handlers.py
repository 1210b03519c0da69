"""MCP methods as Bastion answers them: from memory where it can, over NATS where it must.

Each handler returns the JSON-RPC response body. `tools/call` also returns the audit event the
endpoint emits once it knows the response size. Only ingress turns `GatewayError`s into
JSON-RPC errors (see `protocol.gateway_error_body`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND
from mcp_types.version import KNOWN_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from bastion_common.errors import JSONRPC_CODE, ErrorKind
from bastion_common.messages import AuditEvent, Caller, GatewayError, ToolCall

from .catalog import Catalog
from .gateway import Gateway
from .keys import KeyDirectory
from .protocol import ENVELOPE_META_KEYS, SERVER_INFO, error_body, gateway_error_body, negotiate_handshake, shape_result

__all__ = ["Handlers", "RequestContext"]

_INSTRUCTIONS = (
    "Tools from every upstream MCP server behind this Bastion gateway, namespaced as <server>__<tool>. "
    "You see only the tools your key is allowed to use."
)
_DENIED = (ErrorKind.FORBIDDEN, ErrorKind.KEY_REVOKED)


@dataclass(slots=True)
class RequestContext:
    caller: Caller
    version: str
    request_id: Any
    started: float = field(default_factory=time.perf_counter)
    request_bytes: int = 0
    trace_id: str | None = None


def _capabilities() -> dict[str, Any]:
    return {"tools": {"listChanged": False}}


class Handlers:
    def __init__(self, catalog: Catalog, keys: KeyDirectory, gateway: Gateway, call_timeout: float) -> None:
        self.catalog, self.keys, self.gateway = catalog, keys, gateway
        self.call_timeout = call_timeout
        self._list_cache: dict[str, tuple[tuple[int, int], orjson.Fragment]] = {}

    async def dispatch(self, ctx: RequestContext, method: str, params: Any) -> tuple[dict[str, Any], AuditEvent | None]:
        if params is not None and not isinstance(params, dict):
            return error_body(ctx.request_id, INVALID_PARAMS, "'params' must be an object"), None
        params = params or {}
        if method == "tools/call":
            return await self.tools_call(ctx, params)
        if method == "tools/list":
            return await self.tools_list(ctx), None
        if method == "ping":
            return self._ok(ctx, {}), None
        if method == "initialize":
            return self.initialize(ctx, params), None
        if method == "server/discover":
            return self._ok(ctx, self._discover()), None
        return error_body(
            ctx.request_id, METHOD_NOT_FOUND, f"Method not found: {method!r} is not supported by this gateway"
        ), None

    def _ok(self, ctx: RequestContext, result: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": ctx.request_id, "result": shape_result(result, ctx.version)}

    # ------------------------------------------------------------------ lifecycle

    def initialize(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ctx.version = negotiate_handshake(params.get("protocolVersion"))
        return self._ok(
            ctx,
            {
                "protocolVersion": ctx.version,
                "capabilities": _capabilities(),
                "serverInfo": SERVER_INFO,
                "instructions": _INSTRUCTIONS,
            },
        )

    def _discover(self) -> dict[str, Any]:
        return {
            "supportedVersions": list(MODERN_PROTOCOL_VERSIONS),
            "capabilities": _capabilities(),
            "instructions": _INSTRUCTIONS,
            "cacheScope": "private",
            "ttlMs": 0,
        }

    @staticmethod
    def supported_versions() -> list[str]:
        return list(KNOWN_PROTOCOL_VERSIONS)

    # ------------------------------------------------------------------ tools

    async def tools_list(self, ctx: RequestContext) -> dict[str, Any]:
        key_id = ctx.caller.key_id
        stamp = (self.catalog.revision, self.keys.revision(key_id))
        cached = self._list_cache.get(key_id)
        if cached is None or cached[0] != stamp:
            entries = self.catalog.entries
            allowed = await self.gateway.visible(ctx.caller, self.catalog.pairs) if entries else []
            if isinstance(allowed, GatewayError):
                return gateway_error_body(ctx.request_id, allowed)
            fragment = orjson.Fragment(orjson.dumps([entries[i].fragment for i in allowed]))
            # the catalog may have changed while policy answered: only cache what matches the stamp
            if entries is self.catalog.entries:
                self._list_cache[key_id] = (stamp, fragment)
            cached = (stamp, fragment)
        result: dict[str, Any] = {"tools": cached[1]}
        if ctx.version in MODERN_PROTOCOL_VERSIONS:
            result |= {"cacheScope": "private", "ttlMs": 0}
        return self._ok(ctx, result)

    async def tools_call(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[dict[str, Any], AuditEvent | None]:
        name, arguments = params.get("name"), params.get("arguments")
        if not isinstance(name, str) or not name:
            return error_body(ctx.request_id, INVALID_PARAMS, "tools/call needs 'params.name', the tool's name (a string)"), None
        if arguments is None:
            arguments = {}
        elif not isinstance(arguments, dict):
            return error_body(ctx.request_id, INVALID_PARAMS, "'params.arguments' must be an object"), None
        entry = self.catalog.by_name.get(name)
        if entry is None:
            error = GatewayError(
                kind=ErrorKind.UNKNOWN_TOOL,
                message=f"Unknown tool: {name!r}. Call tools/list to see the tools this key may use.",
            )
            return gateway_error_body(ctx.request_id, error, tool=name), self._audit(ctx, name, None, None, error)
        meta = params.get("_meta")
        if isinstance(meta, dict):
            meta = {k: v for k, v in meta.items() if k not in ENVELOPE_META_KEYS} or None
        call = ToolCall(
            trace_id=ctx.trace_id,
            caller=ctx.caller,
            server=entry.server,
            tool=entry.tool,
            name=name,
            arguments=arguments,
            meta=meta if isinstance(meta, dict) else None,
            timeout=self.call_timeout,
        )
        outcome = await self.gateway.call(call)
        audit = self._audit(ctx, name, entry.server, entry.tool, outcome.error, outcome.result, outcome.upstream_ms)
        if outcome.error is not None:
            return gateway_error_body(ctx.request_id, outcome.error, tool=name, server=entry.server), audit
        return self._ok(ctx, outcome.result or {"content": []}), audit

    def _audit(
        self,
        ctx: RequestContext,
        name: str,
        server: str | None,
        tool: str | None,
        error: GatewayError | None,
        result: dict[str, Any] | None = None,
        upstream_ms: float | None = None,
    ) -> AuditEvent:
        if error is not None:
            status = "denied" if error.kind in _DENIED else "error"
            code = error.code if error.code is not None else JSONRPC_CODE[error.kind]
        else:
            status = "tool_error" if result and result.get("isError") else "ok"
            code = None
        return AuditEvent(
            trace_id=ctx.trace_id,
            key_id=ctx.caller.key_id,
            key_name=ctx.caller.key_name,
            server=server or "",
            tool=tool or "",
            name=name,
            status=status,
            error_kind=error.kind.value if error else None,
            error_code=code,
            error=error.message if error else None,
            latency_ms=(time.perf_counter() - ctx.started) * 1000,
            upstream_ms=upstream_ms,
            request_bytes=ctx.request_bytes,
        )
