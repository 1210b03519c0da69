"""An interceptor chain's hooks around an upstream call, in the order the executor's call path
runs them (`call_path`: InterceptBefore, the upstream, InterceptAfter, ShapeAnswer)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.messages import CallOutcome, Routed
from services.executor.interceptors import InterceptorChain


async def through(
    chain: InterceptorChain, request: Routed, config: ServerConfig, upstream: Callable[[], Awaitable[CallOutcome]]
) -> CallOutcome:
    """`request` through `chain`'s before hooks, `upstream()` unless one refused, then the after hooks."""
    call, refused = await chain.before(request, config)
    outcome = refused if refused is not None else await chain.after(call, await upstream())
    if call.decisions:
        outcome.interceptions = call.decisions
    return outcome
