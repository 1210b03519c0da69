"""A session's plain lean `tools/call`: one coroutine from the call to the pooled connection's answer.

(Streamable HTTP; on stdio and SSE, to the pipe's answer, `lean_stdio.StdioLink.send`.)

A call with no task, no other params, no progress to relay, no log level to ask for and no
`Mcp-Param-*` headers (most calls) skips the layers every other request goes through
(`mcp_calls.send_tool_call`, `_exchange`, `_Outgoing.send`, `HttpLink.request`, `http1._Post`), about
ten Python calls and coroutine resumptions per call: the tool's stamp and request head are worked out
once (`lean_plan`), an idle pooled connection is taken, the request written and its answer awaited in
this one coroutine. What it keeps is what the general path does: the call's deadline on the session's
shared timers, the result checks of `ClientSession.send_request` (`lean_results.checked`), the
`notifications/cancelled` of an abandoned call, the bridge of an `input_required` answer, the same
outcome for every error. Anything unusual (no idle connection, a status other than 200, an SSE answer,
a body not yet whole or over the limit, a redirect or a 401) continues on the general path's own code.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types import PARSE_ERROR

from libs.common.contracts import json_codec
from libs.common.contracts.messages import CallOutcome, ToolCall
from libs.common.runtime import tracing

from ...replies import ran
from ..interface import CallContext, SessionHooks
from .http1_connection import Response
from .lean import HttpLink, LeanLink, Position, Redirected, StreamCut, Unauthorized, next_request_id, tell_cancelled
from .lean_plan import ToolPlan, plan_tool_call
from .lean_results import answer_of, checked
from .lean_stdio import StdioLink
from .mcp_calls import bridge_tool_call, failed
from .mcp_changes import ChangeListener
from .mcp_session import McpSession

__all__ = ["LeanMcpSession", "lean_session"]

_PLANS = 512
"""Plans kept per session (tools times OAuth tokens); all are dropped when it is full."""

PlanKey = tuple[str, str | None, str | None, str | None]
"""(tool, authorization, session id, protocol version header): what a plan's head depends on."""


def lean_session(
    name: str, session: ClientSession, hooks: SessionHooks, listener: ChangeListener, lean_link: LeanLink | None
) -> McpSession:
    """The session a connection's calls go on (`mcp_session.MakeSession`): a lean one when it has a lean link."""
    if isinstance(lean_link, HttpLink | StdioLink):
        return LeanMcpSession(name, session, hooks, listener, lean_link)
    return McpSession(name, session, hooks, listener, lean_link)


class LeanMcpSession(McpSession):
    """An `McpSession` whose plain `tools/call`s go on its lean link in one coroutine."""

    def __init__(self, *args: Any) -> None:
        """As `McpSession`, with a lean link (`lean_session` makes one only then)."""
        super().__init__(*args)
        link = self.lean_link
        assert isinstance(link, HttpLink | StdioLink), "a lean session has a lean link"
        self._link: HttpLink | StdioLink = link
        self._http = link if isinstance(link, HttpLink) else None
        self._pipe = link if isinstance(link, StdioLink) else None
        self._plans: dict[PlanKey, ToolPlan] = {}

    async def call_tool(self, call: ToolCall, ctx: CallContext) -> CallOutcome:
        plan = self._plain(call, ctx)
        if plan is None:
            return await super().call_tool(call, ctx)
        link, pipe, session = self._http, self._pipe, self.client_session
        raw: dict[str, Any] | None
        started = time.perf_counter()
        request_id = next_request_id()
        try:
            own = tracing.with_traceparent(call.meta if isinstance(call.meta, dict) else None)
            params: dict[str, Any] = {"name": call.tool, "arguments": call.arguments}
            if meta := ({**plan.defaults, **own, **plan.forced} if own else plan.meta):
                params["_meta"] = meta  # what the SDK's stamp makes of the caller's
            outgoing = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
            body = json_codec.dumps(outgoing)
            kept = self._deadlines.start(ctx.deadline)
            error: BaseException | None = None
            try:
                if pipe is not None:
                    raw = await pipe.send(session, request_id, outgoing, body)
                elif link is None:
                    raise AssertionError("a lean session has a link")
                elif (connection := link.http.take()) is None:
                    link.sent += 1
                    raw = await link.post(body, plan.headers, request_id)
                else:
                    link.sent += 1
                    response: Response | None = None
                    position: Position | None = None
                    try:
                        response = await connection.send(b"%b%d%b%b" % (plan.before, len(body), plan.after, body))
                        if (
                            response.status == 200
                            and response.headers.get("content-type", "").lower().startswith("application/json")
                            and (data := response.whole(plan.cutoff)) is not None
                        ):
                            try:
                                message = json_codec.loads(data)
                            except ValueError as exc:
                                raise MCPError(PARSE_ERROR, f"Failed to parse JSON response: {exc}") from None
                            raw = answer_of(message)
                        else:
                            position = Position()
                            try:
                                raw = await link.answer(response, request_id, position)
                            except StreamCut:
                                raw = None
                    finally:
                        link.http.put(connection, response)
                    if raw is None and position is not None:  # an SSE answer cut before its result
                        raw = await link.resume(plan.headers, request_id, position)
            except asyncio.CancelledError as exc:  # the deadline, or the agent cancelled
                error = exc
                if link is not None:  # (a pipe's `send` tells the server itself)
                    tell_cancelled(session, request_id, link.cancels)
                raise
            except BaseException as exc:
                error = exc
                raise
            finally:
                self._deadlines.end(kept, error)
            assert raw is not None
            if "ttlMs" in raw or not plan.foreign.isdisjoint(raw):
                raw = checked("tools/call", plan.version, raw)
            elif plan.validate is not None:  # all `checked` does to most results
                plan.validate(raw, by_name=False)
            if (active := ctx.active) is not None and raw.get("resultType") == "input_required":
                if "input_required" not in call.client:
                    ask = partial(self._agents.answer, active)
                    params = {"name": call.tool, "arguments": call.arguments, **({"_meta": own} if own else {})}
                    raw = await bridge_tool_call(
                        session, params, raw, ctx.deadline, deadlines=self._deadlines, ask=ask, lean=self._link
                    )
        except (Redirected, Unauthorized):  # nothing ran: the SDK's way follows redirects and renews tokens
            return await super().call_tool(call, CallContext(ctx.deadline, ctx.budget, ctx.active, lean=False))
        except Exception as exc:
            what, stale = f"tool {call.tool!r}", self._hooks.on_list_changed  # 2026-07-28: our schema is stale
            return failed(exc, call.id, started, server=self.name, budget=ctx.budget, what=what, on_stale=stale)
        return ran(call.id, raw, round((time.perf_counter() - started) * 1000, 3))

    def _plain(self, call: ToolCall, ctx: CallContext) -> ToolPlan | None:
        """The plan of a call that may go the plain way; None sends it the general way (`McpSession.call_tool`)."""
        active = ctx.active
        if (
            not ctx.lean
            or not self._link.usable
            or call.extra  # a task call, or other params the plan does not hold
            or (active is not None and active.progress_token is not None and active.stream is not None)
            or (call.log_level is not None and call.stream is not None)
        ):
            return None
        session, link = self.client_session, self._http
        authorization: str | bool | None = None
        key: PlanKey = (call.tool, None, None, None)  # a pipe's call: no head, the stamp's _meta only
        if link is not None:
            if session._x_mcp_header_maps.get(call.tool):  # its Mcp-Param-* headers follow the argument values
                return None
            authorization = link.bearer.lean_authorization() if link.bearer is not None else None
            if isinstance(authorization, bool):  # False: due for renewal; the general path sends it the SDK's way
                return None
            transport = link.transport
            key = (call.tool, authorization, transport.session_id, transport._protocol_version_header)
        plan = self._plans.get(key)
        if plan is None or plan.stamp is not session._stamp:
            plan = plan_tool_call(session, link, call.tool, key[1])
            if plan is None:
                return None
            if len(self._plans) >= _PLANS:
                self._plans.clear()
            self._plans[key] = plan
        return plan
