"""The executor's call path.

Every routed request (`tools/call`, `prompts/get`, `resources/read`, ...) policy allowed goes through the
same named steps, in this order (`call_path`):

ahead of the upstream (`ahead`), while nothing answered the call:
  Admit            its requester still waits for it (deadline, lost requester); cancellable from here
  FetchArguments   arguments too large for one bus message come from the object store
  FindServer       the server it names runs here
  InterceptBefore  the interceptors' before hooks: refuse, or rewrite what it asks
  OwnSession       a `per_user` server: the calling user's own session
  Budget           its time, the tool exposed, its retry plan, the agent's side of it
one try at the upstream (`attempt`), made again while `Retry` says:
  Settle           a connection under way is waited for
  CheckArguments   a listed tool, with arguments its (pinned) schema accepts
  Subscriptions    `resources/(un)subscribe` bookkeeping shared by the agents following a URI
  AskBreaker       a live session, and a closed (or probing) circuit breaker
  Send             over the session; the breaker hears how it went
  Retry            a lost connection is tried again, after a backoff, within the deadline
behind it (`behind`), each looking at the answer:
  LeaveSession     no longer in flight; the events its agent got
  KeepSubscriptions a refused subscription is not kept
  SignInLink       a per-user session without a token answers with its user's sign-in link
  InterceptAfter   the interceptors' after hooks on the result
  GatewayUris      ui:// and skill:// URIs in the answer named as agents know them
  ShapeAnswer      the decisions made on the way ride on the answer

A step is a small object holding what it needs (`Step`), given the call's state (`Call`); no step
calls the next. `CallPath.run` takes one call through them (`runner`): through the steps of its method
(`CallPath.route`: the subscription steps meet `resources/(un)subscribe` only, `GatewayUris` the methods
whose answers name URIs), asking `Retry` only after a try that ended in an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from libs.common.bus.acknowledger import Acknowledger
from libs.common.bus.blobs import Blobs

from ..interceptors.chain import InterceptorChain
from .ahead import Admit, Budget, FetchArguments, FindServer, InterceptBefore, OwnSession
from .attempt import AskBreaker, CheckArguments, Retry, Send, Settle, Subscriptions
from .behind import GatewayUris, InterceptAfter, KeepSubscriptions, LeaveSession, ShapeAnswer, SignInLink
from .runner import CallPath, Step
from .state import Call, RunningCalls

if TYPE_CHECKING:
    from ..upstream import Upstream
    from ..user_sessions import UserSessions

__all__ = ["Call", "CallPath", "RunningCalls", "Step", "call_path"]


def call_path(
    upstreams: Mapping[str, Upstream],
    *,
    interceptors: InterceptorChain | None = None,
    users: UserSessions | None = None,
    blobs: Blobs | None = None,
    max_arguments: int = 0,
    acks: Acknowledger | None = None,
) -> CallPath:
    """The executor's call path over `upstreams` (by server name)."""
    chain = interceptors or InterceptorChain()
    running = RunningCalls()
    return CallPath(
        ahead=[
            Admit(running, acks),
            FetchArguments(blobs, max_arguments),
            FindServer(upstreams),
            InterceptBefore(chain),
            OwnSession(users),
            Budget(),
        ],
        attempt=[Settle(), CheckArguments(), Subscriptions(), AskBreaker(), Send()],
        retry=Retry(),
        behind=[
            LeaveSession(),
            KeepSubscriptions(),
            SignInLink(users),
            InterceptAfter(chain),
            GatewayUris(),
            ShapeAnswer(),
        ],
        running=running,
    )
