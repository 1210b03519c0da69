"""The interceptors in force, run in order at each hook point (`interface`): the one place every
request to an upstream, and every listing, passes through them.

The request path asks `on_calls` (one attribute) and calls `run` only when some interceptor hooks
calls; listings call `at_listing` only when `on_listings`. A hook that fails (a bug, not a
`Refused`) fails closed: the request is not sent, or its result is withheld, or the listing fails
and is retried like any other listing failure.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from nats.aio.client import Client as NATS

from libs.common.config import ServerConfig
from libs.common.errors import ErrorKind
from libs.common.messages import CallOutcome, InterceptorDecision, ToolCall, UpstreamRequest

from ..replies import refusal, undeliverable
from ..upstreams.interface import Features, Listing
from .interface import InterceptedCall, InterceptedListing, Interceptor, Refused, Relist, Where

__all__ = ["InterceptorChain"]

log = logging.getLogger(__name__)


def _overrides(interceptor: Interceptor, hook: str) -> bool:
    return getattr(type(interceptor), hook) is not getattr(Interceptor, hook)


class InterceptorChain:
    """An ordered list of interceptors; replace it whole with `set` (a configuration change)."""

    def __init__(self, interceptors: Sequence[Interceptor] = ()) -> None:
        self._nc: NATS | None = None
        self.on_relist: Relist | None = None
        """The executor's: lists a server again (an interceptor asks through `Interceptor.relist`)."""
        self.set(interceptors)

    def _relist(self, server: str) -> None:
        if self.on_relist is not None:
            self.on_relist(server)

    async def _start(self, interceptor: Interceptor, nc: NATS) -> None:
        interceptor.relist = self._relist
        await interceptor.start(nc)

    async def start(self, nc: NATS) -> None:
        """Start every interceptor (`Interceptor.start`), and those `replace` adds from now on."""
        self._nc = nc
        for interceptor in self.interceptors:
            await self._start(interceptor, nc)

    async def stop(self) -> None:
        self._nc = None
        await _stop(self.interceptors)

    async def replace(self, interceptors: Sequence[Interceptor]) -> None:
        """Run `interceptors` from now on: the new ones started first, the ones left out stopped after
        (a request already past one of them finishes with it)."""
        old = self.interceptors
        if self._nc is None:  # not started: nothing to start or stop yet
            self.set(interceptors)
            return
        for interceptor in interceptors:
            if interceptor not in old:
                await self._start(interceptor, self._nc)
        self.set(interceptors)
        await _stop(i for i in old if i not in interceptors)

    def set(self, interceptors: Sequence[Interceptor]) -> None:
        self.interceptors = tuple(interceptors)
        self._before = tuple(i for i in self.interceptors if _overrides(i, "before_call"))
        self._after = tuple(i for i in self.interceptors if _overrides(i, "after_result"))
        self._listing = tuple(i for i in self.interceptors if _overrides(i, "at_listing"))
        self.on_calls = bool(self._before or self._after)
        """Some interceptor hooks requests: the request path goes through `run`."""
        self.on_listings = bool(self._listing)

    async def run(
        self, request: ToolCall | UpstreamRequest, config: ServerConfig, execute: Callable[[], Awaitable[CallOutcome]]
    ) -> CallOutcome:
        """The before hooks, then `execute()` (the upstream call), then the after hooks on its result;
        the decisions made on the way ride on the outcome."""
        call, original = _intercepted(request, config)
        for interceptor in self._before:
            try:
                await interceptor.before_call(call)
            except Refused as refused:
                _blocked(call, interceptor, refused, "arguments")
                return _with(refusal(request, refused.kind, refused.message), call.decisions)
            except Exception:
                log.exception("interceptor %s failed before a call to %s; not sent", interceptor.name, call.server)
                message = f"the gateway's {interceptor.name} check failed; the request was not sent"
                return _with(refusal(request, ErrorKind.INTERNAL, message), call.decisions)
        if call.arguments is not original:
            _rewrite(request, call.arguments)
        outcome = await execute()
        if outcome.result is not None and self._after:
            result: dict[str, Any] = outcome.result
            for interceptor in self._after:
                try:
                    result = await interceptor.after_result(call, result)
                except Refused as refused:
                    _blocked(call, interceptor, refused, "result")
                    return _with(undeliverable(outcome, refused.kind, refused.message), call.decisions)
                except Exception:
                    log.exception("interceptor %s failed on a result of %s; withheld", interceptor.name, call.server)
                    message = (
                        f"the gateway's {interceptor.name} check failed on the result; the request did run upstream"
                    )
                    return _with(undeliverable(outcome, ErrorKind.INTERNAL, message), call.decisions)
            if result is not outcome.result:  # a pydantic assignment costs ~0.25 µs: none when nothing changed
                outcome.result = result
        return _with(outcome, call.decisions)

    async def at_listing(self, server: str, config: ServerConfig, listing: Listing) -> Listing:
        """`listing` as the listing hooks leave it; their decisions are logged. A hook that raises
        fails the listing (nothing unchecked is published)."""
        features = listing.features
        view = InterceptedListing(
            server,
            config,
            list(listing.tools),
            list(features.prompts),
            list(features.resources),
            list(features.resource_templates),
        )
        for interceptor in self._listing:
            await interceptor.at_listing(view)
        for decision in view.decisions:
            log.info(
                "server %s: %s %s (%s, rule %s)",
                server,
                decision.interceptor,
                decision.action,
                decision.detail or "a definition",
                decision.rule,
            )
        return Listing(
            view.tools,
            Features(features.capabilities, view.prompts, view.resources, view.resource_templates),
            tuple(view.withheld),
        )


async def _stop(interceptors: Iterable[Interceptor]) -> None:
    for interceptor in interceptors:
        try:
            await interceptor.stop()
        except Exception:
            log.exception("interceptor %s failed to stop", interceptor.name)


def _intercepted(request: ToolCall | UpstreamRequest, config: ServerConfig) -> tuple[InterceptedCall, dict[str, Any]]:
    if isinstance(request, ToolCall):
        arguments = request.arguments
        return InterceptedCall(
            request.server, config, "tools/call", request.tool, arguments, request.caller, request
        ), arguments
    params = {k: v for k, v in request.params.items() if k != "_meta"}
    return InterceptedCall(
        request.server, config, request.method, request.target, params, request.caller, request
    ), params


def _rewrite(request: ToolCall | UpstreamRequest, arguments: dict[str, Any]) -> None:
    if isinstance(request, ToolCall):
        request.arguments = arguments
        return
    meta = request.params.get("_meta")
    request.params = {**arguments, "_meta": meta} if meta is not None else dict(arguments)


def _blocked(call: InterceptedCall, interceptor: Interceptor, refused: Refused, where: Where) -> None:
    call.decide(interceptor.name, refused.rule, "block", where, refused.detail)


def _with(outcome: CallOutcome, decisions: list[InterceptorDecision]) -> CallOutcome:
    if decisions:
        outcome.interceptions = decisions
    return outcome
