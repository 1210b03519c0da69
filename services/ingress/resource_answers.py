"""Resources and skills as ingress answers them: read, subscribed to, or a skill's entry.

A resource goes to the upstream that lists it; a file of one of the gateway's own skills is answered
from memory under the skill's grant; a skill's entry comes from the catalog when listed, else from the
server its URI names. The handlers (`handlers.Handlers`) hold one `ResourceAnswers`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from mcp_types import INVALID_PARAMS

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import AuditEvent, GatewayError, PairList
from libs.common.contracts.skills import SCHEME as SKILL_SCHEME
from libs.common.contracts.skills import skill_path, upstream_skill_uri
from libs.common.contracts.ui_apps import SCHEME
from services.ingress.audit_events import AuditRecorder, Ending
from services.ingress.catalog.aggregated import Catalog, CatalogEntry
from services.ingress.catalog.own_skills import GATEWAY
from services.ingress.catalog.user_views import CallerView
from services.ingress.context import RequestContext
from services.ingress.protocol import error_body, ok_body
from services.ingress.routed_answers import Answered, RoutedAnswers
from services.ingress.sending.request_path import RequestPath
from services.ingress.sessions.session_state import SessionState

__all__ = ["ResourceAnswers"]

_RESOURCE_NOT_FOUND = -32002
"""The MCP spec's code for a resource that does not exist."""
_NO_FRAGMENT = orjson.Fragment(b"{}")
"""The listed form of an entry made for one request, never listed."""


class ResourceAnswers:
    """`resources/read`, `resources/subscribe`, `resources/unsubscribe` and `skills/get`."""

    def __init__(
        self,
        catalog: Catalog,
        gateway: RequestPath,
        audits: AuditRecorder,
        state: SessionState,
        routed: RoutedAnswers,
        view: Callable[[RequestContext], Awaitable[CallerView | None]],
    ) -> None:
        self.catalog, self.gateway = catalog, gateway
        self.audits, self.state = audits, state
        self.routed = routed
        self.view = view
        """The caller's own listing where some server is per user (`Handlers.view`), else None."""

    async def request(
        self, ctx: RequestContext, method: str, params: dict[str, Any]
    ) -> tuple[dict[str, Any], AuditEvent | None]:
        """A `resources/read`, `resources/subscribe` or `resources/unsubscribe` (`method`) of `params.uri`."""
        uri = params.get("uri")
        if not isinstance(uri, str) or not uri:
            return error_body(ctx.request_id, INVALID_PARAMS, f"{method} needs 'params.uri', the resource's URI"), None
        kind = "resource_read" if method == "resources/read" else "resource_subscribe"
        try:
            entry = self.catalog.resource_owner(uri)
        except ValueError as exc:  # a ui:// URI that names no server, or could resolve elsewhere
            error = GatewayError(kind=ErrorKind.INVALID_ARGUMENTS, message=f"{uri!r}: {exc}")
            body = error_body(ctx.request_id, INVALID_PARAMS, error.message, {"uri": uri})
            return body, self.audits.record(ctx, kind, uri, None, None, Ending(error))
        if entry is None and (view := await self.view(ctx)) is not None:  # a per-user server's, for this user
            entry = view.resource_by_uri.get(uri)
        if entry is not None and entry.server == GATEWAY and method == "resources/read":
            return await self._own_skill_file(ctx, entry)
        if entry is None or entry.server == GATEWAY:  # nothing to subscribe to in a skill of the gateway's
            return self._no_resource(ctx, kind, uri)
        if uri.startswith((SCHEME, SKILL_SCHEME)):  # an app's or skill's: its upstream knows its own URI
            params, target = {**params, "uri": entry.tool}, entry.target
        else:
            target = f"resource:{uri}"
        payload, audit = await self.routed.route(ctx, method, entry, params, kind, name=uri, target=target)
        if "result" in payload and ctx.session is not None and method != "resources/read":
            change = self.state.subscribe if method == "resources/subscribe" else self.state.unsubscribe
            await change(ctx.session, entry.server, uri)
        return payload, audit

    def _no_resource(self, ctx: RequestContext, kind: str, uri: str) -> Answered:
        error = GatewayError(
            kind=ErrorKind.UNKNOWN_TOOL, message=f"Resource not found: {uri!r}", code=_RESOURCE_NOT_FOUND
        )
        body = error_body(ctx.request_id, _RESOURCE_NOT_FOUND, error.message, {"uri": uri})
        return body, self.audits.record(ctx, kind, uri, None, None, Ending(error))

    async def _own_skill_file(self, ctx: RequestContext, entry: CatalogEntry) -> Answered:
        """A file of one of the gateway's own skills, from memory, under the skill's grant."""
        answer = await self.gateway.visible(
            ctx.caller, PairList.of([(GATEWAY, entry.target)]), ctx.include_servers, None
        )
        result = self.catalog.own.read(entry.name) if answer.error is None and answer.allowed else None
        if result is None:
            return self._no_resource(ctx, "resource_read", entry.name)
        audit = self.audits.record(ctx, "resource_read", entry.name, GATEWAY, entry.name, Ending(None))
        return ok_body(ctx.request_id, ctx.version, result), audit

    async def skills_get(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[dict[str, Any], AuditEvent | None]:
        """A skill's entry.

        From the catalog when listed (under the key's grants), else asked of the server its URI names
        (the extension has a server answer for skills it does not list). Audited as a read: the entry is
        the manifest of what the agent may then read."""
        uri = params.get("uri")
        entry = self.catalog.skill_by_uri.get(uri) if isinstance(uri, str) else None
        if entry is None:
            return await self._unlisted_skill(ctx, uri, params)
        pairs = PairList.of([(entry.server, entry.target)])
        answer = await self.gateway.visible(ctx.caller, pairs, ctx.include_servers, None)
        if answer.error is not None or not answer.allowed:  # a skill outside the key's grants is none of its
            return self._no_skill(ctx, uri, answer.error)
        audit = self.audits.record(ctx, "resource_read", entry.name, entry.server, entry.tool, Ending(None))
        result = {"resultType": "complete", "skill": entry.definition, "cacheScope": "private", "ttlMs": 0}
        return ok_body(ctx.request_id, ctx.version, result), audit

    async def _unlisted_skill(self, ctx: RequestContext, uri: Any, params: dict[str, Any]) -> Answered:
        try:
            server, upstream = upstream_skill_uri(uri) if isinstance(uri, str) else ("", "")
        except ValueError:
            server, upstream = "", ""
        if server not in self.catalog.ready or skill_path(upstream) is None:
            return self._no_skill(ctx, uri, None)
        entry = CatalogEntry(uri, server, upstream, {}, _NO_FRAGMENT, f"skill:{skill_path(upstream)}")
        params = {**params, "uri": upstream}
        return await self.routed.route(ctx, "skills/get", entry, params, "resource_read", target=entry.target)

    def _no_skill(self, ctx: RequestContext, uri: Any, error: GatewayError | None) -> Answered:
        """`-32602`, as the extension answers a URI that names no skill it serves."""
        error = error or GatewayError(kind=ErrorKind.INVALID_ARGUMENTS, message=f"Unknown skill: {uri!r}")
        audit = self.audits.record(ctx, "resource_read", str(uri)[:512], None, None, Ending(error))
        return error_body(ctx.request_id, INVALID_PARAMS, f"Unknown skill: {uri!r}", {"uri": uri}), audit
