"""MCP methods as Bastion answers them: from memory where it can, over NATS where it must.

One table names the handler of each method (`_METHODS`; Code Mode's meta-tools are routed before
it). Each handler returns the JSON-RPC response body and, for an audited method (`AUDITED`), the
audit event the request owes, which the `/mcp` pipeline emits once the answer is sent. What goes
upstream is sent by the `RoutedSender` the handlers hold. Only ingress turns `GatewayError`s into
JSON-RPC errors (see `protocol.gateway_error_body`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from libs.common.audit.audit_content import to_json
from libs.common.audit.audit_journal import AuditJournal
from libs.common.bus.kvwatch import BucketWatch
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import AuditEvent, CallOutcome, GatewayError, ToolCall
from libs.common.runtime import metrics
from services.ingress.audit_events import AuditRecorder, Ending, failure, metrics_outcome
from services.ingress.auth.keys import KeyDirectory
from services.ingress.catalog.aggregated import Catalog, CatalogEntry, Listing
from services.ingress.catalog.tool_lists import ListCache, answer_holds
from services.ingress.context import RequestContext
from services.ingress.lifecycle import discovery, initialize_result
from services.ingress.modes.codemode import CodeModeRouter
from services.ingress.modes.discovery import DiscoveryRouter
from services.ingress.protocol import (
    RawJson,
    error_body,
    gateway_error_body,
    negotiate_handshake,
    ok_body,
    tool_error_result,
)
from services.ingress.sending.down_servers import down_names, unavailable_call, with_down_servers
from services.ingress.sending.request_path import RequestPath
from services.ingress.sending.routed_sender import RoutedSender, call_extra, forwarded_meta
from services.ingress.sessions.session_state import SessionState
from services.ingress.sessions.streams import LOG_LEVELS
from services.ingress.tasks.task_router import TaskRouter

__all__ = ["Handlers", "RequestContext", "upstream_answer"]

log = logging.getLogger(__name__)

_RESOURCE_NOT_FOUND = -32002
"""The MCP spec's code for a resource that does not exist."""


class Handlers:
    def __init__(
        self,
        catalog: Catalog,
        keys: KeyDirectory,
        path: RequestPath,
        sender: RoutedSender,
        audits: AuditRecorder,
        state: SessionState | None = None,
        code_mode: CodeModeRouter | None = None,
        discovery: DiscoveryRouter | None = None,
        policy_inputs: list[BucketWatch] | None = None,
        tasks: TaskRouter | None = None,
    ) -> None:
        self.catalog, self.keys = catalog, keys
        self.gateway = path
        """The request path over NATS: policy's answers for lists (the `/v1` side sends on it too)."""
        self.sender = sender
        self.audits = audits
        self.state = state or SessionState()
        self.code_mode = code_mode
        self.discovery = discovery
        self.tasks = tasks
        self.policy_revision = 0
        """Bumped on every change of a tool group, user, team or customer."""
        self.policy_inputs = policy_inputs or []
        """The watches of the buckets policy decides `tools/list` from (keys, policy), whose
        revisions say whether its answer is as new as this replica's view (`tools_list`)."""
        self._list_cache = ListCache()

    @property
    def audits_owed(self) -> int:
        return self.audits.owed

    @property
    def journal(self) -> AuditJournal | None:
        return self.audits.journal

    def policy_changed(self, *_: Any) -> None:
        self.policy_revision += 1

    async def dispatch(self, ctx: RequestContext, method: str, params: Any) -> tuple[dict[str, Any], AuditEvent | None]:
        """The response body and, for an audited method, its audit event, whatever happens inside:
        a failure of ours becomes an internal error with an event that says so. Never raises,
        except `CancelledError` (see `interrupted`)."""
        started = time.perf_counter()
        audited = self.audits.begin(ctx, method, params)
        try:
            payload, audit = await self._dispatch(ctx, method, params)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug of ours: the agent gets a JSON-RPC error, the log the trace, the audit a row
            log.exception("internal error while handling %s", method)
            error = failure(ctx, "internal gateway error; see the ingress log")
            metrics.observe("ingress", method, error.kind, time.perf_counter() - started)
            return gateway_error_body(ctx.request_id, error), self.audits.interrupted(ctx, method, params, error)
        if audited and audit is None:  # refused before it was routed (malformed params): audited all the same
            refused = payload.get("error") or {}
            error = GatewayError(kind=ErrorKind.INVALID_ARGUMENTS, message=str(refused.get("message", "")))
            audit = self.audits.interrupted(ctx, method, params, error)
        metrics.observe("ingress", method, metrics_outcome(payload, audit), time.perf_counter() - started)
        return payload, audit

    def interrupted(self, ctx: RequestContext, method: str, params: Any) -> AuditEvent | None:
        """The audit event of a request whose handler was cancelled, or None when `method` is not audited."""
        return self.audits.interrupted(ctx, method, params)

    async def _dispatch(
        self, ctx: RequestContext, method: str, params: Any
    ) -> tuple[dict[str, Any], AuditEvent | None]:
        if params is not None and not isinstance(params, dict):
            return error_body(ctx.request_id, INVALID_PARAMS, "'params' must be an object"), None
        params = params or {}
        if self.code_mode is not None and (routed := await self.code_mode.dispatch(ctx, method, params)):
            return routed
        if self.discovery is not None and (
            routed := await self.discovery.dispatch(ctx, method, params, self.tools_list)
        ):
            return routed
        if self.tasks is not None and (routed := await self.tasks.dispatch(ctx, method, params, self)):
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
        result = with_down_servers(result, down_names(self.catalog, ctx.include_servers))
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
        # a held-back tool goes the whole way: policy applies the key's grants, the executor refuses it
        entry = self.catalog.by_name.get(name) or self.catalog.withheld_by_name.get(name)
        if entry is None and (down := await unavailable_call(self.catalog, self.gateway, ctx, name)) is not None:
            audit = self.audits.record(ctx, "tool_call", name, down.server, down.tool, Ending(down.error))
            return gateway_error_body(ctx.request_id, down.error, tool=name, server=down.server), audit
        if entry is None:
            return self._unknown(ctx, "tool", "tool_call", name)
        meta = forwarded_meta(params)
        extra = call_extra(params)
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
            timeout=self.sender.timeout(ctx),
            client=list(ctx.client),
            version=ctx.version,
        )
        # the journal's R record and the event digest (and may record) the arguments: encoded once for both
        encoded = to_json(arguments).encode("utf-8", "surrogatepass")
        if self.journal is not None and ctx.audit_id:  # a crash from here on: an event naming the target
            self.journal.routed(ctx.audit_id, entry.server, entry.tool, encoded)
        outcome = await self.sender.call(ctx, call)
        audit = self.audits.record(
            ctx,
            "tool_call",
            name,
            entry.server,
            entry.tool,
            Ending(
                outcome.error,
                outcome.is_error,
                outcome.upstream_ms,
                outcome.execution,
                outcome.cost_usd,
                outcome.interceptions,
                outcome.policy_id,
                outcome.approval_id,
                outcome.approval_run,
            ),
            # an approved run records what ran (the approved arguments), not what collected it
            arguments=encoded if outcome.ran_arguments is None else outcome.ran_arguments,
            result=outcome.raw_result,
        )
        if outcome.error is not None:
            if (as_result := tool_error_result(outcome.error, ctx.version)) is not None:
                return ok_body(ctx.request_id, ctx.version, as_result), audit
            return gateway_error_body(ctx.request_id, outcome.error, tool=name, server=entry.server), audit
        return upstream_answer(ctx, outcome, {"content": []}), audit

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

    async def prompts_get(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> tuple[dict[str, Any], AuditEvent | None]:
        name = params.get("name")
        if not isinstance(name, str) or not name:
            return error_body(
                ctx.request_id, INVALID_PARAMS, "prompts/get needs 'params.name', the prompt's name"
            ), None
        # a held-back prompt goes the whole way, as a held-back tool does: the executor says why
        entry = self.catalog.prompt_by_name.get(name) or self.catalog.withheld_prompt_by_name.get(name)
        if entry is None:
            return self._unknown(ctx, "prompt", "prompt_get", name)
        return await self._route(ctx, "prompts/get", entry, {**params, "name": entry.tool}, "prompt_get")

    def _unknown(self, ctx: RequestContext, what: str, kind: str, name: str) -> tuple[dict[str, Any], AuditEvent]:
        """The answer and `kind` audit event of a `what` (tool, prompt) that is not this key's to use."""
        error = GatewayError(
            kind=ErrorKind.UNKNOWN_TOOL,
            message=f"Unknown {what}: {name!r}. Call {what}s/list to see the {what}s this key may use.",
        )
        audit = self.audits.record(ctx, kind, name, None, None, Ending(error))
        return gateway_error_body(ctx.request_id, error, **{what: name}), audit

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
            return body, self.audits.record(ctx, kind, uri, None, None, Ending(error))
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
        if self.journal is not None and ctx.audit_id:  # a crash from here on: an event naming the target
            self.journal.routed(ctx.audit_id, entry.server, entry.tool)
        outcome = await self.sender.request(ctx, method, entry, params, target)
        ending = Ending(  # uncharged
            outcome.error, outcome.is_error, outcome.upstream_ms, outcome.execution, interceptions=outcome.interceptions
        )
        audit = self.audits.record(ctx, kind, name or entry.name, entry.server, entry.tool, ending)
        if outcome.error is not None:
            return gateway_error_body(ctx.request_id, outcome.error, server=entry.server), audit
        return upstream_answer(ctx, outcome, {}), audit

    async def set_level(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Per session: the level filters the log notifications Bastion forwards to this agent (upstream
        sessions are shared, so an agent's level is applied here, not sent upstream)."""
        level = params.get("level")
        if level not in LOG_LEVELS:
            return error_body(ctx.request_id, INVALID_PARAMS, f"'level' must be one of {', '.join(LOG_LEVELS)}")
        if ctx.session is not None:
            await self.state.set_level(ctx.session, level)
        return ok_body(ctx.request_id, ctx.version, {})


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


def upstream_answer(ctx: RequestContext, outcome: CallOutcome, empty: dict[str, Any]) -> dict[str, Any]:
    """The answer carrying an upstream's result: the executor shaped and encoded it for this
    agent's revision (`version` of the request), so its bytes go in untouched."""
    if outcome.raw_result is not None:
        return {"jsonrpc": "2.0", "id": ctx.request_id, "result": RawJson(outcome.raw_result)}
    return ok_body(ctx.request_id, ctx.version, outcome.result or empty)
