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
from typing import Any, TypeVar

from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND
from mcp_types.version import KNOWN_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from libs.common import metrics
from libs.common.audit_journal import AuditJournal
from libs.common.errors import ErrorKind
from libs.common.kvwatch import BucketWatch
from libs.common.messages import (
    AuditEvent,
    CancelCall,
    GatewayError,
    ToolCall,
    UpstreamRequest,
)

from .audit_events import AUDITED, audit_name, metrics_outcome
from .catalog import Catalog, Listing
from .codemode import CodeModeRouter
from .context import RequestContext
from .gateway import Gateway
from .keys import KeyDirectory
from .lifecycle import discovery, initialize_result
from .protocol import (
    error_body,
    gateway_error_body,
    negotiate_handshake,
    ok_body,
    tool_error_result,
)
from .routed import RoutedRequests, forwarded_meta
from .session_state import SessionState
from .streams import LOG_LEVELS, CallStreams
from .tool_lists import ListCache, answer_holds

__all__ = ["Handlers", "RequestContext"]

log = logging.getLogger(__name__)

_RESOURCE_NOT_FOUND = -32002
"""The MCP spec's code for a resource that does not exist."""
_Routed = TypeVar("_Routed", ToolCall, UpstreamRequest)


class Handlers(RoutedRequests):
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
        self.policy_inputs: list[BucketWatch] = []
        """The watches of the buckets policy decides `tools/list` from (keys, policy), whose
        revisions say whether its answer is as new as this replica's view (`tools_list`)."""
        self.audits_owed = 0
        """Audit events this replica owes: one per request that reached an audited handler, one per
        upstream (un)subscribe made for a `subscriptions/listen` stream. Each is emitted exactly once."""
        self._list_cache = ListCache()

    def policy_changed(self, *_: Any) -> None:
        self.policy_revision += 1

    async def dispatch(self, ctx: RequestContext, method: str, params: Any) -> tuple[dict[str, Any], AuditEvent | None]:
        """The response body and, for an audited method, its audit event, whatever happens inside:
        a failure of ours becomes an internal error with an event that says so. Never raises,
        except `CancelledError` (see `interrupted`)."""
        started = time.perf_counter()
        audited = method in AUDITED
        if audited:
            self.audits_owed += 1
            if self.journal is not None:  # a replica killed from here on still owes its event
                ctx.audit_id = self.journal.begun(
                    AUDITED[method],
                    audit_name(params),
                    ctx.caller.key_id,
                    ctx.caller.key_name,
                    ctx.trace_id,
                    ctx.request_bytes,
                    **ctx.caller.owner(),
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
        metrics.observe("ingress", method, metrics_outcome(payload, audit), time.perf_counter() - started)
        return payload, audit

    def interrupted(
        self, ctx: RequestContext, method: str, params: Any, error: GatewayError | None = None
    ) -> AuditEvent | None:
        """The audit event of a request whose handler did not finish (it failed, or was cancelled),
        or None when `method` is not audited."""
        kind = AUDITED.get(method)
        if kind is None:
            return None
        error = error or self._failure(ctx, "the gateway stopped handling this request (shutting down?)")
        return self._audit(ctx, audit_name(params), None, None, error, kind=kind)

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
        handler = _METHODS.get(method)
        if handler is None:
            return error_body(
                ctx.request_id, METHOD_NOT_FOUND, f"Method not found: {method!r} is not supported by this gateway"
            ), None
        return await handler(self, ctx, params)

    # ------------------------------------------------------------------ lifecycle

    def initialize(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ctx.version = negotiate_handshake(params.get("protocolVersion"))
        return ok_body(ctx.request_id, ctx.version, initialize_result(ctx.version))

    @staticmethod
    def supported_versions() -> list[str]:
        return list(KNOWN_PROTOCOL_VERSIONS)

    # ------------------------------------------------------------------ tools

    async def tools_list(self, ctx: RequestContext) -> dict[str, Any]:
        cache_key = (ctx.caller.key_id, ctx.include_servers, ctx.include_tools)
        stamp = (self.catalog.revision, self.keys.revision(ctx.caller.key_id), self.policy_revision)
        tools_json = self._list_cache.get(cache_key, stamp)
        if tools_json is None:
            tools = self.catalog.tools
            seen = {watch.bucket: watch.revision for watch in self.policy_inputs}
            answer = await self.gateway.visible(ctx.caller, tools.pairs, ctx.include_servers, ctx.include_tools)
            if answer.error is not None:
                return gateway_error_body(ctx.request_id, answer.error)
            # the catalog may have changed while policy answered: then the answer is not cached
            tools_json = self._list_cache.put(
                cache_key,
                stamp,
                answer.allowed,
                tools.entries,
                keep=tools is self.catalog.tools,
                lasting=answer_holds(seen, answer.revisions),
            )
        result: dict[str, Any] = {"tools": tools_json}
        if ctx.version in MODERN_PROTOCOL_VERSIONS:
            result |= {"cacheScope": "private", "ttlMs": 0}
        return ok_body(ctx.request_id, ctx.version, result)

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
        meta = forwarded_meta(params)
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
        if self.journal is not None and ctx.audit_id:  # a crash from here on: an event naming the target
            self.journal.routed(ctx.audit_id, entry.server, entry.tool, arguments)
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
            interceptions=outcome.interceptions,
        )
        if outcome.error is not None:
            if (as_result := tool_error_result(outcome.error, ctx.version)) is not None:
                return ok_body(ctx.request_id, ctx.version, as_result), audit
            return gateway_error_body(ctx.request_id, outcome.error, tool=name, server=entry.server), audit
        return self._answer(ctx, outcome, {"content": []}), audit

    # ------------------------------------------------------------------ prompts, resources, completion

    async def _list(self, ctx: RequestContext, field_name: str, listing: Listing) -> dict[str, Any]:
        """A prompts / resources / templates list: what the key may use, from memory."""
        cache = {"cacheScope": "private", "ttlMs": 0} if ctx.version in MODERN_PROTOCOL_VERSIONS else {}
        answer = await self.gateway.visible(ctx.caller, listing.pairs, ctx.include_servers, None)
        if answer.error is not None:
            return gateway_error_body(ctx.request_id, answer.error)
        entries = listing.entries
        listed = [entries[i].fragment for i in answer.allowed]
        return ok_body(ctx.request_id, ctx.version, {field_name: listed, **cache})

    async def set_level(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Per session: the level filters the log notifications Bastion forwards to this agent (upstream
        sessions are shared, so an agent's level is applied here, not sent upstream)."""
        level = params.get("level")
        if level not in LOG_LEVELS:
            return error_body(ctx.request_id, INVALID_PARAMS, f"'level' must be one of {', '.join(LOG_LEVELS)}")
        if ctx.session is not None:
            await self.state.set_level(ctx.session, level)
        return ok_body(ctx.request_id, ctx.version, {})

    async def on_cancel(self, msg: Any) -> None:
        """`CALL_CANCEL` from any replica: abandon the call if this replica runs it."""
        try:
            cancel = CancelCall.model_validate_json(msg.data)
        except ValidationError:
            return
        call_id = self.running.get((cancel.key_id, cancel.session, cancel.request_id))
        if call_id is not None:
            await self.gateway.abandon(call_id)


Answered = tuple[dict[str, Any], AuditEvent | None]
"""A response body and, for an audited method, its audit event."""
Handler = Callable[[Handlers, RequestContext, dict[str, Any]], Awaitable[Answered]]


def _unaudited(answer: Callable[[Handlers, RequestContext, dict[str, Any]], Awaitable[dict[str, Any]]]) -> Handler:
    async def handler(handlers: Handlers, ctx: RequestContext, params: dict[str, Any]) -> Answered:
        return await answer(handlers, ctx, params), None

    return handler


def _immediate(answer: Callable[[Handlers, RequestContext, dict[str, Any]], dict[str, Any]]) -> Handler:
    """A method answered from memory, without awaiting anything."""

    async def handler(handlers: Handlers, ctx: RequestContext, params: dict[str, Any]) -> Answered:
        return answer(handlers, ctx, params), None

    return handler


def _listed(field_name: str, listing: Callable[[Catalog], Listing]) -> Handler:
    return _unaudited(lambda h, ctx, params: h._list(ctx, field_name, listing(h.catalog)))


def _routed(method: str) -> Handler:
    return lambda h, ctx, params: h.resources_request(ctx, method, params)


_METHODS: dict[str, Handler] = {
    "tools/call": Handlers.tools_call,
    "tools/list": _unaudited(lambda h, ctx, params: h.tools_list(ctx)),
    "ping": _immediate(lambda h, ctx, params: ok_body(ctx.request_id, ctx.version, {})),
    "initialize": _immediate(Handlers.initialize),
    "server/discover": _immediate(lambda h, ctx, params: ok_body(ctx.request_id, ctx.version, discovery())),
    "prompts/list": _listed("prompts", lambda catalog: catalog.prompts),
    "resources/list": _listed("resources", lambda catalog: catalog.resources),
    "resources/templates/list": _listed("resourceTemplates", lambda catalog: catalog.templates),
    "prompts/get": Handlers.prompts_get,
    "resources/read": _routed("resources/read"),
    "resources/subscribe": _routed("resources/subscribe"),
    "resources/unsubscribe": _routed("resources/unsubscribe"),
    "completion/complete": Handlers.complete,
    "logging/setLevel": _unaudited(Handlers.set_level),
}
"""The MCP methods ingress answers (Code Mode's meta-tools are routed before these), by name."""
