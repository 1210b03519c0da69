"""The steps behind the upstream.

The call leaves its session, resource subscriptions and per-user sessions are squared with the answer,
the interceptors' after hooks see the result, and the answer carries what the gateway decided on the way."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.oauth_upstream import with_authorize_url
from libs.common.contracts.skills import entry_for_gateway, skill_problem
from libs.common.contracts.ui_apps import result_for_gateway

from ..interceptors.chain import InterceptorChain
from ..replies import undeliverable
from .attempt import SUBSCRIBING
from .state import Call

if TYPE_CHECKING:
    from ..user_sessions import UserSessions

__all__ = ["GatewayUris", "InterceptAfter", "KeepSubscriptions", "LeaveSession", "ShapeAnswer", "SignInLink"]


class LeaveSession:
    """The call is no longer in flight on the session.

    The answer counts the events its agent got while it was (ingress waits for stragglers)."""

    def __call__(self, call: Call) -> None:
        call.leave()
        active, outcome = call.active, call.outcome
        if active is not None and outcome is not None and outcome.events != active.events:
            outcome.events = active.events  # mostly both 0: no pydantic assignment then


class KeepSubscriptions:
    """A subscription the upstream refused is not kept for the agent that asked."""

    methods: ClassVar[frozenset[str]] = SUBSCRIBING

    def __call__(self, call: Call) -> None:
        if call.subscribed is None or call.outcome is None or call.outcome.error is None:
            return
        holders, subscriber = call.subscribed
        holders.discard(subscriber)
        uri = call.request.subscription
        if not holders and uri is not None:
            call.upstream.subscriptions.pop(uri, None)


class SignInLink:
    """A per-user session whose user has not authorized answers with their sign-in link, and is closed.

    So their next call asks again instead of a background loop asking for a token nobody has."""

    def __init__(self, users: UserSessions | None) -> None:
        self.users = users

    def __call__(self, call: Call) -> None:
        if self.users is None or call.own_session is None or call.outcome is None:
            return
        session, outcome = call.upstream, call.outcome
        if session.needs_auth:
            if outcome.error is not None and (link := session.authorize_url):
                outcome.error.data = with_authorize_url(outcome.error.data, link)
            self.users.close(call.own_session)


class InterceptAfter:
    """The interceptors' after hooks on what the upstream answered.

    (A result, or an error's text), for a request their before hooks let through."""

    def __init__(self, chain: InterceptorChain) -> None:
        self.chain = chain

    async def __call__(self, call: Call) -> None:  # a coroutine itself: see `InterceptBefore`
        if call.cleared and call.intercepted is not None and call.outcome is not None:
            call.outcome = await self.chain.after(call.intercepted, call.outcome)


class GatewayUris:
    """Gives the URIs an answer names as agents know them, under their server's name.

    Those are `ui://` apps (a tool result's `_meta.ui.resourceUri`, a read's contents) and `skill://`
    files (a read's contents, a `skills/get` entry), named as the catalog lists them."""

    _NAMING = frozenset({"tools/call", "resources/read", "skills/get"})
    methods: ClassVar[frozenset[str]] = _NAMING

    def __call__(self, call: Call) -> None:
        outcome = call.outcome
        if outcome is None or not isinstance(outcome.result, dict) or call.request.rpc_method not in self._NAMING:
            return
        server, result = call.request.server, outcome.result
        renamed = result_for_gateway(server, result)
        if call.request.rpc_method == "skills/get":
            skill = result.get("skill")
            problem = skill_problem(skill)  # malformed, or over the extension's limits
            if problem is not None or not isinstance(skill, dict):
                call.outcome = undeliverable(outcome, ErrorKind.INVALID_ARGUMENTS, f"skill not served: {problem}")
                return
            renamed = {**renamed, "skill": entry_for_gateway(server, skill)}
        if renamed is not result:
            outcome.result = renamed


class ShapeAnswer:
    """The interceptors' decisions ride on the answer, for the request's audit row."""

    def __call__(self, call: Call) -> None:
        intercepted = call.intercepted
        if intercepted is not None and intercepted.decisions and call.outcome is not None:
            call.outcome.interceptions = intercepted.decisions
