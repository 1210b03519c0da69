"""The steps ahead of the upstream.

Is the call still wanted, what does it carry, which server answers it, do the interceptors let it
through, over whose session, and within what time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING

import orjson

from libs.common.bus.acknowledger import Acknowledger, too_late
from libs.common.bus.blobs import Blobs
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CallOutcome

from ..agents import ActiveCall
from ..budgets import call_budget
from ..error_mapping import describe_exception
from ..interceptors.chain import InterceptorChain
from ..replies import refusal
from .state import Call, RunningCalls

if TYPE_CHECKING:
    from ..upstream import Upstream
    from ..user_sessions import UserSessions

__all__ = ["Admit", "Budget", "FetchArguments", "FindServer", "InterceptBefore", "OwnSession"]


class Admit:
    """Run it only while its requester still waits.

    Policy has failed a call that reached a paused or overloaded executor late, and running it now would
    do what the agent was told had failed. An admitted call can be cancelled by its agent from here on."""

    def __init__(self, running: RunningCalls, acks: Acknowledger | None = None) -> None:
        self.running, self.acks = running, acks

    def __call__(self, call: Call) -> None:
        request = call.request
        late = call.msg is not None and self.acks is not None and not self.acks.admit(call.msg)
        if late or time.time() >= request.deadline:
            call.outcome = too_late(request.id, "executor")
            return
        call.task = asyncio.current_task()
        self.running.calls[request.id] = call


class FetchArguments:
    """Arguments too large for one bus message came through the object store: fetch them."""

    def __init__(self, blobs: Blobs | None, limit: int) -> None:
        self.blobs, self.limit = blobs, limit

    def __call__(self, call: Call) -> Awaitable[None] | None:
        return None if call.request.arguments_blob is None else self._fetch(call)

    async def _fetch(self, call: Call) -> None:
        name = call.request.arguments_blob
        assert name is not None
        try:
            assert self.blobs is not None, "no object store to fetch arguments from"
            arguments = orjson.loads(await self.blobs.take(name, self.limit))
            if not isinstance(arguments, dict):
                raise ValueError("the stored arguments are not an object")
        except Exception as exc:
            problem = f"the call's arguments could not be fetched: {describe_exception(exc)}"
            call.outcome = refusal(call.request, ErrorKind.GATEWAY_UNAVAILABLE, problem)
            return
        call.request.replace_payload(arguments)


class FindServer:
    """The server it names, among those this executor runs."""

    def __init__(self, upstreams: Mapping[str, Upstream]) -> None:
        self.upstreams = upstreams

    def __call__(self, call: Call) -> None:
        server = call.request.server
        upstream = self.upstreams.get(server)
        if upstream is None:
            call.outcome = refusal(call.request, ErrorKind.UNKNOWN_TOOL, f"no server named {server!r} is configured")
            return
        call.upstream = upstream


class InterceptBefore:
    """The interceptors' before hooks (deny lists, guardrails, pinned schemas).

    Each may refuse the request or rewrite what it asks."""

    def __init__(self, chain: InterceptorChain) -> None:
        self.chain = chain

    async def __call__(self, call: Call) -> None:
        # a coroutine itself: without hooks on calls it costs what a step deciding at once does (one
        # call), with them one call less than handing back a helper's coroutine
        if self.chain.on_calls:
            call.intercepted, call.outcome = await self.chain.before(call.request, call.upstream.config)
            call.cleared = call.outcome is None


class OwnSession:
    """A `per_user` server is never called over its shared session: the calling user's own, or none."""

    def __init__(self, users: UserSessions | None) -> None:
        self.users = users

    def __call__(self, call: Call) -> None:
        if self.users is None or not call.upstream.config.per_user:
            return
        own = self.users.session_for(call.upstream, call.request)
        if isinstance(own, CallOutcome):
            call.outcome = own
            return
        call.own_session, call.upstream = own


class Budget:
    """The time the upstream may take, whether the tool is exposed at all.

    How often a lost connection may be tried again, and the agent's side of the call (progress, logs,
    questions). What a tool allows is read off its listed entry (`tools.ToolEntry`), decided once per
    listing; the agent's side is entered in its link's calls directly (no context manager per call)."""

    def __call__(self, call: Call) -> None:
        request, upstream = call.request, call.upstream
        config = upstream.config
        call.budget = budget = call_budget(request.timeout, config.timeout, time.time() - request.sent_at)
        task = call.task  # `Admit`'s: its loop is the running one, asked for without a `getpid` (3.11's lookup)
        call.deadline = (task.get_loop() if task is not None else asyncio.get_running_loop()).time() + budget
        tool = request.tool_name
        if tool is not None:
            tools = upstream.tools  # replaced together with the policy: a listed tool is an exposed one
            entry = tools.entries.get(tool) if tools is not None else None
            if entry is None and not upstream.policy.allows(tool):
                message = f"server {upstream.name!r} has no tool {tool!r}"
                call.outcome = refusal(request, ErrorKind.UNKNOWN_TOOL, message)
                return
            if entry is not None and entry.retry_safe:
                call.retries = config.retries  # the plan itself is made at a first retry (`Retry`)
        if request.subscription is None:  # bookkeeping requests have no agent side
            meta = request.agent_meta
            token = meta.get("progressToken") if isinstance(meta, dict) else None
            call.active = active = ActiveCall(
                request.id,
                request.stream,
                frozenset(request.client),
                time.monotonic() + budget,
                progress_token=token if isinstance(token, str | int) and not isinstance(token, bool) else None,
                caller=request.caller,
            )
            call.in_flight = in_flight = upstream.agents.calls
            in_flight[request.id] = active
