"""OAuth access tokens on the requests to an upstream (Bastion as an OAuth client, docs/oauth.md).

An HTTP or SSE upstream without a configured `Authorization` header is first called without one.
When it answers 401 with a `Bearer` challenge, the executor asks the oauth service
(`OAUTH_UPSTREAM_TOKEN`) for the server's current access token and sends the request again. The
token is kept (in memory only) until shortly before it expires; an upstream that refuses it
(401 again) gets one renewed token, and when there is none the reason (the authorization step
is needed) is kept for the catalog, `bastion servers list` and the error callers see.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable

import httpx2
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from libs.common.contracts import subjects
from libs.common.contracts.config import ServerConfig
from libs.common.contracts.oauth_upstream import UpstreamToken, UpstreamTokenQuery, oauth_applies, oauth_target

__all__ = ["OAuthTokens", "oauth_applies", "token_fetcher"]

log = logging.getLogger(__name__)

Fetch = Callable[[str | None], Awaitable[UpstreamToken]]
"""Ask for the current token; the argument is the token the upstream just refused, if any."""

_EARLY = 30.0
"""Seconds before its expiry a kept token is asked for again (the oauth service refreshes it)."""


def token_fetcher(nc: NATS, server: str, config: ServerConfig, user: str | None = None, timeout: float = 20.0) -> Fetch:
    """Fetches the server's shared token, or with `user` that user's own (a per-user server's session)."""
    target = oauth_target(config)
    assert target is not None
    url, transport = target

    async def fetch(rejected: str | None) -> UpstreamToken:
        query = UpstreamTokenQuery(
            server=server,
            url=url,
            transport=transport,
            rejected=rejected,
            per_user=user is not None,
            user=user,
        )
        try:
            reply = await nc.request(subjects.OAUTH_UPSTREAM_TOKEN, query.model_dump_json().encode(), timeout=timeout)
        except NoRespondersError:
            return UpstreamToken(
                error="it needs credentials: OAuth (no oauth service is running) or the server's `headers`",
                needs_auth=True,
            )
        except NatsTimeout:
            return UpstreamToken(error="the oauth service did not answer in time")
        return UpstreamToken.model_validate_json(reply.data)

    return fetch


def _bearer_challenge(response: httpx2.Response) -> bool:
    return response.headers.get("www-authenticate", "").lower().startswith("bearer")


class OAuthTokens(httpx2.Auth):
    """An httpx2 auth flow adding the upstream's OAuth access token to every request."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._token: str | None = None
        self._expires_at: float | None = None
        self.problem: str | None = None
        """Why the last attempt had no usable token (shown as the server's error), else None."""
        self.authorize_url: str | None = None
        """With `problem`, for a per-user session: the link its user opens to authorize. Kept apart from
        `problem`, which logs and audit rows see: the link is a credential, for the user's answer only."""
        self.on_lost: Callable[[], None] | None = None
        """Called when a token the upstream refused cannot be renewed: the owner drops the session,
        and the reconnect reports `needs_auth` instead of calls failing one by one."""

    async def _renew(self, rejected: str | None) -> bool:
        answer = await self._fetch(rejected)
        if answer.access_token is None:
            self._token = self._expires_at = None
            self.problem = answer.error or "no OAuth access token for this server"
            self.authorize_url = answer.authorize_url  # only ever in the answer for this session's own user
            return False
        self._token, self._expires_at, self.problem = answer.access_token, answer.expires_at, None
        self.authorize_url = None
        return True

    def lean_authorization(self) -> str | bool | None:
        """For a lean send (`lean.HttpLink`).

        The header while the kept token is fresh, None while the upstream has never asked for one, False
        when it is due for renewal (the SDK's way renews it)."""
        if self._token is None:
            return None
        if self._expires_at is not None and self._expires_at - time.time() < _EARLY:
            return False
        return f"Bearer {self._token}"

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        if self._token is not None and self._expires_at is not None and self._expires_at - time.time() < _EARLY:
            await self._renew(None)
        if self._token is not None:
            request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code != 401 or not _bearer_challenge(response):
            return
        refused = self._token
        if not await self._renew(refused) or self._token == refused:
            if refused is not None and self.on_lost is not None:
                self.on_lost()
            return
        log.info("upstream answered 401; retrying with a %s OAuth token", "renewed" if refused else "new")
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request
