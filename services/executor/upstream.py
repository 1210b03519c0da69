"""Calls on one upstream's live session, from any task: `tools/call` (checked, retried when safe,
sent lean where it can be) and the other routed requests, each through the circuit breaker. The
session itself is `connection.Connection`'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from mcp.client.session import ClientSession
from mcp.shared.dispatcher import ProgressFnT
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from libs.common import tracing
from libs.common.errors import ErrorKind
from libs.common.messages import CallOutcome, GatewayError, ToolCall, UpstreamRequest

from .agents import ActiveCall
from .budgets import call_budget
from .connection import Connection, Publish, State
from .listening import ChangeListener
from .replies import refusal
from .requests import send_tool_call, send_upstream_request
from .resilience import BREAKER_FAILURES, circuit_open_message, retry_safe, with_retries

__all__ = ["Publish", "State", "Upstream"]

log = logging.getLogger(__name__)


class Upstream(Connection):
    """One server's connection and the calls on it; `call()` is safe from any task."""

    # ------------------------------------------------------------------ calls (any task)

    async def call(self, call: ToolCall) -> CallOutcome:
        budget = call_budget(call.timeout, self.config.timeout, time.time() - call.sent_at)
        if not self._policy.allows(call.tool):
            return refusal(call, ErrorKind.UNKNOWN_TOOL, f"server {self.name!r} has no tool {call.tool!r}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        tools = self.tools
        retries = self.config.retries if tools is not None and retry_safe(tools.definition(call.tool)) else 0
        active = _active_call(call.id, call.stream, call.client, call.meta, budget)
        with self.agents.running(active):
            outcome = await with_retries(
                lambda: self._attempt(call, deadline, budget, active),
                retries=retries,
                deadline=deadline,
                clock=loop.time,
            )
        outcome.events = active.events
        return outcome

    async def request(self, request: UpstreamRequest) -> CallOutcome:
        """A routed request other than `tools/call`; never retried (reads are cheap to re-ask,
        but `resources/subscribe` bookkeeping must not run twice)."""
        budget = call_budget(request.timeout, self.config.timeout, time.time() - request.sent_at)
        deadline = asyncio.get_running_loop().time() + budget
        if (refused := await self._session_problem(request, deadline)) is not None:
            return refused
        method, uri = request.method, request.params.get("uri")
        if method in ("resources/subscribe", "resources/unsubscribe") and isinstance(uri, str):
            return await self._subscription(request, uri, deadline, budget)
        active = _active_call(request.id, request.stream, request.client, request.params.get("_meta"), budget)
        with self.agents.running(active):
            outcome = await self._send(
                lambda session: send_upstream_request(
                    session,
                    request,
                    deadline,
                    budget,
                    server=self.name,
                    progress=self._progress(active),
                    ask=partial(self.agents.answer, active),
                ),
                request.id,
                method,
            )
        outcome.events = active.events
        return outcome

    async def _subscription(self, request: UpstreamRequest, uri: str, deadline: float, budget: float) -> CallOutcome:
        """Subscribe upstream for the first agent session only, unsubscribe after the last one.
        A 2026-07-28 session has no `resources/subscribe`: its change stream's filter is updated."""
        subscriber = request.subscriber or request.id
        session = self._session
        if session is not None and session.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return await self._listen_for(request, uri, subscriber, session, deadline)
        holders = self._subscriptions.setdefault(uri, set())
        if request.method == "resources/subscribe":
            first = not holders
            holders.add(subscriber)
            if not first:
                return CallOutcome(id=request.id, result={}, decided_by="executor")
        else:
            holders.discard(subscriber)
            if holders:
                return CallOutcome(id=request.id, result={}, decided_by="executor")
            self._subscriptions.pop(uri, None)
        outcome = await self._send(
            lambda session: send_upstream_request(session, request, deadline, budget, server=self.name),
            request.id,
            request.method,
        )
        if outcome.error is not None and request.method == "resources/subscribe":
            holders.discard(subscriber)
            if not holders:
                self._subscriptions.pop(uri, None)
        return outcome

    async def _listen_for(
        self, request: UpstreamRequest, uri: str, subscriber: str, session: ClientSession, deadline: float
    ) -> CallOutcome:
        if not ChangeListener.supports_resource_subscriptions(session):
            return _refused(
                request.id, ErrorKind.UPSTREAM_ERROR, f"server {self.name!r} does not support resource subscriptions"
            )
        if request.method == "resources/subscribe":
            self._subscriptions.setdefault(uri, set()).add(subscriber)
        elif (holders := self._subscriptions.get(uri)) is not None:
            holders.discard(subscriber)
            if not holders:
                del self._subscriptions[uri]
        within = max(deadline - asyncio.get_running_loop().time(), 0.0)
        if (
            not await self._listener.subscribe_to(self._subscriptions, within)
            and request.method == "resources/subscribe"
        ):
            return _refused(
                request.id,
                ErrorKind.UPSTREAM_TIMEOUT,
                f"server {self.name!r} did not acknowledge the subscription in time",
            )
        return CallOutcome(id=request.id, result={}, decided_by="executor")

    async def _session_problem(self, request: ToolCall | UpstreamRequest, deadline: float) -> CallOutcome | None:
        if self._state is State.CONNECTING:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._settled.wait()
            except TimeoutError:
                return _refused(request.id, ErrorKind.UPSTREAM_UNAVAILABLE, f"server {self.name!r} is still connecting")
        return None

    async def _send(
        self, send: Callable[[ClientSession], Awaitable[CallOutcome]], request_id: str, method: str = "tools/call"
    ) -> CallOutcome:
        """Ask the breaker, send on the live session, tell the breaker how it went."""
        session = self._session
        if session is None:  # known to be down: the reconnect loop, not a probe, finds out when it is back
            return _refused(request_id, ErrorKind.UPSTREAM_UNAVAILABLE, self._unavailable_reason())
        if not self.breaker.allow():
            message = circuit_open_message(self.name, self.breaker.seconds_to_probe())
            return _refused(request_id, ErrorKind.CIRCUIT_OPEN, message)
        outcome: CallOutcome | None = None
        try:
            # the upstream request's `_meta.traceparent` names this span (`requests.py`)
            with tracing.client_span("executor", f"upstream {self.name} {method}"):
                outcome = await send(session)
        finally:
            kind = None if outcome is None or outcome.error is None else outcome.error.kind
            if outcome is None or kind is ErrorKind.INTERNAL:
                self.breaker.release()  # cancelled, or our own bug: says nothing about the server
            elif kind in BREAKER_FAILURES:
                self.breaker.failure()
            else:
                self.breaker.success()
                self._last_ok = asyncio.get_running_loop().time()
        return outcome

    def _progress(self, active: ActiveCall) -> ProgressFnT | None:
        if active.progress_token is None or active.stream is None:
            return None

        async def forward(progress: float, total: float | None, message: str | None) -> None:
            await self.agents.progress(active, progress, total, message)

        return forward

    async def _attempt(self, call: ToolCall, deadline: float, budget: float, active: ActiveCall) -> CallOutcome:
        """One try: wait for a session, check the call, ask the breaker, send, tell the breaker."""
        if (refused := await self._session_problem(call, deadline)) is not None:
            return refused
        tools = self.tools
        if tools is not None:
            if call.tool not in tools:
                return refusal(call, ErrorKind.UNKNOWN_TOOL, f"server {self.name!r} has no tool {call.tool!r}")
            problem = tools.check_arguments(call.tool, call.arguments)
            if problem is not None:
                return refusal(call, ErrorKind.INVALID_ARGUMENTS, problem)
        progress = self._progress(active)
        return await self._send(
            lambda session: send_tool_call(
                session,
                call,
                deadline,
                budget,
                server=self.name,
                on_stale=self._stale,
                progress=progress,
                ask=partial(self.agents.answer, active),
                # progress is matched by the token the SDK's dispatcher gives its own requests
                lean=self._lean if progress is None and self.lean_calls else None,
            ),
            call.id,
        )

    def _stale(self) -> None:
        self._relist = True  # 2026-07-28: our copy of the tool's schema is stale
        self._poke()

    def _unavailable_reason(self) -> str:
        if self._state is State.STOPPED:
            return self._error
        return f"server {self.name!r} is unavailable: {self._error}"


def _refused(request_id: str, kind: ErrorKind, message: str) -> CallOutcome:
    return CallOutcome(
        id=request_id, error=GatewayError(kind=kind, message=message), decided_by="executor", execution="not_run"
    )


def _active_call(request_id: str, stream: str | None, client: list[str], meta: Any, budget: float) -> ActiveCall:
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return ActiveCall(
        request_id,
        stream,
        frozenset(client),
        time.monotonic() + budget,
        progress_token=token if isinstance(token, str | int) and not isinstance(token, bool) else None,
    )
