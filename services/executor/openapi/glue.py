"""Interim glue: the `openapi` kind inside today's `Upstream`, until the executor chooses kinds by a
registry (`upstreams/registry.py`, where `OpenApiConnector` becomes one more entry and this module goes).

`OpenApiUpstream` keeps everything `Upstream` does for any server (the connection task, reconnect
backoff, catalog publishing, the circuit breaker, argument checks, retries of idempotent tools) and
replaces only what speaks MCP: opening a session, listing, health checks and sending a call.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, cast

import anyio
import httpx2

from libs.common.errors import ErrorKind
from libs.common.messages import CallOutcome, ToolCall, UpstreamRequest

from ..agents import ActiveCall
from ..connection import State
from ..outcomes import answer_cutoff, refusal
from ..tools import ToolSet
from ..transports import http_client
from ..upstream import Upstream
from .upstream import OpenApiConnector, OpenApiSession

__all__ = ["OpenApiUpstream"]


class OpenApiUpstream(Upstream):
    """One REST API as the executor's upstream."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rest: OpenApiSession | None = None
        self._connector = OpenApiConnector(
            self.name,
            self.config,
            connect_timeout=self._connect_timeout,
            make_client=self._client,
            oauth=self._oauth,
            on_list_changed=self._changes_announced,
        )

    def _client(self, headers: dict[str, str], timeout: httpx2.Timeout, auth: httpx2.Auth | None) -> httpx2.AsyncClient:
        cutoff = answer_cutoff(self._max_result) if self._max_result is not None else None
        return http_client(headers, timeout, auth, self._on_unauthorized, cutoff)

    async def _serve_session(self) -> None:
        self._closed = self._relist = self._attempt_unauthorized = False
        self._ready_at = None
        self.connects += 1
        timeout = self._connect_timeout
        with anyio.CancelScope(deadline=anyio.current_time() + timeout) as connect_scope:
            async with self._connector.open() as session:
                await self._list(session)
                connect_scope.deadline = math.inf
                self._rest = session
                self._session = cast(Any, session)  # `_send` asks only whether there is one
                self._ready_at = time.monotonic()
                self._last_ok = asyncio.get_running_loop().time()
                self._unauthorized = False
                self._set_state(State.READY)
                await self._catalog.publish("ready")
                try:
                    await self._watch(cast(Any, session))
                finally:
                    self._session = self._rest = None
        if connect_scope.cancelled_caught and self._ready_at is None:
            raise TimeoutError(f"the OpenAPI document was not read within {timeout:g} seconds")

    async def _list(self, session: OpenApiSession) -> None:
        self._listed = await session.list_tools()
        self.tools = ToolSet(self._listed, self._policy, previous=self.tools)

    async def _refresh_tools(self, session: Any) -> None:
        if self._rest is not None:
            await self._list(self._rest)

    async def _ping(self, session: Any) -> bool:
        probe = self.breaker.allow()
        rest = self._rest
        problem = await rest.ping(max(self._health_interval, 1.0)) if rest is not None else "no session"
        if problem is None:
            self._last_ok = asyncio.get_running_loop().time()
        if probe:
            self.breaker.failure() if problem is not None else self.breaker.success()
        return True  # a REST API's outage is the breaker's business: the document stays listed

    async def request(self, request: UpstreamRequest) -> CallOutcome:
        rest = self._rest
        if rest is None:
            return refusal(request, ErrorKind.UPSTREAM_UNAVAILABLE, self._unavailable_reason())
        return await rest.request(request)

    async def _attempt(self, call: ToolCall, deadline: float, budget: float, active: ActiveCall) -> CallOutcome:
        if (refused := await self._session_problem(call, deadline)) is not None:
            return refused
        tools = self.tools
        if tools is not None:
            if call.tool not in tools:
                return refusal(call, ErrorKind.UNKNOWN_TOOL, f"server {self.name!r} has no tool {call.tool!r}")
            problem = tools.check_arguments(call.tool, call.arguments)
            if problem is not None:
                return refusal(call, ErrorKind.INVALID_ARGUMENTS, problem)
        rest = self._rest
        if rest is None:
            return refusal(call, ErrorKind.UPSTREAM_UNAVAILABLE, self._unavailable_reason())
        return await self._send(lambda _session: rest.call_tool(call, deadline, budget), call.id)
