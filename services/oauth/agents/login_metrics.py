"""Sign-ins counted by how they ended (`bastion_oauth_logins`), read off the answer the login routes give.

Every route that finishes a sign-in (the password form, the identity provider's callback) answers a
302 back to the client when the person got in; a refusal is a page: 401 (wrong user name or password)
or 403 (an identity the gateway does not know), 429 (too many failures for that name), 400 (the
login page expired or the request was bad), 502 (the identity provider failed). Counting the answer
keeps the routes free of metric calls on each of their many ways out.
"""

from __future__ import annotations

from libs.common.contracts.oauth import HttpExchangeRequest, HttpExchangeResponse

from ..http import Route
from ..metrics import OAUTH_LOGINS

__all__ = ["counted_login", "login_outcome"]

_OUTCOMES = {302: "ok", 401: "refused", 403: "refused", 429: "locked"}


def login_outcome(status: int) -> str:
    return _OUTCOMES.get(status, "failed" if status >= 500 else "expired")


def counted_login(method: str, route: Route) -> Route:
    """`route` (a sign-in by `method`: password, federated), with each answer counted."""

    async def counted(request: HttpExchangeRequest) -> HttpExchangeResponse:
        response = await route(request)
        OAUTH_LOGINS.labels(method, login_outcome(response.status)).inc()
        return response

    return counted
