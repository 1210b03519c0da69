"""The machinery of the call path.

What a step is (`Step`), and the runner that takes one call through the steps in order (`CallPath`).

Unlike the ingress's `/mcp` chain, no step holds the next one: a step gets the call (`state.Call`),
reads what earlier steps set on it, and sets its own part, or its `outcome` when it answers the
call. The runner walks three lists: the steps ahead of the upstream, while nothing answered; one
try at the upstream, again as often as the retry policy says; and the steps behind it, which see
every answer the tries ended with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Protocol

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CallOutcome

from ..replies import refusal
from .state import Call, RunningCalls

__all__ = ["CallPath", "Step"]

log = logging.getLogger(__name__)


class Step(Protocol):
    """One named stage of the path: reads and sets `call`, or answers it (`call.outcome`).

    A step that has to wait returns what to await (a coroutine); one that decided at once returns None,
    so a call costs an await only where something is awaited (as the ingress's `Check`s). A step with a
    `methods` attribute (a frozenset) is met only by requests of those methods (`CallPath` keeps each
    method's steps): the others cost it nothing."""

    def __call__(self, call: Call) -> Awaitable[None] | None: ...


_ROUTES_KEPT = 64
"""Methods whose steps are kept (MCP has a few dozen; any other is routed afresh each time)."""

Route = tuple[tuple[Step, ...], tuple[Step, ...], tuple[Step, ...]]
"""The steps one method's requests meet: ahead, one try, behind."""


def _meets(step: Step, method: str) -> bool:
    methods: frozenset[str] | None = getattr(step, "methods", None)
    return methods is None or method in methods


class CallPath:
    """`ahead`, then `attempt` (tried again while `retry` clears the outcome), then `behind`."""

    def __init__(
        self,
        ahead: Sequence[Step],
        attempt: Sequence[Step],
        retry: Step,
        behind: Sequence[Step],
        running: RunningCalls | None = None,
    ) -> None:
        self.ahead, self.attempt, self.retry, self.behind = tuple(ahead), tuple(attempt), retry, tuple(behind)
        self.running = running if running is not None else RunningCalls()
        """Calls in flight, by id: an agent's cancellation reaches them (`RunningCalls.cancel`)."""
        self._routes: dict[str, Route] = {}

    def route(self, method: str) -> Route:
        """The steps a request of `method` meets (those without `methods`, and those naming it)."""
        found = self._routes.get(method)
        if found is None:
            found = (
                tuple(s for s in self.ahead if _meets(s, method)),
                tuple(s for s in self.attempt if _meets(s, method)),
                tuple(s for s in self.behind if _meets(s, method)),
            )
            if len(self._routes) < _ROUTES_KEPT:
                self._routes[method] = found
        return found

    @property
    def steps(self) -> tuple[Step, ...]:
        """Every step, in the order a call meets them."""
        return (*self.ahead, *self.attempt, self.retry, *self.behind)

    async def run(self, call: Call) -> CallOutcome:
        """Take `call` through the path; its outcome, whatever happened on the way.

        One frame walks all three lists (the tries inlined, no helper coroutine per call): each frame is
        a Python call, and a coroutine's another each time it resumes."""
        method = call.request.rpc_method
        ahead, attempt, behind = self._routes.get(method) or self.route(method)
        try:
            try:
                for step in ahead:
                    if (waiting := step(call)) is not None:
                        await waiting
                    if call.outcome is not None:
                        break
                else:
                    while call.outcome is None:
                        for step in attempt:
                            if (waiting := step(call)) is not None:
                                await waiting
                            if call.outcome is not None:
                                break
                        outcome = call.outcome  # answered without an error: final, no retry to ask
                        if outcome is not None and outcome.error is not None and (waiting := self.retry(call)):
                            await waiting  # it cleared the outcome, after its pause, for one more try
            except Exception:
                log.exception("request %s to %s failed unexpectedly", call.request.id, call.request.server)
                call.outcome = refusal(call.request, ErrorKind.INTERNAL, "unexpected executor failure", "may_have_run")
            for step in behind:  # each decides whether the answer is one of its own
                if (waiting := step(call)) is not None:
                    await waiting
        except asyncio.CancelledError:
            if not call.cancelled:
                raise  # the executor is stopping
            assert call.task is not None
            call.task.uncancel()
            return refusal(call.request, ErrorKind.CANCELLED, "the agent cancelled the request", "may_have_run")
        finally:
            call.leave()  # again when LeaveSession left already: nothing more
            if self.running.calls.get(call.request.id) is call:
                del self.running.calls[call.request.id]
        assert call.outcome is not None
        return call.outcome
