"""One upstream server as the executor service sees it, whatever its kind: its session (kept by a
`SessionKeeper`, opened through the kind's `Connector`), its circuit breaker, and the calls on it:
`tools/call` (checked, retried when safe) and the other routed requests, each through the breaker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from libs.common import tracing
from libs.common.config import ServerConfig
from libs.common.errors import ErrorKind
from libs.common.messages import CallOutcome, GatewayError, ServerCatalog, ToolCall, UpstreamRequest

from .agents import ActiveCall, AgentLink
from .breaker import CircuitBreaker
from .budgets import call_budget
from .interceptors.chain import InterceptorChain
from .oauth_tokens import OAuthTokens
from .replies import refusal
from .resilience import BREAKER_FAILURES, circuit_open_message, retry_safe, with_retries
from .session_keeper import SessionKeeper, State
from .tools import ToolSet
from .upstreams.interface import CallContext, UpstreamSession

__all__ = ["Publish", "State", "Upstream"]

log = logging.getLogger(__name__)

Publish = Callable[["Upstream", ServerCatalog], Awaitable[bool]]


class Upstream:
    """One server's session and the calls on it; `call()` and `request()` are safe from any task."""

    def __init__(
        self,
        name: str,
        config: ServerConfig,
        *,
        connect_timeout: float,
        max_backoff: float,
        publish: Publish,
        health_interval: float = 15.0,
        agents: AgentLink | None = None,
        oauth: OAuthTokens | None = None,
        lean_calls: bool = True,
        max_result: int | None = None,
        interceptors: InterceptorChain | None = None,
        catalog_heartbeat: float = 10.0,
    ) -> None:
        self.name = name
        self.agents = agents or AgentLink(None, name)
        """Routes what the server sends during a call back to that call's agent."""
        self._subscriptions: dict[str, set[str]] = {}
        """Resource URI -> agent sessions subscribed to it through this executor; the upstream is
        subscribed while the set is non-empty, and again after every reconnect."""
        self.lean_calls = lean_calls
        """Send `tools/call` the session's lean way where it has one (`lean.py`); False: always the SDK's."""
        self.keeper = SessionKeeper(
            name,
            config,
            agents=self.agents,
            subscriptions=self._subscriptions,
            connect_timeout=connect_timeout,
            max_backoff=max_backoff,
            publish=lambda catalog: publish(self, catalog),
            health_interval=health_interval,
            oauth=oauth,
            max_result=max_result,
            interceptors=interceptors,
            catalog_heartbeat=catalog_heartbeat,
        )
        self.breaker: CircuitBreaker = self.keeper.breaker

    @property
    def config(self) -> ServerConfig:
        return self.keeper.config

    @property
    def state(self) -> State:
        return self.keeper.state

    @property
    def session(self) -> UpstreamSession | None:
        """The live session, if there is one."""
        return self.keeper.session

    @property
    def tools(self) -> ToolSet | None:
        return self.keeper.tools

    @property
    def connects(self) -> int:
        """Connection attempts so far (tests count restarts with it)."""
        return self.keeper.connects

    @property
    def needs_auth(self) -> bool:
        return self.keeper.needs_auth

    @property
    def authorize_url(self) -> str | None:
        return self.keeper.authorize_url

    def start(self) -> None:
        self.keeper.start()

    async def stop(self) -> None:
        await self.keeper.stop()

    def reconfigurable(self, config: ServerConfig) -> bool:
        """True when `config` differs from ours only in what `reconfigure` applies without reconnecting."""
        live = ("tools", "timeout", "retries", "circuit_breaker", "namespace")
        current = self.keeper.config
        return config.model_copy(update={k: getattr(current, k) for k in live}) == current

    def relist(self) -> None:
        """List the server again soon, and publish what the listing interceptors leave of it."""
        self.keeper.relist()

    async def reconfigure(self, config: ServerConfig) -> None:
        """Apply new `tools` patterns, `timeout`, retries and breaker settings to the live session."""
        await self.keeper.reconfigure(config)

    # ------------------------------------------------------------------ calls (any task)

    async def call(self, call: ToolCall) -> CallOutcome:
        keeper = self.keeper
        budget = call_budget(call.timeout, keeper.config.timeout, time.time() - call.sent_at)
        if not keeper.policy.allows(call.tool):
            return refusal(call, ErrorKind.UNKNOWN_TOOL, f"server {self.name!r} has no tool {call.tool!r}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        tools = keeper.tools
        retries = keeper.config.retries if tools is not None and retry_safe(tools.definition(call.tool)) else 0
        active = _active_call(call.id, call.stream, call.client, call.meta, budget)
        with self.agents.running(active):
            outcome = await with_retries(
                lambda: self._attempt(call, deadline, budget, active),
                retries=retries,
                deadline=deadline,
                clock=loop.time,
            )
        if outcome.events != active.events:  # mostly both 0: no pydantic assignment then
            outcome.events = active.events
        return outcome

    async def request(self, request: UpstreamRequest) -> CallOutcome:
        """A routed request other than `tools/call`; never retried (reads are cheap to re-ask,
        but `resources/subscribe` bookkeeping must not run twice)."""
        budget = call_budget(request.timeout, self.keeper.config.timeout, time.time() - request.sent_at)
        deadline = asyncio.get_running_loop().time() + budget
        if not await self.keeper.settled(deadline):
            return _still_connecting(request, self.name)
        method, uri = request.method, request.params.get("uri")
        if method in ("resources/subscribe", "resources/unsubscribe") and isinstance(uri, str):
            return await self._subscription(request, uri, deadline, budget)
        active = _active_call(request.id, request.stream, request.client, request.params.get("_meta"), budget)
        context = CallContext(deadline, budget, active)
        with self.agents.running(active):
            outcome = await self._send(lambda session: session.request(request, context), request.id, method)
        outcome.events = active.events
        return outcome

    async def _subscription(self, request: UpstreamRequest, uri: str, deadline: float, budget: float) -> CallOutcome:
        """Subscribe upstream for the first agent session only, unsubscribe after the last one; a
        session that follows resources by one filter (2026-07-28) has that filter updated instead."""
        subscriber = request.subscriber or request.id
        session = self.keeper.session
        style = session.subscription_style if session is not None else "requests"
        if session is not None and style != "requests":
            return await self._follow(request, uri, subscriber, session, deadline)
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
        context = CallContext(deadline, budget)
        outcome = await self._send(lambda session: session.request(request, context), request.id, request.method)
        if outcome.error is not None and request.method == "resources/subscribe":
            holders.discard(subscriber)
            if not holders:
                self._subscriptions.pop(uri, None)
        return outcome

    async def _follow(
        self, request: UpstreamRequest, uri: str, subscriber: str, session: UpstreamSession, deadline: float
    ) -> CallOutcome:
        if session.subscription_style == "none":
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
        if not await session.follow(self._subscriptions, within) and request.method == "resources/subscribe":
            return _refused(
                request.id,
                ErrorKind.UPSTREAM_TIMEOUT,
                f"server {self.name!r} did not acknowledge the subscription in time",
            )
        return CallOutcome(id=request.id, result={}, decided_by="executor")

    async def _send(
        self, send: Callable[[UpstreamSession], Awaitable[CallOutcome]], request_id: str, method: str = "tools/call"
    ) -> CallOutcome:
        """Ask the breaker, send on the live session, tell the breaker how it went."""
        keeper = self.keeper
        session = keeper.session
        if session is None:  # known to be down: the reconnect loop, not a probe, finds out when it is back
            return _refused(request_id, ErrorKind.UPSTREAM_UNAVAILABLE, keeper.unavailable_reason())
        breaker = self.breaker
        if not breaker.allow():
            message = circuit_open_message(self.name, breaker.seconds_to_probe())
            return _refused(request_id, ErrorKind.CIRCUIT_OPEN, message)
        outcome: CallOutcome | None = None
        try:
            # the upstream request's `_meta.traceparent` names this span (`upstreams.mcp_calls`)
            with tracing.client_span("executor", f"upstream {self.name} {method}"):
                outcome = await send(session)
        finally:
            kind = None if outcome is None or outcome.error is None else outcome.error.kind
            if outcome is None or kind is ErrorKind.INTERNAL:
                breaker.release()  # cancelled, or our own bug: says nothing about the server
            elif kind in BREAKER_FAILURES:
                breaker.failure()
            else:
                breaker.success()
                keeper.succeeded()
        return outcome

    async def _attempt(self, call: ToolCall, deadline: float, budget: float, active: ActiveCall) -> CallOutcome:
        """One try: wait for a session, check the call, ask the breaker, send, tell the breaker."""
        keeper = self.keeper
        if not await keeper.settled(deadline):
            return _still_connecting(call, self.name)
        tools = keeper.tools
        if tools is not None:
            if call.tool not in tools:
                return refusal(call, ErrorKind.UNKNOWN_TOOL, f"server {self.name!r} has no tool {call.tool!r}")
            problem = tools.check_arguments(call.tool, call.arguments)
            if problem is not None:
                return refusal(call, ErrorKind.INVALID_ARGUMENTS, problem)
        context = CallContext(deadline, budget, active, self.lean_calls)
        return await self._send(lambda session: session.call_tool(call, context), call.id)


def _refused(request_id: str, kind: ErrorKind, message: str) -> CallOutcome:
    return CallOutcome(
        id=request_id, error=GatewayError(kind=kind, message=message), decided_by="executor", execution="not_run"
    )


def _still_connecting(request: ToolCall | UpstreamRequest, server: str) -> CallOutcome:
    return _refused(request.id, ErrorKind.UPSTREAM_UNAVAILABLE, f"server {server!r} is still connecting")


def _active_call(request_id: str, stream: str | None, client: list[str], meta: Any, budget: float) -> ActiveCall:
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return ActiveCall(
        request_id,
        stream,
        frozenset(client),
        time.monotonic() + budget,
        progress_token=token if isinstance(token, str | int) and not isinstance(token, bool) else None,
    )
