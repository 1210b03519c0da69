"""The requests ingress routes to one upstream through policy and an executor: `tools/call`'s send,
and `prompts/get`, `resources/read`, `resources/(un)subscribe`, `completion/complete` whole.

`RoutedRequests` is a part of `handlers.Handlers` (it is a base class of it): the sends, call streams
and cancellation bookkeeping every routed request shares, and the handlers of the requests other
than `tools/call`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from mcp_types import INVALID_PARAMS

from libs.common.audit_content import content_fields
from libs.common.audit_journal import AuditJournal
from libs.common.errors import ErrorKind
from libs.common.messages import (
    AuditEvent,
    CallOutcome,
    Execution,
    GatewayError,
    InterceptorDecision,
    PairList,
    ToolCall,
    UpstreamRequest,
)

from .audit_events import Ending, audit_event
from .catalog import Catalog, CatalogEntry
from .context import RequestContext
from .gateway import Gateway
from .protocol import ENVELOPE_META_KEYS, RawJson, error_body, gateway_error_body, ok_body
from .session_state import SessionState
from .streams import CallStreams

__all__ = ["RoutedRequests", "forwarded_meta"]

_RESOURCE_NOT_FOUND = -32002
"""The MCP spec's code for a resource that does not exist."""
_Routed = TypeVar("_Routed", ToolCall, UpstreamRequest)


class RoutedRequests:
    """Needs what `Handlers` holds (declared here)."""

    catalog: Catalog
    gateway: Gateway
    streams: CallStreams | None
    state: SessionState
    call_timeout: float
    running: dict[tuple[str, str, Any], str]
    audits_owed: int
    audit_content: bool
    audit_limit: int | None
    journal: AuditJournal | None

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
        interceptions: list[InterceptorDecision] | None = None,
    ) -> AuditEvent:
        """The request's audit event (`audit_events.audit_event`), its content recorded as the
        deployment and the key say."""
        content = content_fields(
            arguments, result, keep=self.audit_content and ctx.caller.content_logging, limit=self.audit_limit
        )
        outcome = Ending(error, tool_error, upstream_ms, execution, cost_usd, interceptions)
        return audit_event(ctx, kind, name, server, tool, outcome, content)

    def _answer(self, ctx: RequestContext, outcome: CallOutcome, empty: dict[str, Any]) -> dict[str, Any]:
        """The answer carrying an upstream's result: the executor shaped and encoded it for this
        agent's revision (`version` of the request), so its bytes go in untouched."""
        if outcome.raw_result is not None:
            return {"jsonrpc": "2.0", "id": ctx.request_id, "result": RawJson(outcome.raw_result)}
        return ok_body(ctx.request_id, ctx.version, outcome.result or empty)

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
        answer = await self.gateway.visible(
            ctx.caller, PairList.of([(e.server, f"resource:{u}") for u, e in owners]), ctx.include_servers, None
        )
        if answer.error is not None:
            return [], []
        held, audits = [], []
        for uri, entry in (owners[i] for i in answer.allowed):
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
        meta = forwarded_meta(params)
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
        if self.journal is not None and ctx.audit_id:  # a crash from here on: an event naming the target
            self.journal.routed(ctx.audit_id, entry.server, entry.tool)
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
            interceptions=outcome.interceptions,
        )
        if outcome.error is not None:
            return gateway_error_body(ctx.request_id, outcome.error, server=entry.server), audit
        return self._answer(ctx, outcome, {}), audit

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


def forwarded_meta(params: dict[str, Any]) -> dict[str, Any] | None:
    """The request's `_meta` minus the 2026-07-28 envelope (which describes the agent's hop only)."""
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        return None
    return {k: v for k, v in meta.items() if k not in ENVELOPE_META_KEYS} or None
