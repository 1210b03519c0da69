"""MCP methods as Bastion answers them: from memory where it can, over NATS where it must.

One table names the handler of each method (`_METHODS`; Code Mode's meta-tools are routed before
it). Each handler returns the JSON-RPC response body and, for an audited method (`AUDITED`), the
audit event the request owes, which the `/mcp` pipeline emits once the answer is sent. What goes
upstream is sent by the `RoutedSender` the handlers hold (prompts, resources and completions through
`routed_answers`); resources and skills are answered by `resource_answers`. Only ingress turns `GatewayError`s into
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

from libs.common.audit.audit_content import json_bytes
from libs.common.audit.audit_journal import AuditJournal
from libs.common.bus.kvwatch import BucketWatch
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import AuditEvent, GatewayError, ToolCall
from libs.common.contracts.ui_apps import EXTENSION, HOST
from libs.common.runtime import metrics
from services.ingress.audit_events import AuditRecorder, Ending, failure, metrics_outcome
from services.ingress.auth.keys import KeyDirectory
from services.ingress.catalog.aggregated import Catalog, CatalogEntry, Listing
from services.ingress.catalog.tool_lists import ListCache, answer_holds
from services.ingress.catalog.user_views import CallerView, UserCatalogs, entry_for
from services.ingress.context import RequestContext
from services.ingress.lifecycle import discovery, initialize_result
from services.ingress.modes.codemode import CodeModeRouter
from services.ingress.modes.discovery import DiscoveryRouter
from services.ingress.protocol import (
    error_body,
    gateway_error_body,
    negotiate_handshake,
    ok_body,
    tool_error_result,
)
from services.ingress.resource_answers import ResourceAnswers
from services.ingress.routed_answers import Answered, RoutedAnswers, upstream_answer
from services.ingress.sending.down_servers import down_names, unavailable_call, with_down_servers
from services.ingress.sending.request_path import RequestPath
from services.ingress.sending.routed_sender import RoutedSender, call_extra, forwarded_meta
from services.ingress.sessions.session_state import SessionState
from services.ingress.sessions.streams import LOG_LEVELS
from services.ingress.tasks.task_router import TaskRouter
from services.ingress.url_elicitation import ELICITS_URLS, url_elicitation

__all__ = ["Handlers", "RequestContext"]

log = logging.getLogger(__name__)


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
        self._host_list_cache = ListCache()
        """The answers of hosts of MCP Apps: another listing (app-only tools included), so other arrays."""
        self.user_catalogs: UserCatalogs | None = None
        """Each caller's own listing of the `per_user` servers (`user_views`); None: the shared one."""
        self.routed = RoutedAnswers(sender, audits)
        """Prompts, resources and completions sent upstream, answered and audited."""
        self.resources = ResourceAnswers(catalog, path, audits, self.state, self.routed, self.view)
        """`resources/read`, `resources/subscribe`, `resources/unsubscribe` and `skills/get`."""

    @property
    def audits_owed(self) -> int:
        return self.audits.owed

    @property
    def journal(self) -> AuditJournal | None:
        return self.audits.journal

    def policy_changed(self, *_: Any) -> None:
        self.policy_revision += 1

    async def dispatch(self, ctx: RequestContext, method: str, params: Any) -> tuple[dict[str, Any], AuditEvent | None]:
        """The response body and, for an audited method, its audit event, whatever happens inside.

        A failure of ours becomes an internal error with an event that says so. Never raises, except
        `CancelledError` (see `interrupted`)."""
        started = time.perf_counter()
        audited = self.audits.begin(ctx, method, params)
        # who answers is decided in this frame, not in one more coroutine a request: the modes (a key with
        # neither on, in a request that switches neither, is in neither), tasks, then the method's handler
        try:
            routed: Answered | None = None
            # JSON values are of their exact types: `type(...) is` asks what `isinstance` would, without a call
            args = params if type(params) is dict else {}
            if params is not None and args is not params:
                routed = error_body(ctx.request_id, INVALID_PARAMS, "'params' must be an object"), None
            elif ctx.code_mode is not None or ctx.discovery is not None or ctx.caller.key_id in self.keys.with_modes:
                if self.code_mode is not None:
                    routed = await self.code_mode.dispatch(ctx, method, args)
                if not routed and self.discovery is not None:
                    routed = await self.discovery.dispatch(ctx, method, args, self.tools_list)
            if (
                not routed
                and self.tasks is not None
                and (task := self.tasks.route(ctx, method, args, self)) is not None
            ):
                routed = await task
            if not routed:
                handler = _METHODS.get(method)
                if handler is None:
                    text = f"Method not found: {method!r} is not supported by this gateway"
                    routed = error_body(ctx.request_id, METHOD_NOT_FOUND, text), None
                else:
                    routed = await handler(self, ctx, args)
            payload, audit = routed
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

    # ------------------------------------------------------------------ lifecycle

    def initialize(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ctx.version = negotiate_handshake(params.get("protocolVersion"))
        return ok_body(ctx.request_id, ctx.version, initialize_result(ctx.version, skills=self.serves_skills))

    @property
    def serves_skills(self) -> bool:
        """Whether there are skills to serve: only then is the Skills extension declared."""
        return bool(self.catalog.skills.entries)

    # ------------------------------------------------------------------ tools

    async def view(self, ctx: RequestContext, only: CatalogEntry | None = None) -> CallerView | None:
        """What this caller is listed where it is not the shared catalog (some server is per user).

        `only`: the shared entry a call names, whose server's listing alone is asked for (if per user)."""
        if self.user_catalogs is None:
            return None
        return await self.user_catalogs.view(ctx.caller, only.server if only is not None else None)

    async def tools_list(self, ctx: RequestContext) -> dict[str, Any]:
        host = HOST in ctx.client  # a host of MCP Apps is listed its apps' tools too, and hides them itself
        cache = self._host_list_cache if host else self._list_cache
        listed: Catalog | CallerView = await self.view(ctx) or self.catalog
        cache_key = (ctx.caller.key_id, ctx.caller.user_id, ctx.include_servers, ctx.include_tools)
        stamp = (listed.revision, self.keys.revision(ctx.caller.key_id), self.policy_revision)
        tools_json = cache.get(cache_key, stamp)
        if tools_json is None:
            tools = listed.app_tools if host else listed.tools
            seen = {watch.bucket: watch.revision for watch in self.policy_inputs}
            answer = await self.gateway.visible(ctx.caller, tools.pairs, ctx.include_servers, ctx.include_tools)
            if answer.error is not None:
                return gateway_error_body(ctx.request_id, answer.error)
            # the catalog may have changed while policy answered: then the answer is not cached
            tools_json = cache.put(
                cache_key,
                stamp,
                answer.allowed,
                tools.entries,
                keep=tools is (listed.app_tools if host else listed.tools) and stamp[0] == listed.revision,
                lasting=answer_holds(seen, answer.revisions),
            )
        result: dict[str, Any] = {"tools": tools_json}
        if ctx.version in MODERN_PROTOCOL_VERSIONS:
            result |= {"cacheScope": "private", "ttlMs": 0}
        result = with_down_servers(result, down_names(self.catalog, ctx.include_servers))
        return ok_body(ctx.request_id, ctx.version, result)

    async def tools_call(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[dict[str, Any], AuditEvent | None]:
        name = params["name"] if "name" in params else None  # asked without a dict.get call each
        arguments = params["arguments"] if "arguments" in params else None
        if type(name) is not str or not name:
            return error_body(
                ctx.request_id, INVALID_PARAMS, "tools/call needs 'params.name', the tool's name (a string)"
            ), None
        if arguments is None:
            arguments = {}
        elif type(arguments) is not dict:
            return error_body(ctx.request_id, INVALID_PARAMS, "'params.arguments' must be an object"), None
        # a held-back tool goes the whole way: policy applies the key's grants, the executor refuses it
        view = await self.view(ctx, self.catalog.by_name.get(name))
        entry = entry_for(view, self.catalog.by_name, view.by_name if view else {}, name)
        entry = entry or (view or self.catalog).withheld_by_name.get(name)
        if entry is None and (down := await unavailable_call(self.catalog, self.gateway, ctx, name)) is not None:
            audit = self.audits.record(ctx, "tool_call", name, down.server, down.tool, Ending(down.error))
            return gateway_error_body(ctx.request_id, down.error, tool=name, server=down.server), audit
        if entry is None:
            return self._unknown(ctx, "tool", "tool_call", name)
        app_call = name in (view or self.catalog).app_only
        if app_call and HOST not in ctx.client:
            return self._app_only(ctx, entry)
        meta = forwarded_meta(params)
        extra = call_extra(params)
        sender = self.sender
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
            timeout=sender.timeout(ctx),
            client=list(ctx.client),
            version=ctx.version,
            initiator="app" if app_call else "agent",
        )
        # the journal's R record and the event digest (and may record) the arguments: encoded once for both
        encoded = json_bytes(arguments)
        digest = None
        journal = self.audits.journal
        if journal is not None and ctx.audit_id:  # a crash from here on: an event naming the target
            digest = journal.routed(ctx.audit_id, entry.server, entry.tool, encoded)
        outcome = await sender.call(ctx, call)
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
            arguments_sha256=digest if outcome.ran_arguments is None else None,
        )
        if app_call:
            audit.initiator = "app"
        if outcome.error is not None:
            asked = ELICITS_URLS in ctx.client and url_elicitation(
                ctx.request_id, outcome.error, entry.server, ctx.version, params
            )
            if asked:
                return asked, audit  # "connect your account", as the agent's client shows a user a link
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
        view = await self.view(ctx, self.catalog.prompt_by_name.get(name))
        entry = entry_for(view, self.catalog.prompt_by_name, view.prompt_by_name if view else {}, name)
        entry = entry or self.catalog.withheld_prompt_by_name.get(name)
        if entry is None:
            return self._unknown(ctx, "prompt", "prompt_get", name)
        return await self.routed.route(ctx, "prompts/get", entry, {**params, "name": entry.tool}, "prompt_get")

    def _app_only(self, ctx: RequestContext, entry: CatalogEntry) -> tuple[dict[str, Any], AuditEvent]:
        """A tool MCP Apps keeps for the app, called by a client that declared no app host.

        Refused, as its host would refuse the model (the model was never shown it)."""
        error = GatewayError(
            kind=ErrorKind.FORBIDDEN,
            message=f"{entry.name!r} is callable only by an MCP App, through a host that declared the "
            f"{EXTENSION} extension at initialize",
        )
        audit = self.audits.record(ctx, "tool_call", entry.name, entry.server, entry.tool, Ending(error))
        return gateway_error_body(ctx.request_id, error, tool=entry.name, server=entry.server), audit

    def _unknown(self, ctx: RequestContext, what: str, kind: str, name: str) -> tuple[dict[str, Any], AuditEvent]:
        """The answer and `kind` audit event of a `what` (tool, prompt) that is not this key's to use."""
        error = GatewayError(
            kind=ErrorKind.UNKNOWN_TOOL,
            message=f"Unknown {what}: {name!r}. Call {what}s/list to see the {what}s this key may use.",
        )
        audit = self.audits.record(ctx, kind, name, None, None, Ending(error))
        return gateway_error_body(ctx.request_id, error, **{what: name}), audit

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
        return await self.routed.route(ctx, "completion/complete", entry, params, "completion")

    async def set_level(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Per session.

        The level filters the log notifications Bastion forwards to this agent (upstream sessions are
        shared, so an agent's level is applied here, not sent upstream)."""
        level = params.get("level")
        if level not in LOG_LEVELS:
            return error_body(ctx.request_id, INVALID_PARAMS, f"'level' must be one of {', '.join(LOG_LEVELS)}")
        if ctx.session is not None:
            await self.state.set_level(ctx.session, level)
        return ok_body(ctx.request_id, ctx.version, {})


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


def _listed(field_name: str, listing: Callable[[Catalog | CallerView], Listing]) -> Handler:
    async def listed(h: Handlers, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await h._list(ctx, field_name, listing(await h.view(ctx) or h.catalog))

    return _unaudited(listed)


def _routed(method: str) -> Handler:
    return lambda h, ctx, params: h.resources.request(ctx, method, params)


_METHODS: dict[str, Handler] = {
    "tools/call": Handlers.tools_call,
    "tools/list": _unaudited(lambda h, ctx, params: h.tools_list(ctx)),
    "ping": _immediate(lambda h, ctx, params: ok_body(ctx.request_id, ctx.version, {})),
    "initialize": _immediate(Handlers.initialize),
    "server/discover": _immediate(
        lambda h, ctx, params: ok_body(ctx.request_id, ctx.version, discovery(skills=h.serves_skills))
    ),
    "skills/list": _unaudited(lambda h, ctx, params: h._list(ctx, "skills", h.catalog.skills)),
    "skills/get": lambda h, ctx, params: h.resources.skills_get(ctx, params),
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
