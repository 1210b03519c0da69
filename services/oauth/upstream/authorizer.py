"""The upstream side of the oauth service: links, the authorization step, and current tokens.

    link(server, user)      -> a Bastion URL that starts the authorization step for that owner
    start(ticket)           -> the upstream authorization server's URL (discovery, registration, PKCE)
    callback(state, code)   -> tokens stored for the owner the ticket named
    token(query)            -> the owner's current access token: refreshed before expiry and after
                               the upstream refused it; else exchanged (RFC 8693) from the same
                               user's token at the same authorization server; else a link

One owner's tokens are never handed out for another: the owner is the server's shared slot, or,
for a per-user server, exactly the calling user.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlencode

import httpx2

from libs.common.contracts.oauth_upstream import UpstreamToken, UpstreamTokenQuery

from ..fetch import AllowList, guarded_client
from ..metrics import OAUTH_UPSTREAM_TOKENS
from . import client as oauth
from .discovery import discover
from .errors import UpstreamOAuthError
from .records import Flow, Records, ServerAuth
from .tickets import Ticket, Tickets

__all__ = ["CALLBACK_PATH", "START_PATH", "Authorizer"]

log = logging.getLogger(__name__)

START_PATH = "/oauth/upstream/authorize"
CALLBACK_PATH = "/oauth/upstream/callback"


class Authorizer:
    def __init__(
        self,
        records: Records,
        tickets: Tickets,
        http: httpx2.AsyncClient | None,
        public_url: str,
        *,
        refresh_margin: float = 60.0,
        flow_ttl: float = 600.0,
        allow_private: bool = False,
        allow: AllowList | None = None,
    ) -> None:
        self._records = records
        self._tickets = tickets
        self._shared_http = http
        """A client to reuse (tests); None: one per operation, since they are rare (an authorization
        step, a refresh) and the service then holds no connection open between them."""
        self._public = public_url.rstrip("/")
        self._margin = refresh_margin
        self._flow_ttl = flow_ttl
        self._allow_private = allow_private
        """Reach upstreams and authorization servers on private addresses (`..fetch`; SSRF otherwise)."""
        self._allow = allow or AllowList()
        """Internal hosts reachable all the same (`BASTION_UPSTREAM_OAUTH_ALLOW_HOSTS`)."""
        self._locks: dict[tuple[str, str | None], asyncio.Lock] = {}
        self._noting = asyncio.Lock()
        self._registering: dict[str, asyncio.Lock] = {}
        """One registration per server at a time: a link opened while the executor asks for the same
        server's token would otherwise register two clients, the later overwriting the earlier, and
        the code issued to the first would be refused at the callback (invalid_grant)."""
        self._noted: set[tuple[str, str]] = set()
        self.on_authorized: Callable[[str, str], Awaitable[None]] | None = None
        """Called with (server, user) once a user stored a new token for a per-user server: the
        executors drop that user's session and listing, made with the token before."""
        """(issuer, server) pairs this process has written down (`Records.note_server_at`): which servers
        share an authorization server is kept in the store, so token exchange survives a restart."""

    @contextlib.asynccontextmanager
    async def _http(self) -> AsyncIterator[httpx2.AsyncClient]:
        if self._shared_http is not None:
            yield self._shared_http
            return
        async with guarded_client(15.0, allow_private=self._allow_private, allow=self._allow) as http:
            yield http

    @property
    def redirect_uri(self) -> str:
        return self._public + CALLBACK_PATH

    def link(self, server: str, url: str, transport: str, user: str | None) -> str:
        ticket = self._tickets.issue(Ticket(server=server, url=url, transport=transport, user=user))
        return f"{self._public}{START_PATH}?{urlencode({'ticket': ticket})}"

    async def start(self, ticket_text: str) -> str:
        ticket = self._tickets.open(ticket_text)
        auth = await self._server_auth(ticket.server, ticket.url, ticket.transport)
        pkce = oauth.Pkce.new()
        state = secrets.token_urlsafe(32)
        await self._records.save_flow(
            state,
            Flow(
                server=ticket.server,
                url=ticket.url,
                transport=ticket.transport,
                user=ticket.user,
                verifier=pkce.verifier,
                created_at=time.time(),
            ),
        )
        return oauth.authorization_url(auth.discovered, auth.client, auth.redirect_uri, state, pkce)

    async def callback(self, state: str, code: str | None, error: str | None) -> str:
        """Finish the step; returns the server name. The state is single-use and expires."""
        if not state or len(state) > 128 or not all(c.isalnum() or c in "-_" for c in state):
            raise UpstreamOAuthError("the callback has no valid state")
        flow = await self._records.take_flow(state, self._flow_ttl)
        if flow is None:
            raise UpstreamOAuthError("unknown or expired authorization state: start again from the link")
        if error or not code:
            raise UpstreamOAuthError(f"the authorization server did not authorize: {error or 'no code'}")
        auth = await self._server_auth(flow.server, flow.url, flow.transport)
        async with self._http() as http:
            tokens = await oauth.exchange_code(
                http, auth.discovered, auth.client, code, auth.redirect_uri, flow.verifier
            )
        await self._records.save_tokens(flow.server, flow.user, tokens)
        if flow.user is not None and self.on_authorized is not None:
            await self.on_authorized(flow.server, flow.user)
        log.info("upstream %s: authorized (%s)", flow.server, "per user" if flow.user else "shared")
        return flow.server

    async def token(self, query: UpstreamTokenQuery) -> UpstreamToken:
        if query.per_user and query.user is None:
            OAUTH_UPSTREAM_TOKENS.labels("refused").inc()
            return UpstreamToken(
                error="this server is configured per user, and the call names no user (use a key bound to a user)"
            )
        user = query.user if query.per_user else None
        key = (query.server, user)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            try:
                tokens, how = await self._current(query, user)
            except UpstreamOAuthError as exc:
                OAUTH_UPSTREAM_TOKENS.labels("error").inc()
                return self._unauthorized(query, user, str(exc))
        OAUTH_UPSTREAM_TOKENS.labels(how).inc()
        if tokens is None:
            return self._unauthorized(query, user, "not authorized yet")
        return UpstreamToken(access_token=tokens.access_token, expires_at=tokens.expires_at)

    # ---------------------------------------------------------------- internals

    async def _current(self, query: UpstreamTokenQuery, user: str | None) -> tuple[oauth.TokenSet | None, str]:
        """The owner's usable token (or None), and how it was had (the `bastion_oauth_upstream_token_fetches` outcome).

        Kept, refreshed, exchanged; refresh_failed or needs_auth when there is none."""
        tokens = await self._records.tokens(query.server, user)
        rejected = query.rejected is not None and tokens is not None and query.rejected == tokens.access_token
        if tokens is not None and tokens.fresh(self._margin) and not rejected:
            return tokens, "kept"
        auth = await self._server_auth(query.server, query.url, query.transport)
        if tokens is not None:
            try:
                async with self._http() as http:
                    renewed = await oauth.refresh(http, auth.discovered, auth.client, tokens)
            except UpstreamOAuthError as exc:
                log.warning("upstream %s: refresh failed (%s); authorization needed again", query.server, exc)
                await self._records.forget_tokens(query.server, user)
                return None, "refresh_failed"
            await self._records.save_tokens(query.server, user, renewed)
            return renewed, "refreshed"
        if user is not None and auth.discovered.supports_token_exchange:
            exchanged = await self._exchanged(query, user, auth)
            return exchanged, "exchanged" if exchanged is not None else "needs_auth"
        return None, "needs_auth"

    async def _exchanged(self, query: UpstreamTokenQuery, user: str, auth: ServerAuth) -> oauth.TokenSet | None:
        issuer = str(auth.discovered.metadata.issuer)
        for other in await self._records.servers_at(issuer):
            if other == query.server:
                continue
            subject = await self._records.tokens(other, user)
            if subject is None or not subject.fresh(0):
                continue
            try:
                async with self._http() as http:
                    tokens = await oauth.exchange_token(http, auth.discovered, auth.client, subject.access_token)
            except UpstreamOAuthError as exc:
                log.info("upstream %s: token exchange from %s refused (%s)", query.server, other, exc)
                continue
            await self._records.save_tokens(query.server, user, tokens)
            log.info("upstream %s: token exchanged from %s for a user (no second login)", query.server, other)
            return tokens
        return None

    async def _server_auth(self, server: str, url: str, transport: str) -> ServerAuth:
        auth = await self._records.server_auth(server)
        if auth is None or auth.redirect_uri != self.redirect_uri:
            auth = await self._registered(server, url, transport)
        issuer = str(auth.discovered.metadata.issuer)
        if (issuer, server) not in self._noted:
            # one read-modify-write at a time: two servers of one issuer noted at once (their
            # sessions open together at start-up) would otherwise each write a list without the other
            async with self._noting:
                await self._records.note_server_at(issuer, server)
            self._noted.add((issuer, server))
        return auth

    async def _registered(self, server: str, url: str, transport: str) -> ServerAuth:
        """Bastion's client at `server`'s authorization server.

        Registered now unless a registration that ran meanwhile left one."""
        async with self._registering.setdefault(server, asyncio.Lock()):
            auth = await self._records.server_auth(server)
            if auth is not None and auth.redirect_uri == self.redirect_uri:
                return auth
            async with self._http() as http:
                discovered = await discover(http, url, transport)
                registration = await oauth.register(http, discovered, self.redirect_uri)
            auth = ServerAuth(discovered=discovered, client=registration, redirect_uri=self.redirect_uri)
            await self._records.save_server_auth(server, auth)
            return auth

    def _unauthorized(self, query: UpstreamTokenQuery, user: str | None, why: str) -> UpstreamToken:
        if user is None:
            # the shared token is bound by an admin: a link is never handed to a caller
            return UpstreamToken(
                error=f"the server needs OAuth authorization ({why}): an admin completes it through the link "
                "in `bastion servers list`",
                needs_auth=True,
            )
        return UpstreamToken(
            error=f"authorize this server for your user first ({why})",
            needs_auth=True,
            authorize_url=self.link(query.server, query.url, query.transport, user),
        )
