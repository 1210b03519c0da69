"""The interceptors in force, run in order at each hook point (`interface`).

The one place every request to an upstream, and every listing, passes through them.

The call path asks `on_calls` (one attribute) and calls `before` and `after` only when some
interceptor hooks calls; listings call `at_listing` only when `on_listings`. A hook that fails (a bug, not a
`Refused`) fails closed: the request is not sent, or its result is withheld, or the listing fails
and is retried like any other listing failure.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from nats.aio.client import Client as NATS

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import Caller, CallOutcome, Routed

from ..replies import refusal, undeliverable
from ..upstreams.interface import Features, Listing
from .interface import InterceptedCall, InterceptedListing, InterceptedMessage, Interceptor, Refused, Relist, Where

__all__ = ["InterceptorChain"]

log = logging.getLogger(__name__)

_METHODS_KEPT = 64
"""Methods whose after hooks are kept (MCP has a few dozen)."""


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
        """Run `interceptors` from now on.

        The new ones started first, the ones left out stopped after (a request already past one of them
        finishes with it)."""
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
        self._after_by_method: dict[str, tuple[Interceptor, ...]] = {}
        """Method -> the after hooks that read its results (`Interceptor.after_result_methods`), learnt per method."""
        self._listing = tuple(i for i in self.interceptors if _overrides(i, "at_listing"))
        self._messages = tuple(i for i in self.interceptors if _overrides(i, "at_message"))
        self.on_calls = bool(self._before or self._after)
        """Some interceptor hooks requests: the call path goes through `before` and `after`."""
        self.on_listings = bool(self._listing)

    async def before(self, request: Routed, config: ServerConfig) -> tuple[InterceptedCall, CallOutcome | None]:
        """The before hooks on `request`: what they saw (and decided), and their refusal if one refused.

        A rewrite of what it asks is applied to `request`."""
        original = request.payload
        call = InterceptedCall(
            request.server, config, request.rpc_method, request.asked_for, original, request.caller, request
        )
        for interceptor in self._before:
            try:
                await interceptor.before_call(call)
            except Refused as refused:
                _blocked(call, interceptor, refused, "arguments")
                return call, refusal(request, refused.kind, refused.message)
            except Exception:
                log.exception("interceptor %s failed before a call to %s; not sent", interceptor.name, call.server)
                message = f"the gateway's {interceptor.name} check failed; the request was not sent"
                return call, refusal(request, ErrorKind.INTERNAL, message)
        if call.arguments is not original:
            request.replace_payload(call.arguments)
        return call, None

    async def after(self, call: InterceptedCall, outcome: CallOutcome) -> CallOutcome:
        """The after hooks on what the upstream answered for `call` (which `before` let through).

        An error's text is checked like a message, a result by each hook in turn."""
        if outcome.error is not None and self._messages:
            await self._guard_error(call, outcome)
        if outcome.result is not None and self._after:
            hooks = self._after_by_method.get(call.method)
            if hooks is None:
                hooks = self._after_for(call.method)
            result: dict[str, Any] = outcome.result
            for interceptor in hooks:
                try:
                    result = await interceptor.after_result(call, result)
                except Refused as refused:
                    _blocked(call, interceptor, refused, "result")
                    return undeliverable(outcome, refused.kind, refused.message)
                except Exception:
                    log.exception("interceptor %s failed on a result of %s; withheld", interceptor.name, call.server)
                    message = (
                        f"the gateway's {interceptor.name} check failed on the result; the request did run upstream"
                    )
                    return undeliverable(outcome, ErrorKind.INTERNAL, message)
            if result is not outcome.result:  # a pydantic assignment costs ~0.25 µs: none when nothing changed
                outcome.result = result
        return outcome

    def _after_for(self, method: str) -> tuple[Interceptor, ...]:
        hooks = tuple(i for i in self._after if i.after_result_methods is None or method in i.after_result_methods)
        if len(self._after_by_method) < _METHODS_KEPT:  # methods are a closed set; a bound all the same
            self._after_by_method[method] = hooks
        return hooks

    async def outgoing(
        self, server: str, channel: str, payload: dict[str, Any], caller: Caller | None = None
    ) -> dict[str, Any] | None:
        """`payload` as the message hooks leave it.

        Or None when one withheld it (or failed: nothing unchecked reaches the agent)."""
        message = InterceptedMessage(server, channel, payload, caller)
        for interceptor in self._messages:
            try:
                message.payload = await interceptor.at_message(message)
            except Refused as refused:
                log.info("server %s: %s withheld a %s (rule %s)", server, interceptor.name, channel, refused.rule)
                return None
            except Exception:
                log.exception("interceptor %s failed on a %s of %s; withheld", interceptor.name, channel, server)
                return None
        return message.payload

    async def _guard_error(self, call: InterceptedCall, outcome: CallOutcome) -> None:
        """An error's text is the upstream's own words too: checked like a message, replaced when withheld."""
        error = outcome.error
        assert error is not None
        said = {"message": error.message, "data": error.data}
        checked = await self.outgoing(call.server, "error", said, call.caller)
        if checked is None:
            outcome.error = error.model_copy(
                update={"message": "the upstream's error was withheld by the gateway's checks", "data": None}
            )
        elif checked is not said:
            outcome.error = error.model_copy(update={"message": checked["message"], "data": checked["data"]})

    async def at_listing(self, server: str, config: ServerConfig, listing: Listing, user: str | None = None) -> Listing:
        """`listing` as the listing hooks leave it; their decisions are logged.

        `user`: the listing of that user's own session to a per-user server. A hook that raises fails
        the listing (nothing unchecked is published)."""
        features = listing.features
        view = InterceptedListing(
            server,
            config,
            list(listing.tools),
            list(features.prompts),
            list(features.resources),
            list(features.resource_templates),
            skills=list(features.skills),
            apps=list(features.apps),
            aliases=dict(listing.aliases),
            user=user,
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
            Features(
                features.capabilities,
                view.prompts,
                view.resources,
                view.resource_templates,
                view.withheld_prompts,
                view.withheld_templates,
                view.skills,
                view.apps,
            ),
            tuple(view.withheld),
            view.aliases,
        )


async def _stop(interceptors: Iterable[Interceptor]) -> None:
    for interceptor in interceptors:
        try:
            await interceptor.stop()
        except Exception:
            log.exception("interceptor %s failed to stop", interceptor.name)


def _blocked(call: InterceptedCall, interceptor: Interceptor, refused: Refused, where: Where) -> None:
    call.decide(interceptor.name, refused.rule, "block", where, refused.detail)
