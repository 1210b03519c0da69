"""What one routed request carries past the steps of the call path.

(`Call`), and the calls in flight that an agent's cancellation can reach (`RunningCalls`)."""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg

from libs.common.contracts.messages import CallOutcome, Routed

from ..agents import ActiveCall
from ..interceptors.interface import InterceptedCall
from ..resilience import RetryPlan
from ..upstreams.interface import UpstreamSession

if TYPE_CHECKING:
    from ..upstream import Upstream

__all__ = ["Call", "RunningCalls"]


class Call:
    """One request on its way through the executor.

    Each attribute below `outcome` is set by the step named beside it before any later step reads it;
    `outcome` set means the request is answered, and only the steps behind the upstream still see it."""

    __slots__ = (
        "_leave",
        "active",
        "budget",
        "cancelled",
        "cleared",
        "deadline",
        "intercepted",
        "msg",
        "outcome",
        "own_session",
        "request",
        "retry",
        "session",
        "subscribed",
        "task",
        "upstream",
    )

    upstream: Upstream  # FindServer; OwnSession puts the calling user's own in its place
    budget: float  # Budget: seconds the upstream may take
    deadline: float  # Budget: event-loop time by which the answer is due
    session: UpstreamSession  # AskBreaker: the live session it is sent over

    def __init__(self, request: Routed, msg: Msg | None = None) -> None:
        self.request = request
        """As it came (its arguments fetched by `FetchArguments`, rewritten by `InterceptBefore`)."""
        self.msg = msg
        """The bus message it came in (None: handed over in process, e.g. by a test)."""
        self.outcome: CallOutcome | None = None
        self.task: asyncio.Task[object] | None = None  # Admit
        self.cancelled = False
        """The agent cancelled it (`RunningCalls.cancel`), as opposed to the executor stopping."""
        self.intercepted: InterceptedCall | None = None  # InterceptBefore: what the hooks see
        self.cleared = False  # InterceptBefore: every before hook let it through
        self.own_session: tuple[str, str] | None = None  # OwnSession: (server, user) of a per-user session
        self.active: ActiveCall | None = None  # Budget: the agent's side of it (None for bookkeeping)
        self.retry: RetryPlan | None = None  # Budget: how often a lost connection may be tried again
        self.subscribed: tuple[set[str], str] | None = None
        """Subscriptions: the agent sessions following a URI and the one just added, dropped
        again when the upstream refuses the subscription."""
        self._leave: list[AbstractContextManager[Any]] = []

    def hold(self, held: AbstractContextManager[Any]) -> None:
        """Enter `held` now; it is exited when the call leaves the path, however it ends."""
        held.__enter__()
        self._leave.append(held)

    def leave(self) -> None:
        while self._leave:
            self._leave.pop().__exit__(None, None, None)


class RunningCalls:
    """Call id -> the call in flight, so an agent's cancellation can reach its task."""

    def __init__(self) -> None:
        self._calls: dict[str, Call] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def enter(self, call: Call) -> None:
        self._calls[call.request.id] = call

    def exit(self, call: Call) -> None:
        if self._calls.get(call.request.id) is call:
            del self._calls[call.request.id]

    def cancel(self, call_id: str) -> bool:
        """Cancel the call `call_id` if it runs here; True when it did."""
        call = self._calls.get(call_id)
        if call is None or call.task is None or call.task.done():
            return False
        call.cancelled = True
        call.task.cancel()
        return True
