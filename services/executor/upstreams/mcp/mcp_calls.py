"""What an MCP session (`mcp_session.McpSession`) sends.

A `tools/call`, the other routed requests, and the health check's `ping`.

Stateless functions over an SDK `ClientSession`, each mapping what happens to a `CallOutcome`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp_types import HEADER_MISMATCH, LOG_LEVEL_META_KEY, METHOD_NOT_FOUND
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import TypeAdapter, ValidationError

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CallOutcome, Execution, ToolCall, UpstreamRequest
from libs.common.runtime import tracing

from ...error_mapping import describe_exception, error_from_exception
from ...replies import ran, refusal
from ..deadlines import Deadlines
from .input_required import Ask, needs_bridge, resolve_input_required
from .lean import LeanLink, Redirected, Unauthorized
from .upstream_tasks import TASK_METHODS, is_task_call, send_raw

__all__ = [
    "REQUEST_TYPES",
    "bridge_tool_call",
    "failed",
    "ping",
    "send_tool_call",
    "send_upstream_request",
]

log = logging.getLogger(__name__)

_RESULT = TypeAdapter(dict[str, Any])
"""`tools/call` results stay wire dicts: ingress passes them on untouched, so no models are built."""


class _Outgoing:
    """One request on its way to the server.

    Its params, built into the SDK's typed request once, and sent (again, with `extra` params, when an
    `input_required` answer is resolved) within the call's deadline. With `lean`, a `tools/call` goes as
    one POST on the session's connection (`lean.py`) or one line on its pipe (`lean_stdio.py`) instead of
    through the SDK's dispatcher. A `raw` one (a task request, `upstream_tasks.py`) goes on the
    dispatcher unchecked: the SDK's result types know no `CreateTaskResult`."""

    __slots__ = ("deadline", "deadlines", "first", "lean", "method", "model", "params", "progress", "raw", "session")

    def __init__(
        self,
        session: ClientSession,
        model: type[types.Request[Any, Any]],
        method: str,
        params: dict[str, Any],
        deadline: float,
        deadlines: Deadlines,
        progress: ProgressFnT | None,
        lean: LeanLink | None = None,
        raw: bool = False,
    ) -> None:
        self.session, self.model, self.method, self.params = session, model, method, params
        self.deadline, self.deadlines, self.progress, self.lean, self.raw = deadline, deadlines, progress, lean, raw
        self.first = self.build({}) if lean is None and not raw else None
        """Built before sending: a request the SDK refuses is refused before the upstream is asked."""

    def build(self, extra: dict[str, Any]) -> types.Request[Any, Any]:
        return self.model.model_validate({"method": self.method, "params": {**self.params, **extra}}, by_name=False)

    async def send(self, extra: dict[str, Any]) -> dict[str, Any]:
        """The raw result dict, relayed as is: the SDK's bound (a BaseModel) is stricter than its code needs.

        Within the deadline (`TimeoutError` past it), kept on the session's shared timers (`Deadlines`)."""
        kept = self.deadlines.start(self.deadline)
        error: BaseException | None = None
        try:
            if self.raw:
                return await send_raw(self.session, self.method, {**self.params, **extra})
            lean = self.lean
            if lean is not None and lean.usable:
                try:
                    return await lean.request(
                        self.session, self.method, {**self.params, **extra} if extra else self.params
                    )
                except (Redirected, Unauthorized):
                    pass  # nothing ran: the SDK (which follows same-origin redirects, and renews OAuth tokens) sends it
            typed = self.first if self.first is not None and not extra else self.build(extra)
            return await self.session.send_request(typed, _RESULT, progress_callback=self.progress)  # type: ignore[type-var]
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.deadlines.end(kept, error)


class _OutgoingToolCall(_Outgoing):
    __slots__ = ()

    def build(self, extra: dict[str, Any]) -> types.CallToolRequest:
        params = types.CallToolRequestParams.model_validate({**self.params, **extra}, by_name=False)
        return types.CallToolRequest(params=params)


async def send_tool_call(
    session: ClientSession,
    call: ToolCall,
    deadline: float,
    budget: float,
    *,
    deadlines: Deadlines,
    server: str,
    on_stale: Callable[[], None],
    progress: ProgressFnT | None = None,
    ask: Ask | None = None,
    lean: LeanLink | None = None,
) -> CallOutcome:
    """Send one `tools/call` and map what happens to a `CallOutcome`.

    On the deadline the SDK abandons the request and sends the server `notifications/cancelled` for it.
    With `ask`, an `input_required` answer is resolved through the agent for a handshake-era agent.
    `lean` (`_Outgoing`) is passed only when no progress is to be relayed; `on_stale` is told when the
    server says our copy of the tool's schema is stale (2026-07-28)."""
    params: dict[str, Any] = {**(call.extra or {}), "name": call.tool, "arguments": call.arguments}
    if meta := tracing.with_traceparent(_with_log_level(session, call.meta, call.stream, call.log_level)):
        params["_meta"] = meta
    raw = is_task_call(params)
    outgoing = _OutgoingToolCall(
        session, types.CallToolRequest, "tools/call", params, deadline, deadlines, progress, lean, raw
    )
    return await _exchange(
        outgoing, call.id, call.client, budget, server=server, what=f"tool {call.tool!r}", ask=ask, on_stale=on_stale
    )


REQUEST_TYPES: dict[str, type[types.Request[Any, Any]]] = {
    "prompts/get": types.GetPromptRequest,
    "resources/read": types.ReadResourceRequest,
    "resources/subscribe": types.SubscribeRequest,
    "resources/unsubscribe": types.UnsubscribeRequest,
    "completion/complete": types.CompleteRequest,
}
"""Requests ingress routes to one upstream besides `tools/call`."""


async def send_upstream_request(
    session: ClientSession,
    request: UpstreamRequest,
    deadline: float,
    budget: float,
    *,
    deadlines: Deadlines,
    server: str,
    progress: ProgressFnT | None = None,
    ask: Ask | None = None,
) -> CallOutcome:
    """Send one routed request (`prompts/get`, `resources/read`, ...) and map the outcome.

    `ask` as for `send_tool_call`."""
    model = REQUEST_TYPES.get(request.method)
    if model is None and (request.method in TASK_METHODS or request.method == "skills/get"):
        raw = _Outgoing(session, types.Request, request.method, request.params, deadline, deadlines, None, raw=True)
        what = f"{request.method} ({request.target})"
        return await _exchange(raw, request.id, request.client, budget, server=server, what=what, ask=None)
    if model is None:
        message = f"{request.method!r} is not routed upstream"
        return refusal(request, ErrorKind.UPSTREAM_ERROR, message, code=METHOD_NOT_FOUND)
    params = request.params
    meta = tracing.with_traceparent(_with_log_level(session, params.get("_meta"), request.stream, request.log_level))
    if meta is not None:
        params = {**params, "_meta": meta}
    try:
        outgoing = _Outgoing(session, model, request.method, params, deadline, deadlines, progress)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"][1:]) or "params"
        message = f"invalid {request.method} params at {where}: {problem['msg']}"
        return refusal(request, ErrorKind.INVALID_ARGUMENTS, message)
    what = f"{request.method} ({request.target})"
    return await _exchange(outgoing, request.id, request.client, budget, server=server, what=what, ask=ask)


_ANSWERED = frozenset((ErrorKind.UPSTREAM_ERROR, ErrorKind.RESULT_TOO_LARGE))
"""Errors that prove the upstream got the request (it answered)."""


async def _exchange(
    outgoing: _Outgoing,
    request_id: str,
    client: list[str],
    budget: float,
    *,
    server: str,
    what: str,
    ask: Ask | None,
    on_stale: Callable[[], None] | None = None,
) -> CallOutcome:
    """Send `outgoing`, resolve an `input_required` answer for a handshake-era agent.

    (Sending it again with the agent's answers), and map the result or the exception to a `CallOutcome`."""
    started = time.perf_counter()
    try:
        result = await outgoing.send({})
        if ask is not None and needs_bridge(result, client):
            result = await resolve_input_required(result, what=what, ask=ask, resend=outgoing.send)
    except Exception as exc:
        return failed(exc, request_id, started, server=server, budget=budget, what=what, on_stale=on_stale)
    return ran(request_id, result, _ms(started))


def failed(
    exc: Exception,
    request_id: str,
    started: float,
    *,
    server: str,
    budget: float,
    what: str,
    on_stale: Callable[[], None] | None,
) -> CallOutcome:
    """The outcome of a request that raised `exc` (`started` at that `perf_counter`)."""
    if on_stale is not None and isinstance(exc, MCPError) and exc.code == HEADER_MISMATCH:
        on_stale()
    error = error_from_exception(exc, server=server, timeout=budget)
    if error.kind is ErrorKind.INTERNAL:
        log.exception("upstream %s: %s failed unexpectedly", server, what)
    # an error the upstream answered proves it got the request; anything else leaves it open
    execution: Execution = "ran" if error.kind in _ANSWERED else "may_have_run"
    return CallOutcome(id=request_id, error=error, decided_by="executor", upstream_ms=_ms(started), execution=execution)


async def bridge_tool_call(
    session: ClientSession,
    params: dict[str, Any],
    result: dict[str, Any],
    deadline: float,
    *,
    deadlines: Deadlines,
    ask: Ask,
    lean: LeanLink | None,
) -> dict[str, Any]:
    """`result` (an `input_required` answer to a call of `params`, unstamped) resolved through `ask`.

    As `send_tool_call` resolves it."""
    outgoing = _OutgoingToolCall(session, types.CallToolRequest, "tools/call", params, deadline, deadlines, None, lean)
    return await resolve_input_required(result, what=f"tool {params['name']!r}", ask=ask, resend=outgoing.send)


async def ping(session: ClientSession, within: float) -> str | None:
    """None when the server answered within `within` seconds, else why not.

    An error answer counts as alive: 2026-07-28 servers may not implement `ping`, but answering proves
    the session works."""
    try:
        with anyio.fail_after(within):
            await session.send_ping()
    except MCPError:
        return None
    except Exception as exc:
        return describe_exception(exc)
    return None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _with_log_level(session: ClientSession, meta: Any, stream: str | None, level: str | None) -> dict[str, Any] | None:
    """2026-07-28 servers send log messages only for requests that ask.

    Ask when the agent set a level (`logging/setLevel`) and has a stream to receive them. Not by default:
    a server asked for logs may answer every call as an SSE stream, which costs milliseconds per call
    (measured). Handshake-era sessions need nothing (there `logging/setLevel` governs)."""
    own: dict[str, Any] | None = meta if isinstance(meta, dict) else None
    if stream is None or level is None or session.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return own
    return {LOG_LEVEL_META_KEY: level, **(own or {})}
