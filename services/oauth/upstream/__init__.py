"""Bastion as an OAuth 2.1 client of upstream MCP servers: the upstream half of the oauth service.

Routes (forwarded by ingress):  GET /oauth/upstream/authorize?ticket=...  -> 302 to the upstream's AS
                                GET /oauth/upstream/callback?state&code   -> tokens stored, a short page
NATS (queue `oauth`):           OAUTH_UPSTREAM_TOKEN (executor), OAUTH_UPSTREAM_LINK (admin API)
See docs/oauth.md."""

from __future__ import annotations

import html
import logging
from typing import Any

from pydantic import ValidationError

from libs.common.bus.nats import kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.oauth import HttpExchangeRequest, HttpExchangeResponse
from libs.common.contracts.oauth_upstream import AuthorizeLink, AuthorizeLinkQuery, UpstreamToken, UpstreamTokenQuery
from libs.common.contracts.user_catalogs import UpstreamUserChanged
from libs.common.settings import OAuthSettings

from ..context import NatsHandler, OAuthContext
from ..fetch import AllowList
from ..http import HttpError, Router, html_page, query_of
from .authorizer import CALLBACK_PATH, START_PATH, Authorizer
from .errors import UpstreamOAuthError
from .records import Records
from .secret_stores import SealedKVStore, SecretStore, VaultStore
from .tickets import TicketError, Tickets

__all__ = ["install", "secret_store"]

log = logging.getLogger(__name__)

_NO_STORE = [("cache-control", "no-store"), ("pragma", "no-cache")]


async def secret_store(ctx: OAuthContext) -> SecretStore:
    settings = ctx.settings
    if settings.upstream_secret_store == "vault":
        return VaultStore(vault_client(settings), settings.vault_mount, settings.vault_prefix)
    kv = await kv_bucket(ctx.nc.jetstream(), subjects.KV_OAUTH_UPSTREAM)
    return SealedKVStore(kv, ctx.sealer)


def vault_client(settings: OAuthSettings) -> Any:
    import hvac

    if not settings.vault_url:
        raise ValueError("BASTION_UPSTREAM_SECRET_STORE=vault needs BASTION_VAULT_URL and BASTION_VAULT_TOKEN")
    return hvac.Client(url=settings.vault_url, token=settings.vault_token.get_secret_value())


async def install(ctx: OAuthContext, router: Router) -> dict[str, NatsHandler]:
    settings = ctx.settings
    store = await secret_store(ctx)
    if isinstance(store, SealedKVStore) and (resealed := await store.reseal()):
        log.info("sealed %d upstream OAuth record(s) under the newest BASTION_SECRETS_KEY", resealed)
    authorizer = Authorizer(
        Records(store),
        Tickets(settings.secrets_key, settings.upstream_link_ttl),
        None,
        settings.public_url,
        refresh_margin=settings.upstream_refresh_margin,
        flow_ttl=settings.upstream_link_ttl,
        allow_private=settings.upstream_oauth_allow_private,
        allow=AllowList.parse(settings.upstream_oauth_allow_hosts),
    )

    async def authorized(server: str, user: str) -> None:
        changed = UpstreamUserChanged(server=server, user=user)
        await ctx.nc.publish(subjects.OAUTH_UPSTREAM_CHANGED, changed.model_dump_json().encode())

    authorizer.on_authorized = authorized

    async def start(request: HttpExchangeRequest) -> HttpExchangeResponse:
        ticket = query_of(request).get("ticket", "")
        try:
            location = await authorizer.start(ticket)
        except TicketError as exc:
            raise HttpError(400, "invalid_request", str(exc)) from None
        except UpstreamOAuthError as exc:
            return html_page("Authorization failed", f"<p>{html.escape(str(exc))}</p>", 502)
        return HttpExchangeResponse(status=302, headers=[("location", location), *_NO_STORE])

    async def callback(request: HttpExchangeRequest) -> HttpExchangeResponse:
        query = query_of(request)
        try:
            server = await authorizer.callback(query.get("state", ""), query.get("code"), query.get("error"))
        except UpstreamOAuthError as exc:
            return html_page("Authorization failed", f"<p>{html.escape(str(exc))}</p>", 400)
        return html_page(
            "Authorized", f"<p>Bastion may now use <b>{html.escape(server)}</b>. You can close this window.</p>"
        )

    async def token(payload: bytes) -> bytes:
        try:
            query = UpstreamTokenQuery.model_validate_json(payload)
        except ValidationError:
            return UpstreamToken(error="malformed token query").model_dump_json().encode()
        return (await authorizer.token(query)).model_dump_json().encode()

    async def link(payload: bytes) -> bytes:
        try:
            query = AuthorizeLinkQuery.model_validate_json(payload)
        except ValidationError:
            return AuthorizeLink(error="malformed link query").model_dump_json().encode()
        url = authorizer.link(query.server, query.url, query.transport, None)
        return AuthorizeLink(url=url).model_dump_json().encode()

    router.add("GET", START_PATH, start)
    router.add("GET", CALLBACK_PATH, callback)
    return {subjects.OAUTH_UPSTREAM_TOKEN: token, subjects.OAUTH_UPSTREAM_LINK: link}
