"""Bastion as the authorization server of its own MCP endpoint: the agents' half of the oauth service."""

from __future__ import annotations

from libs.common.bus.nats import kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.oauth import HttpExchangeRequest, HttpExchangeResponse

from ..context import NatsHandler, OAuthContext
from ..fetch import AllowList
from ..http import Router, json_response
from ..store import Records
from .authorize import Authorize
from .client_metadata import ClientMetadataDocuments
from .clients import ClientAuthenticator, Registration
from .federation import CALLBACK_PATH as FEDERATION_CALLBACK
from .federation import START_PATH as FEDERATION_START
from .federation import Federation
from .login_metrics import counted_login
from .metadata import authorization_server_metadata, protected_resource_metadata
from .preregistered import load_clients
from .token_signing import load_signing_key
from .tokens import Tokens
from .users import Passwords

__all__ = ["install"]


async def install(ctx: OAuthContext, router: Router) -> dict[str, NatsHandler]:
    """Register the agents' HTTP routes on `router`; return this half's NATS handlers."""
    records, revoked = Records(ctx.state), Records(ctx.revoked)
    policy = await kv_bucket(ctx.nc.jetstream(), subjects.KV_POLICY)
    signing = await load_signing_key(records, Records(ctx.public), ctx.sealer)
    documents = ClientMetadataDocuments(
        ctx.settings.client_metadata_allow_http_loopback,
        ctx.settings.client_metadata_allow_private,
        AllowList.parse(ctx.settings.client_metadata_allow_hosts),
    )
    preregistered = load_clients(ctx.settings.oauth_clients_file) if ctx.settings.oauth_clients_file else {}
    clients = ClientAuthenticator(records, documents, preregistered, ctx.registrations)
    settings = ctx.settings
    federated = (settings.oidc_name or settings.oidc_issuer) if settings.oidc_issuer else None
    authorize = Authorize(
        records,
        clients,
        policy,
        settings.code_ttl,
        settings.login_ttl,
        federated,
        max_failures=settings.login_max_failures,
        failure_window=settings.login_failure_window,
    )
    tokens = Tokens(records, revoked, clients, signing, ctx.settings.access_token_ttl, ctx.settings.refresh_token_ttl)
    passwords = Passwords(records, policy)

    async def jwks(_request: HttpExchangeRequest) -> HttpExchangeResponse:
        return json_response({"keys": signing.public_jwks().keys})

    router.add("GET", "/.well-known/oauth-protected-resource", protected_resource_metadata, prefix=True)
    router.add("GET", "/.well-known/oauth-authorization-server", authorization_server_metadata, prefix=True)
    router.add("GET", "/oauth/jwks", jwks)
    registration = Registration(ctx.registrations, settings.registrations_per_address, settings.registrations_per_hour)
    router.add("POST", "/oauth/register", registration.register)
    router.add("GET", "/oauth/authorize", authorize.start)
    router.add("POST", "/oauth/login", counted_login("password", authorize.login))
    router.add("POST", "/oauth/token", tokens.token)
    router.add("POST", "/oauth/revoke", tokens.revoke)
    if settings.oidc_issuer:
        federation = Federation(settings, records, authorize.pending, authorize.user_exists, authorize.complete)
        router.add("GET", FEDERATION_START, federation.start)
        router.add("GET", FEDERATION_CALLBACK, counted_login("federated", federation.callback))
    return {subjects.OAUTH_PASSWORD: passwords.handle}
