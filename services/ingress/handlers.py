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
_DENIED = (ErrorKind.FORBIDDEN, ErrorKind.KEY_REVOKED, ErrorKind.RATE_LIMITED, ErrorKind.BUDGET_EXCEEDED)


@dataclass(slots=True)
class RequestContext:
    caller: Caller
    version: str
    request_id: Any
    started: float = field(default_factory=time.perf_counter)
    request_bytes: int = 0
    trace_id: str | None = None
    include_servers: tuple[str, ...] | None = None
    """`X-Bastion-Include-Servers`, parsed: the request narrows what its key may use."""
    include_tools: tuple[str, ...] | None = None
    timeout: float | None = None
    """`X-Bastion-Timeout` in seconds: an agent may ask for less than the gateway allows, never more."""


def _capabilities() -> dict[str, Any]:
    return {"tools": {"listChanged": False}}


_LIST_TTL = 0.5
"""Seconds a key's cached `tools/list` answer may be reused. Changes also invalidate it at once when
ingress sees them; the TTL bounds the window in which policy may not have seen them yet."""


class Handlers:
    def __init__(self, catalog: Catalog, keys: KeyDirectory, gateway: Gateway, call_timeout: float) -> None:
        self.catalog, self.keys, self.gateway = catalog, keys, gateway
        self.call_timeout = call_timeout
        self.policy_revision = 0
        """Bumped on every change of a tool group, user, team or customer."""
        self._list_cache: dict[tuple[Any, ...], tuple[tuple[int, ...], float, orjson.Fragment]] = {}

    def policy_changed(self, *_: Any) -> None:
        self.policy_revision += 1

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
        cache_key = (key_id, ctx.include_servers, ctx.include_tools)
        stamp = (self.catalog.revision, self.keys.revision(key_id), self.policy_revision)
        now = time.monotonic()
        cached = self._list_cache.get(cache_key)
        if cached is None or cached[0] != stamp or now - cached[1] > _LIST_TTL:
            entries = self.catalog.entries
            allowed = (
                await self.gateway.visible(ctx.caller, self.catalog.pairs, ctx.include_servers, ctx.include_tools)
                if entries
                else []
            )
            if isinstance(allowed, GatewayError):
                return gateway_error_body(ctx.request_id, allowed)
            fragment = orjson.Fragment(orjson.dumps([entries[i].fragment for i in allowed]))
            cached = (stamp, now, fragment)
            if entries is self.catalog.entries:  # the catalog may have changed while policy answered
                if len(self._list_cache) > 10_000:
                    self._list_cache.clear()
                self._list_cache[cache_key] = cached
        result: dict[str, Any] = {"tools": cached[2]}
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
            include_servers=list(ctx.include_servers) if ctx.include_servers is not None else None,
            include_tools=list(ctx.include_tools) if ctx.include_tools is not None else None,
            timeout=min(ctx.timeout, self.call_timeout) if ctx.timeout else self.call_timeout,
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
