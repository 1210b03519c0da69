"""Code Mode at the edge.

For a key in Code Mode, `tools/list` answers the five meta-tools and calls to them go to the codemode
service (`bastion.codemode.call`); everything else takes the usual path. Ingress writes each meta-tool
call's audit row (kind `code_run` / `code_mode`); its `event_id` travels with the call as the parent of
the tool calls a run makes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from mcp_types import INVALID_PARAMS, INVALID_REQUEST
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import ValidationError

from libs.common.audit.audit_content import content_fields, error_column, json_bytes
from libs.common.audit.audit_journal import AuditJournal
from libs.common.bus.relay import AckedRequester, ResponderLost
from libs.common.contracts import subjects
from libs.common.contracts.codemode import EXECUTE_CODE, META_TOOL_NAMES, META_TOOLS, code_mode_choice
from libs.common.contracts.errors import JSONRPC_CODE, ErrorKind
from libs.common.contracts.messages import AuditEvent, Caller, CodeModeAnswer, CodeModeCall, GatewayError, new_id
from libs.common.settings import IngressSettings
from services.ingress.audit_events import TOOL_ERROR
from services.ingress.auth.keys import KeyDirectory
from services.ingress.catalog.user_views import CallerView
from services.ingress.protocol import error_body, gateway_error_body, ok_body

__all__ = ["CodeModeRouter"]

_CODE_MODE_METHODS = frozenset({"tools/list", "tools/call"})
_NO_SERVICE = "no codemode service is running behind this gateway; retry shortly or check `bastion up`"


class CodeModeRouter:
    """`await start()` before the first call."""

    def __init__(
        self,
        nc: NATS,
        keys: KeyDirectory,
        settings: IngressSettings,
        running: dict[tuple[str, str, Any], str] | None = None,
        journal: AuditJournal | None = None,
    ) -> None:
        self.keys, self.call_timeout = keys, settings.call_timeout
        self.journal = journal
        """Ingress's audit journal: a run is journaled with its meta-tool and its arguments' digest before it is
        sent, so the row a replica killed mid-run leaves names the script, as a cut tool call's names its arguments."""
        self.audit_content = settings.audit_content
        self._codemode = AckedRequester(nc, subjects.CODEMODE_HOLDERS, settings=settings)

        self.running = running
        """The map of session requests to the calls running for them (`RoutedSender.running`), so an
        agent's `notifications/cancelled` reaches a run like a tool call."""
        self.caller_view: Callable[[Caller], Awaitable[CallerView | None]] | None = None
        """What a caller is listed where it is not the shared catalog (`UserCatalogs.view`): a run
        searches and calls the caller's own tools of per-user servers, never another user's."""

    async def view(self, caller: Caller) -> CallerView | None:
        """The caller's view, or None when the shared catalog is theirs (no server is per user)."""
        return await self.caller_view(caller) if self.caller_view is not None else None

    async def start(self) -> None:
        await self._codemode.start()

    async def dispatch(self, ctx: Any, method: str, params: dict[str, Any]) -> tuple[dict[str, Any], Any] | None:
        """The answer (and audit event) when the request is Code Mode's to answer, else None.

        `ctx` is the handler's `RequestContext`."""
        if method not in _CODE_MODE_METHODS:
            return None
        choice = code_mode_choice(ctx.code_mode, self.keys.code_mode(ctx.caller.key_id))
        if isinstance(choice, str):
            return error_body(ctx.request_id, INVALID_REQUEST, choice), None
        if not choice:
            return None
        if method == "tools/list":
            result: dict[str, Any] = {"tools": list(META_TOOLS)}
            if ctx.version in MODERN_PROTOCOL_VERSIONS:
                result |= {"cacheScope": "private", "ttlMs": 0}
            return ok_body(ctx.request_id, ctx.version, result), None
        name = params.get("name")
        if not isinstance(name, str) or name not in META_TOOL_NAMES:
            return None  # a catalog tool called directly: policy decides as usual
        return await self.route(ctx, name, params)

    async def route(self, ctx: Any, name: str, params: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """A `tools/call` of meta-tool `name`.

        (Code Mode's, or discovery's `find_tools`), its arguments checked, sent to the codemode service."""
        arguments = params.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            return error_body(ctx.request_id, INVALID_PARAMS, "'params.arguments' must be an object"), None
        return await self.call(ctx, name, arguments or {})

    async def call(self, ctx: Any, name: str, arguments: dict[str, Any]) -> tuple[dict[str, Any], AuditEvent]:
        timeout = min(ctx.timeout, self.call_timeout) if ctx.timeout else self.call_timeout
        request = CodeModeCall(
            trace_id=ctx.trace_id,
            caller=ctx.caller,
            tool=name,
            arguments=arguments,
            include_servers=list(ctx.include_servers) if ctx.include_servers is not None else None,
            include_tools=list(ctx.include_tools) if ctx.include_tools is not None else None,
            parent_id=ctx.audit_id or new_id(),  # the id the audit journal gave the request, if any
            timeout=timeout,
            **_own_tools(await self.view(ctx.caller)),
        )
        ctx.call_id = request.id  # a cancellation abandons it: EXEC_CANCEL, which codemode also hears
        encoded, digest = json_bytes(arguments), None
        if self.journal is not None and ctx.audit_id:  # a kill from here on: an event naming the run's script
            digest = self.journal.routed(ctx.audit_id, "", name, encoded, kind=_kind(name))
        running = (ctx.caller.key_id, ctx.session, ctx.request_id) if ctx.session is not None else None
        if running is not None and self.running is not None:
            self.running[running] = request.id
        try:
            answer = await self._send(request)
        finally:
            if running is not None and self.running is not None:
                self.running.pop(running, None)
        audit = _audit(ctx, request, answer, content=self.audit_content, arguments=encoded, arguments_sha256=digest)
        if answer.error is not None:
            return gateway_error_body(ctx.request_id, answer.error, tool=name), audit
        result = _with_links(answer.result or {"content": []}, answer.authorize_urls)
        return ok_body(ctx.request_id, ctx.version, result), audit

    async def _send(self, request: CodeModeCall) -> CodeModeAnswer:
        def failed(kind: ErrorKind, message: str) -> CodeModeAnswer:
            return CodeModeAnswer(id=request.id, error=GatewayError(kind=kind, message=message))

        try:
            reply = await self._codemode.request(
                subjects.CODEMODE_CALL, request.model_dump_json().encode(), within=request.timeout
            )
        except ResponderLost as exc:
            return failed(ErrorKind.GATEWAY_UNAVAILABLE, f"{exc}; tools the run called may have run")
        except NoRespondersError:
            return failed(ErrorKind.GATEWAY_UNAVAILABLE, _NO_SERVICE)
        except NatsTimeout:
            return failed(
                ErrorKind.GATEWAY_TIMEOUT,
                f"{request.tool} did not answer within {request.timeout:g}s (gateway limit); "
                "tools it called may have run",
            )
        try:
            return CodeModeAnswer.model_validate_json(reply.data)
        except ValidationError:
            return failed(ErrorKind.INTERNAL, "the gateway received a malformed reply from its codemode service")


def _own_tools(view: CallerView | None) -> dict[str, Any]:
    """`CodeModeCall`'s fields naming the per-user servers' tools the caller is listed (none: no view)."""
    if view is None:
        return {}
    own = [(e.server, {**e.definition, "name": e.tool}) for e in view.tools.entries if e.server in view.per_user]
    return {"per_user": sorted(view.per_user), "own_tools": own}


def _with_links(result: dict[str, Any], links: dict[str, str]) -> dict[str, Any]:
    """The run's result with one text block per authorization link its calls were refused for.

    Added here, after the audit row was made, since a link is a credential of the caller's."""
    if not links:
        return result
    lines = [f"authorize {server} for your user first: open {url}" for server, url in sorted(links.items())]
    return {**result, "content": [*result.get("content", []), {"type": "text", "text": "\n".join(lines)}]}


def _kind(tool: str) -> Literal["code_run", "code_mode"]:
    """The kind of a meta-tool call's event: a run of a script, or one of Code Mode's other tools."""
    return "code_run" if tool == EXECUTE_CODE else "code_mode"


def _audit(
    ctx: Any,
    request: CodeModeCall,
    answer: CodeModeAnswer,
    *,
    content: bool,
    arguments: bytes,
    arguments_sha256: str | None,
) -> AuditEvent:
    """The run's (or meta-tool call's) event: the parent of the tool calls a script made.

    Its arguments (the script, as JSON; their digest when the journal took it) and result recorded as
    content logging allows."""
    error = answer.error
    status: Literal["ok", "tool_error", "error"]
    if error is not None:
        status = "error"
        code: int | None = error.code if error.code is not None else JSONRPC_CODE[error.kind]
    else:
        status = TOOL_ERROR if (answer.result or {}).get("isError") else "ok"
        code = None
    return AuditEvent(
        event_id=request.parent_id,
        kind=_kind(request.tool),
        trace_id=ctx.trace_id,
        key_id=ctx.caller.key_id,
        key_name=ctx.caller.key_name,
        **ctx.caller.owner(),
        **content_fields(
            arguments, answer.result, keep=content and ctx.caller.content_logging, arguments_sha256=arguments_sha256
        ),
        name=request.tool,
        tool=request.tool,
        status=status,
        error_kind=error.kind.value if error else (TOOL_ERROR if status == TOOL_ERROR else None),
        error_code=code,
        error=error_column(error),
        latency_ms=(time.perf_counter() - ctx.started) * 1000,
        request_bytes=ctx.request_bytes,
    )
