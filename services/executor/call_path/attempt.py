"""One try at the upstream.

Wait for its session, check the arguments against the listed schema, keep resource subscriptions, ask the
breaker, send; and the retry policy that decides whether a try whose connection failed is made again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, ClassVar

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CallOutcome
from libs.common.runtime import semconv, tracing

from ..replies import refusal
from ..resilience import BREAKER_FAILURES, RetryPlan, circuit_open_message
from ..upstream import State
from ..upstreams.interface import CallContext, UpstreamSession
from .state import Call

__all__ = ["SUBSCRIBING", "AskBreaker", "CheckArguments", "Retry", "Send", "Settle", "Subscriptions"]

SUBSCRIBING: frozenset[str] = frozenset({"resources/subscribe", "resources/unsubscribe"})
"""The methods whose requests are subscription bookkeeping (`Subscriptions`, `KeepSubscriptions`)."""


class Settle:
    """While a connection attempt is under way, wait for it (until the call's deadline)."""

    def __call__(self, call: Call) -> Awaitable[None] | None:
        return self._wait(call) if call.upstream.state is State.CONNECTING else None

    async def _wait(self, call: Call) -> None:
        if not await call.upstream.settled(call.deadline):
            message = f"server {call.upstream.name!r} is still connecting"
            call.outcome = refusal(call.request, ErrorKind.UPSTREAM_UNAVAILABLE, message)


class CheckArguments:
    """A tool the server lists, with arguments its schema accepts (as pinned, when pinning rewrote the listing).

    Refused here, not by the server, naming the fields and the rules they break, never the values
    (`argument_rules`)."""

    def __call__(self, call: Call) -> None:
        tool, tools = call.request.tool_name, call.upstream.tools
        if tool is None or tools is None:
            return
        entry = tools.entries.get(tool)
        if entry is None:
            message = f"server {call.upstream.name!r} has no tool {tool!r}"
            call.outcome = refusal(call.request, ErrorKind.UNKNOWN_TOOL, message)
            return
        problem = tools.check_arguments(tool, call.request.payload)
        if problem is None:
            return
        if not call.upstream.settings.validation_values:
            call.outcome = refusal(call.request, ErrorKind.INVALID_ARGUMENTS, problem)
            return
        # the agent asked to see its values quoted (BASTION_VALIDATION_VALUES); the audit row never does
        quoted = tools.check_arguments(tool, call.request.payload, values=True) or problem
        call.outcome = refusal(call.request, ErrorKind.INVALID_ARGUMENTS, quoted, logged=problem)


def _acknowledged(request_id: str) -> CallOutcome:
    return CallOutcome(id=request_id, result={}, decided_by="executor")


class Subscriptions:
    """`resources/(un)subscribe` is bookkeeping shared by the agent sessions following a URI.

    The upstream is subscribed for the first one only and unsubscribed after the last; a session that
    follows resources by one filter (2026-07-28) has that filter updated instead."""

    methods: ClassVar[frozenset[str]] = SUBSCRIBING

    def __call__(self, call: Call) -> Awaitable[None] | None:
        return None if call.request.subscription is None else self._keep(call)

    async def _keep(self, call: Call) -> None:
        request, upstream = call.request, call.upstream
        uri = request.subscription
        assert uri is not None
        subscriber = request.subscriber or request.id
        subscribe = request.rpc_method == "resources/subscribe"
        session = upstream.session
        if session is not None and session.subscription_style != "requests":
            call.outcome = await _follow(call, uri, subscriber, session)
            return
        following = upstream.subscriptions
        holders = following.setdefault(uri, set())
        if subscribe:
            first = not holders
            holders.add(subscriber)
            if not first:
                call.outcome = _acknowledged(request.id)
                return
            call.subscribed = (holders, subscriber)
        else:
            holders.discard(subscriber)
            if holders:
                call.outcome = _acknowledged(request.id)
                return
            following.pop(uri, None)


async def _follow(call: Call, uri: str, subscriber: str, session: UpstreamSession) -> CallOutcome:
    request, upstream = call.request, call.upstream
    if session.subscription_style == "none":
        message = f"server {upstream.name!r} does not support resource subscriptions"
        return refusal(request, ErrorKind.UPSTREAM_ERROR, message)
    following = upstream.subscriptions
    subscribe = request.rpc_method == "resources/subscribe"
    if subscribe:
        following.setdefault(uri, set()).add(subscriber)
    elif (holders := following.get(uri)) is not None:
        holders.discard(subscriber)
        if not holders:
            del following[uri]
    within = max(call.deadline - asyncio.get_running_loop().time(), 0.0)
    if not await session.follow(following, within) and subscribe:
        message = f"server {upstream.name!r} did not acknowledge the subscription in time"
        return refusal(request, ErrorKind.UPSTREAM_TIMEOUT, message)
    return _acknowledged(request.id)


class AskBreaker:
    """A live session, and a circuit breaker that lets the call through.

    A server known to be down is not probed by calls: its reconnect loop finds out when it is back."""

    def __call__(self, call: Call) -> None:
        upstream = call.upstream
        session = upstream.session
        if session is None:
            call.outcome = refusal(call.request, ErrorKind.UPSTREAM_UNAVAILABLE, upstream.unavailable_reason())
            return
        breaker = upstream.breaker
        if not breaker.allow():
            message = circuit_open_message(upstream.name, breaker.seconds_to_probe())
            call.outcome = refusal(call.request, ErrorKind.CIRCUIT_OPEN, message)
            return
        call.session = session


class Send:
    """Send it on the session and tell the breaker how it went.

    The request is a CLIENT span and an `mcp.client.operation.duration` sample (`semconv`); its
    `_meta.traceparent` names the span."""

    async def __call__(self, call: Call) -> None:
        request, upstream, session = call.request, call.upstream, call.session
        method, tool = request.rpc_method, request.tool_name
        context = CallContext(call.deadline, call.budget, call.active, upstream.lean_calls)
        outcome: CallOutcome | None = None
        version = session.protocol_version
        started = time.perf_counter()
        try:
            if tracing.enabled():
                config = upstream.config
                name, attributes = semconv.upstream_started(
                    method, tool, request.id, version, config.transport, config.url
                )
            else:
                name, attributes = method, None
            with tracing.client_span("executor", name, attributes) as span:
                try:
                    outcome = await request.send(session, context)
                finally:
                    _finished(span, method, tool, version, outcome, time.perf_counter() - started)
        finally:
            breaker = upstream.breaker
            kind = None if outcome is None or outcome.error is None else outcome.error.kind
            if outcome is None or kind is ErrorKind.INTERNAL:
                breaker.release()  # cancelled, or our own bug: says nothing about the server
            elif kind in BREAKER_FAILURES:
                breaker.failure()
            else:
                breaker.success()
                upstream.succeeded()
        call.outcome = outcome


class Retry:
    """A try whose connection failed is made again, after a backoff.

    While the call's `RetryPlan` allows (a tool the server says is safe to run twice, time left before
    the deadline)."""

    def __call__(self, call: Call) -> Awaitable[None] | None:
        outcome = call.outcome
        if outcome is None or outcome.error is None:
            return None  # answered: the usual case, decided without a plan
        plan = call.retry
        if plan is None:
            if call.retries <= 0:
                return None
            loop = asyncio.get_running_loop()
            # made at the first retry, measuring from there the time left, as a plan made ahead would
            plan = call.retry = RetryPlan(call.retries, call.deadline, loop.time)
        pause = plan.pause(outcome)
        return None if pause is None else self._again(call, pause)

    async def _again(self, call: Call, pause: float) -> None:
        await asyncio.sleep(pause)
        call.outcome = None


def _finished(
    span: Any, method: str, tool: str | None, version: str | None, outcome: CallOutcome | None, seconds: float
) -> None:
    if outcome is None:  # cancelled: the call was abandoned, not answered
        semconv.upstream_finished(span, method, tool, version, "cancelled", False, None, seconds)
        return
    error = outcome.error
    kind, code = (None, None) if error is None else (error.kind.value, error.code)
    # `is_error` is set once the result is shaped for the wire; here the upstream's own flag says it
    result = outcome.result
    tool_error = outcome.is_error or (result is not None and result.get("isError") is True)
    semconv.upstream_finished(span, method, tool, version, kind, tool_error, code, seconds)
