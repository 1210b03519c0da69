"""What one routed request carries past the steps of the call path.

(`Call`), and the calls in flight that an agent's cancellation can reach (`RunningCalls`)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

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
        "active",
        "budget",
        "cancelled",
        "cleared",
        "deadline",
        "in_flight",
        "intercepted",
        "msg",
        "outcome",
        "own_session",
        "request",
        "retries",
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
        self.retries = 0  # Budget: how often a lost connection may be tried again (a safe tool's)
        self.retry: RetryPlan | None = None  # Retry: made at the first retry only, most calls never need one
        self.subscribed: tuple[set[str], str] | None = None
        """Subscriptions: the agent sessions following a URI and the one just added, dropped
        again when the upstream refuses the subscription."""
        self.in_flight: dict[str, ActiveCall] | None = None
        """Budget: its agent link's calls in flight, which hold `active` until the call leaves the path."""

    def leave(self) -> None:
        """No longer in flight on its session, however it ended (again: nothing more)."""
        if self.in_flight is not None:
            self.in_flight.pop(self.request.id, None)
            self.in_flight = None


class RunningCalls:
    """Call id -> the call in flight, so an agent's cancellation can reach its task."""

    def __init__(self) -> None:
        self.calls: dict[str, Call] = {}
        """Admit enters a call, the runner removes it when it leaves the path (dict operations, no calls)."""

    def __len__(self) -> int:
        return len(self.calls)

    def cancel(self, call_id: str) -> bool:
        """Cancel the call `call_id` if it runs here; True when it did."""
        call = self.calls.get(call_id)
        if call is None or call.task is None or call.task.done():
            return False
        call.cancelled = True
        call.task.cancel()
        return True
