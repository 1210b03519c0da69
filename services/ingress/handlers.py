"""MCP methods as Bastion answers them: from memory where it can, over NATS where it must.

Each handler returns the JSON-RPC response body. `tools/call` also returns the audit event the
endpoint emits once it knows the response size. Only ingress turns `GatewayError`s into
JSON-RPC errors (see `protocol.gateway_error_body`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from cachetools import LRUCache
from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND
from mcp_types.version import KNOWN_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from bastion_common import metrics
from bastion_common.audit_content import content_fields
from bastion_common.audit_journal import AuditJournal
from bastion_common.errors import JSONRPC_CODE, ErrorKind
from bastion_common.messages import (
    AuditEvent,
    Caller,
    CallOutcome,
    CancelCall,
    Execution,
    GatewayError,
    ToolCall,
    UpstreamRequest,
    new_id,
)

from .catalog import Catalog, CatalogEntry, Listing
from .codemode import CodeModeRouter
from .gateway import Gateway
from .keys import KeyDirectory
from .protocol import (
    ENVELOPE_META_KEYS,
    SERVER_INFO,
    RawJson,
    error_body,
    gateway_error_body,
    negotiate_handshake,
    shape_result,
    tool_error_result,
)
from .session_state import SessionState
from .streams import LOG_LEVELS, CallStreams, Emit

__all__ = ["Handlers", "RequestContext"]

log = logging.getLogger(__name__)

_INSTRUCTIONS = (
    "Tools and prompts from every upstream MCP server behind this Bastion gateway, namespaced as "
    "<server>__<name>, and their resources under their own URIs. You see only what your key is allowed to use."
)
_RESOURCE_NOT_FOUND = -32002
"""The MCP spec's code for a resource that does not exist."""
_Routed = TypeVar("_Routed", ToolCall, UpstreamRequest)
_AUDITED = {
    "tools/call": "tool_call",
    "prompts/get": "prompt_get",
    "resources/read": "resource_read",
    "resources/subscribe": "resource_subscribe",
    "resources/unsubscribe": "resource_subscribe",
    "completion/complete": "completion",
}
"""Methods whose every request that reaches its handler ends in exactly one audit event, and its kind."""
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
    session: str | None = None
    """`session_key` of the agent's `Mcp-Session-Id` (handshake era), for state kept across requests."""
    client: tuple[str, ...] = ()
    """What the agent can be asked for mid-call: "sampling", "elicitation", "roots" (its capabilities)."""
    emit: Emit | None = None
    """Sends one JSON-RPC message on this request's SSE response; None when the agent accepts only JSON."""
    call_id: str | None = None
    """Id of the call or routed request this request became, once sent (cancellation needs it)."""
    code_mode: str | None = None
    """`X-Bastion-Code-Mode` as sent (`on` / `off`): overrides the key's Code Mode setting."""
    audit_id: str | None = None
    """Event id of the audit event this request owes, when the journal assigned it in advance."""


def _capabilities(version: str) -> dict[str, Any]:
    """Everything Bastion proxies, whatever servers are connected right now (lists may be empty).
    2026-07-28 dropped `logging`; its change notifications and resource updates travel on
    `subscriptions/listen` streams."""
    if version in MODERN_PROTOCOL_VERSIONS:
        return {
            "tools": {"listChanged": True},
            "prompts": {"listChanged": True},
            "resources": {"subscribe": True, "listChanged": True},
            "completions": {},
        }
    return {
        "tools": {"listChanged": True},
        "prompts": {"listChanged": True},
        "resources": {"subscribe": True, "listChanged": True},
        "completions": {},
        "logging": {},
    }


_LIST_TTL = 0.5
"""Seconds a key's cached `tools/list` answer may be reused. Changes also invalidate it at once when
ingress sees them; the TTL bounds the window in which policy may not have seen them yet."""
_LIST_CACHE_BYTES = 64 * 1024 * 1024
"""Bytes of cached `tools/list` answers kept at once, least recently used dropped first: the cache is
keyed by key and narrowing headers, which agents choose."""

_ListEntry = tuple[tuple[int, ...], float, orjson.Fragment, int]
"""(revisions it was computed at, when, the tools array, its size in bytes)"""


class Handlers:
    def __init__(
        self,
        catalog: Catalog,
        keys: KeyDirectory,
        gateway: Gateway,
        call_timeout: float,
        streams: CallStreams | None = None,
        state: SessionState | None = None,
        code_mode: CodeModeRouter | None = None,
        journal: AuditJournal | None = None,
        *,
        audit_content: bool = True,
        audit_limit: int | None = None,
    ) -> None:
        self.catalog, self.keys, self.gateway = catalog, keys, gateway
        self.audit_content = audit_content
        """Deployment switch: False keeps only sizes and sha256 of arguments and results."""
        self.audit_limit = audit_limit
        """UTF-8 bytes of arguments and results an event records at most (the publisher's content
        limit): cut before they are decoded, so a large result costs its digest, not its size again."""
        self.code_mode = code_mode
        self.journal = journal
        """Where a request that owes an event is written down before it is forwarded (`dispatch`)."""
        self.call_timeout = call_timeout
        self.streams = streams
        self.state = state or SessionState()
        self.running: dict[tuple[str, str, Any], str] = {}
        """(key id, session, JSON-RPC id) -> id of the call this replica is running for it, so an
        agent's `notifications/cancelled` finds it. Only session requests: without a session, two
        agents sharing a key may use the same JSON-RPC id."""
        if code_mode is not None:
            code_mode.running = self.running
        self.policy_revision = 0
        """Bumped on every change of a tool group, user, team or customer."""
        self.audits_owed = 0
        """Audit events this replica owes: one per request that reached an audited handler, one per
        upstream (un)subscribe made for a `subscriptions/listen` stream. Each is emitted exactly once."""
        self._list_cache: LRUCache[tuple[Any, ...], _ListEntry] = LRUCache(
            maxsize=_LIST_CACHE_BYTES, getsizeof=lambda entry: entry[3] + 256
        )

    def policy_changed(self, *_: Any) -> None:
        self.policy_revision += 1

    async def dispatch(self, ctx: RequestContext, method: str, params: Any) -> tuple[dict[str, Any], AuditEvent | None]:
        """The response body and, for an audited method, its audit event, whatever happens inside:
        a failure of ours becomes an internal error with an event that says so. Never raises,
        except `CancelledError` (see `interrupted`)."""
        started = time.perf_counter()
        audited = method in _AUDITED
        if audited:
            self.audits_owed += 1
            if self.journal is not None:  # a replica killed from here on still owes its event
                ctx.audit_id = self.journal.begun(
                    _AUDITED[method],
                    _audit_name(params),
                    ctx.caller.key_id,
                    ctx.caller.key_name,
                    ctx.trace_id,
                    ctx.request_bytes,
                )
        try:
            payload, audit = await self._dispatch(ctx, method, params)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug of ours: the agent gets a JSON-RPC error, the log the trace, the audit a row
            log.exception("internal error while handling %s", method)
            error = self._failure(ctx, "internal gateway error; see the ingress log")
            metrics.observe("ingress", method, error.kind, time.perf_counter() - started)
            return gateway_error_body(ctx.request_id, error), self.interrupted(ctx, method, params, error)
        if audited and audit is None:  # refused before it was routed (malformed params): audited all the same
            refused = payload.get("error") or {}
            error = GatewayError(kind=ErrorKind.INVALID_ARGUMENTS, message=str(refused.get("message", "")))
            audit = self.interrupted(ctx, method, params, error)
        metrics.observe("ingress", method, _outcome(payload, audit), time.perf_counter() - started)
        return payload, audit

    def interrupted(
        self, ctx: RequestContext, method: str, params: Any, error: GatewayError | None = None
    ) -> AuditEvent | None:
        """The audit event of a request whose handler did not finish (it failed, or was cancelled),
        or None when `method` is not audited."""
        kind = _AUDITED.get(method)
        if kind is None:
            return None
        error = error or self._failure(ctx, "the gateway stopped handling this request (shutting down?)")
        return self._audit(ctx, _audit_name(params), None, None, error, kind=kind)

    @staticmethod
    def _failure(ctx: RequestContext, what: str) -> GatewayError:
        if ctx.call_id is not None:
            what += "; it had been sent upstream and may have run"
        return GatewayError(kind=ErrorKind.INTERNAL, message=what)

    async def _dispatch(
        self, ctx: RequestContext, method: str, params: Any
    ) -> tuple[dict[str, Any], AuditEvent | None]:
        if params is not None and not isinstance(params, dict):
            return error_body(ctx.request_id, INVALID_PARAMS, "'params' must be an object"), None
        params = params or {}
        if self.code_mode is not None and (routed := await self.code_mode.dispatch(ctx, method, params)):
            return routed
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
        if method == "prompts/list":
            return await self._list(ctx, "prompts", self.catalog.prompts), None
        if method == "resources/list":
            return await self._list(ctx, "resources", self.catalog.resources), None
        if method == "resources/templates/list":
            return await self._list(ctx, "resourceTemplates", self.catalog.templates), None
        if method == "prompts/get":
            return await self.prompts_get(ctx, params)
        if method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
            return await self.resources_request(ctx, method, params)
        if method == "completion/complete":
            return await self.complete(ctx, params)
        if method == "logging/setLevel":
            return await self.set_level(ctx, params), None
        return error_body(
            ctx.request_id, METHOD_NOT_FOUND, f"Method not found: {method!r} is not supported by this gateway"
        ), None

    def _ok(self, ctx: RequestContext, result: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": ctx.request_id, "result": shape_result(result, ctx.version)}

    def _answer(self, ctx: RequestContext, outcome: CallOutcome, empty: dict[str, Any]) -> dict[str, Any]:
        """The answer carrying an upstream's result: the executor shaped and encoded it for this
        agent's revision (`version` of the request), so its bytes go in untouched."""
        if outcome.raw_result is not None:
            return {"jsonrpc": "2.0", "id": ctx.request_id, "result": RawJson(outcome.raw_result)}
        return self._ok(ctx, outcome.result or empty)

    # ------------------------------------------------------------------ lifecycle

    def initialize(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ctx.version = negotiate_handshake(params.get("protocolVersion"))
        return self._ok(
            ctx,
            {
                "protocolVersion": ctx.version,
                "capabilities": _capabilities(ctx.version),
                "serverInfo": SERVER_INFO,
                "instructions": _INSTRUCTIONS,
            },
        )

    def _discover(self) -> dict[str, Any]:
        return {
            "supportedVersions": list(MODERN_PROTOCOL_VERSIONS),
            "capabilities": _capabilities(MODERN_PROTOCOL_VERSIONS[-1]),
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
            tools = self.catalog.tools
            allowed = (
                await self.gateway.visible(ctx.caller, tools.pairs, ctx.include_servers, ctx.include_tools)
                if tools.entries
                else []
            )
            if isinstance(allowed, GatewayError):
                return gateway_error_body(ctx.request_id, allowed)
            encoded = orjson.dumps([tools.entries[i].fragment for i in allowed])
            cached = (stamp, now, orjson.Fragment(encoded), len(encoded))
            # the catalog may have changed while policy answered; one answer never fills the cache
            if tools is self.catalog.tools and len(encoded) < _LIST_CACHE_BYTES // 4:
                self._list_cache[cache_key] = cached
        result: dict[str, Any] = {"tools": cached[2]}
        if ctx.version in MODERN_PROTOCOL_VERSIONS:
            result |= {"cacheScope": "private", "ttlMs": 0}
        return self._ok(ctx, result)

    async def tools_call(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[dict[str, Any], AuditEvent | None]:
        name, arguments = params.get("name"), params.get("arguments")
        if not isinstance(name, str) or not name:
            return error_body(
                ctx.request_id, INVALID_PARAMS, "tools/call needs 'params.name', the tool's name (a string)"
            ), None
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
        meta = _forwarded_meta(params)
        extra = {k: v for k, v in params.items() if k not in ("name", "arguments", "_meta")} or None
        call = ToolCall(
            trace_id=ctx.trace_id,
            caller=ctx.caller,
            server=entry.server,
            tool=entry.tool,
            name=name,
            arguments=arguments,
            meta=meta,
            extra=extra,
            include_servers=list(ctx.include_servers) if ctx.include_servers is not None else None,
            include_tools=list(ctx.include_tools) if ctx.include_tools is not None else None,
            timeout=self._timeout(ctx),
            client=list(ctx.client),
            version=ctx.version,
        )
        outcome = await self._streamed(ctx, call, self.gateway.call)
        audit = self._audit(
            ctx,
            name,
            entry.server,
            entry.tool,
            outcome.error,
            outcome.is_error,
            outcome.upstream_ms,
            outcome.execution,
            arguments=arguments,
            result=outcome.raw_result,
            cost_usd=outcome.cost_usd,
        )
        if outcome.error is not None:
            if (as_result := tool_error_result(outcome.error, ctx.version)) is not None:
                return self._ok(ctx, as_result), audit
            return gateway_error_body(ctx.request_id, outcome.error, tool=name, server=entry.server), audit
        return self._answer(ctx, outcome, {"content": []}), audit

    # ------------------------------------------------------------------ prompts, resources, completion

    async def _list(self, ctx: RequestContext, field_name: str, listing: Listing) -> dict[str, Any]:
        """A prompts / resources / templates list: what the key may use, from memory."""
        cache = {"cacheScope": "private", "ttlMs": 0} if ctx.version in MODERN_PROTOCOL_VERSIONS else {}
        if not listing.entries:
            return self._ok(ctx, {field_name: [], **cache})
        allowed = await self.gateway.visible(ctx.caller, listing.pairs, ctx.include_servers, None)
        if isinstance(allowed, GatewayError):
            return gateway_error_body(ctx.request_id, allowed)
        entries = listing.entries
        return self._ok(ctx, {field_name: [entries[i].fragment for i in allowed], **cache})

    async def prompts_get(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> tuple[dict[str, Any], AuditEvent | None]:
        name = params.get("name")
        if not isinstance(name, str) or not name:
            return error_body(
                ctx.request_id, INVALID_PARAMS, "prompts/get needs 'params.name', the prompt's name"
            ), None
        entry = self.catalog.prompt_by_name.get(name)
        if entry is None:
            error = GatewayError(
                kind=ErrorKind.UNKNOWN_TOOL,
                message=f"Unknown prompt: {name!r}. Call prompts/list to see the prompts this key may use.",
            )
            return gateway_error_body(ctx.request_id, error, prompt=name), self._audit(
                ctx, name, None, None, error, kind="prompt_get"
            )
        return await self._route(ctx, "prompts/get", entry, {**params, "name": entry.tool}, "prompt_get")

    async def resources_request(
        self, ctx: RequestContext, method: str, params: dict[str, Any]
    ) -> tuple[dict[str, Any], AuditEvent | None]:
        uri = params.get("uri")
        if not isinstance(uri, str) or not uri:
            return error_body(ctx.request_id, INVALID_PARAMS, f"{method} needs 'params.uri', the resource's URI"), None
        entry = self.catalog.resource_owner(uri)
        kind = "resource_read" if method == "resources/read" else "resource_subscribe"
        if entry is None:
            error = GatewayError(
                kind=ErrorKind.UNKNOWN_TOOL, message=f"Resource not found: {uri!r}", code=_RESOURCE_NOT_FOUND
            )
            body = error_body(ctx.request_id, _RESOURCE_NOT_FOUND, error.message, {"uri": uri})
            return body, self._audit(ctx, uri, None, None, error, kind=kind)
        payload, audit = await self._route(ctx, method, entry, params, kind, name=uri, target=f"resource:{uri}")
        if "result" in payload and ctx.session is not None and method != "resources/read":
            change = self.state.subscribe if method == "resources/subscribe" else self.state.unsubscribe
            await change(ctx.session, entry.server, uri)
        return payload, audit

    async def complete(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[dict[str, Any], AuditEvent | None]:
        ref = params.get("ref")
        entry: CatalogEntry | None = None
        if isinstance(ref, dict) and ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
            entry = self.catalog.prompt_by_name.get(ref["name"])
            params = {**params, "ref": {**ref, "name": entry.tool}} if entry else params
        elif isinstance(ref, dict) and ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
            entry = self.catalog.template_owner(ref["uri"]) or self.catalog.resource_owner(ref["uri"])
        else:
            return error_body(
                ctx.request_id,
                INVALID_PARAMS,
                "completion/complete needs 'params.ref': a ref/prompt with a name or a ref/resource with a uri",
            ), None
        if entry is None:
            return error_body(
                ctx.request_id, INVALID_PARAMS, f"nothing to complete for {ref!r}: unknown prompt or resource"
            ), None
        return await self._route(ctx, "completion/complete", entry, params, "completion")

    async def hold_subscriptions(
        self, ctx: RequestContext, uris: list[str]
    ) -> tuple[list[tuple[str, str]], list[AuditEvent]]:
        """Subscribe upstream, on behalf of one `subscriptions/listen` stream (`ctx.session`), to
        the resources the key may read: the (server, uri) pairs that took, and the audit event of
        each subscription tried."""
        owners = [(uri, entry) for uri in dict.fromkeys(uris) if (entry := self.catalog.resource_owner(uri))]
        if not owners:
            return [], []
        allowed = await self.gateway.visible(
            ctx.caller, [(e.server, f"resource:{u}") for u, e in owners], ctx.include_servers, None
        )
        if isinstance(allowed, GatewayError):
            return [], []
        held, audits = [], []
        for uri, entry in (owners[i] for i in allowed):
            self.audits_owed += 1
            payload, audit = await self._route(
                ctx,
                "resources/subscribe",
                entry,
                {"uri": uri},
                "resource_subscribe",
                name=uri,
                target=f"resource:{uri}",
            )
            audits.append(audit)
            if "result" in payload:
                held.append((entry.server, uri))
        return held, audits

    async def release_subscriptions(self, ctx: RequestContext, held: list[tuple[str, str]]) -> list[AuditEvent]:
        """Undo `hold_subscriptions`; the audit event of each unsubscribe."""
        audits = []
        for server, uri in held:
            entry = self.catalog.resource_owner(uri)
            if entry is not None and entry.server == server:
                self.audits_owed += 1
                _, audit = await self._route(
                    ctx,
                    "resources/unsubscribe",
                    entry,
                    {"uri": uri},
                    "resource_subscribe",
                    name=uri,
                    target=f"resource:{uri}",
                )
                audits.append(audit)
        return audits

    async def set_level(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Per session: the level filters the log notifications Bastion forwards to this agent (upstream
        sessions are shared, so an agent's level is applied here, not sent upstream)."""
        level = params.get("level")
        if level not in LOG_LEVELS:
            return error_body(ctx.request_id, INVALID_PARAMS, f"'level' must be one of {', '.join(LOG_LEVELS)}")
        if ctx.session is not None:
            await self.state.set_level(ctx.session, level)
        return self._ok(ctx, {})

    async def _route(
        self,
        ctx: RequestContext,
        method: str,
        entry: CatalogEntry,
        params: dict[str, Any],
        kind: str,
        *,
        name: str | None = None,
        target: str | None = None,
    ) -> tuple[dict[str, Any], AuditEvent]:
        meta = _forwarded_meta(params)
        forwarded = {k: v for k, v in params.items() if k != "_meta"}
        if meta:
            forwarded["_meta"] = meta
        request = UpstreamRequest(
            trace_id=ctx.trace_id,
            caller=ctx.caller,
            server=entry.server,
            method=method,
            params=forwarded,
            target=target or entry.target,
            subscriber=ctx.session,
            include_servers=list(ctx.include_servers) if ctx.include_servers is not None else None,
            timeout=self._timeout(ctx),
            client=list(ctx.client),
            version=ctx.version,
        )
        outcome = await self._streamed(ctx, request, self.gateway.request)
        label = name or entry.name
        audit = self._audit(
            ctx,
            label,
            entry.server,
            entry.tool,
            outcome.error,
            outcome.is_error,
            outcome.upstream_ms,
            outcome.execution,
            kind=kind,
        )
        if outcome.error is not None:
            return gateway_error_body(ctx.request_id, outcome.error, server=entry.server), audit
        return self._answer(ctx, outcome, {}), audit

    # ------------------------------------------------------------------ shared

    def _timeout(self, ctx: RequestContext) -> float:
        return min(ctx.timeout, self.call_timeout) if ctx.timeout else self.call_timeout

    async def _streamed(
        self, ctx: RequestContext, message: _Routed, send: Callable[[_Routed], Awaitable[CallOutcome]]
    ) -> CallOutcome:
        """Send, with a call stream open when the agent can take one (an SSE answer)."""
        ctx.call_id = message.id
        running = (ctx.caller.key_id, ctx.session, ctx.request_id) if ctx.session is not None else None
        if running is not None:
            self.running[running] = message.id
        try:
            if ctx.emit is None or self.streams is None:
                return await send(message)
            level = self.state.levels.get(ctx.session) if ctx.session else None
            stream = self.streams.open(ctx.caller.key_id, ctx.emit, level)
            message.stream = stream.subject
            message.log_level = level
            try:
                outcome = await send(message)
                if outcome.events > stream.received:
                    await stream.settle(outcome.events)
            finally:
                self.streams.close(stream)
            return outcome
        finally:
            if running is not None:
                self.running.pop(running, None)

    async def on_cancel(self, msg: Any) -> None:
        """`CALL_CANCEL` from any replica: abandon the call if this replica runs it."""
        try:
            cancel = CancelCall.model_validate_json(msg.data)
        except ValidationError:
            return
        call_id = self.running.get((cancel.key_id, cancel.session, cancel.request_id))
        if call_id is not None:
            await self.gateway.abandon(call_id)

    def _audit(
        self,
        ctx: RequestContext,
        name: str,
        server: str | None,
        tool: str | None,
        error: GatewayError | None,
        tool_error: bool = False,
        upstream_ms: float | None = None,
        execution: Execution | None = None,
        *,
        kind: str = "tool_call",
        arguments: dict[str, Any] | None = None,
        result: bytes | None = None,
        cost_usd: float | None = None,
    ) -> AuditEvent:
        """`execution` as the outcome said; without one, a result ran and an error stopped it here.
        Arguments and result are recorded (or only their sha256) as the deployment and key say."""
        if error is not None:
            status = "denied" if error.kind in _DENIED else "error"
            code = error.code if error.code is not None else JSONRPC_CODE[error.kind]
        else:
            status = "tool_error" if tool_error else "ok"
            code = None
        return AuditEvent(
            event_id=ctx.audit_id or new_id(),
            kind=kind,
            trace_id=ctx.trace_id,
            key_id=ctx.caller.key_id,
            key_name=ctx.caller.key_name,
            **ctx.caller.owner(),
            **content_fields(
                arguments, result, keep=self.audit_content and ctx.caller.content_logging, limit=self.audit_limit
            ),
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
            execution=execution or ("ran" if error is None else "not_run"),
            cost_usd=cost_usd,
        )


def _audit_name(params: Any) -> str:
    """What an audit row names for a request whose handler did not say: its name, URI or ref."""
    if not isinstance(params, dict):
        return ""
    ref = params.get("ref")
    candidates = [params.get("name"), params.get("uri")]
    if isinstance(ref, dict):
        candidates += [ref.get("name"), ref.get("uri")]
    return next((value for value in candidates if isinstance(value, str)), "")


def _forwarded_meta(params: dict[str, Any]) -> dict[str, Any] | None:
    """The request's `_meta` minus the 2026-07-28 envelope (which describes the agent's hop only)."""
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        return None
    return {k: v for k, v in meta.items() if k not in ENVELOPE_META_KEYS} or None


def _outcome(payload: dict[str, Any], audit: AuditEvent | None) -> str:
    """The `outcome` label of a request's metrics: its error kind, `tool_error`, `error`, or `ok`."""
    if audit is not None:
        return audit.error_kind or audit.status
    return "error" if "error" in payload else "ok"
