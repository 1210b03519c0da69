"""The admin REST API (`/admin/v1`).

Keys, tool groups, customers, teams, users, servers and LLM providers (`routes`), principals, their
tokens and roles (`access_routes`), the audit trail (`audit_routes`).

Served by the admin service and written only to JetStream KV, which every policy and ingress
replica watches: a change made through any admin replica reaches all of them. `models` holds the
bodies, `store` the KV access, `auth` who is asking, `errors` the permission each route declares.
"""

from __future__ import annotations

from fastapi import APIRouter
from nats.aio.client import Client as NATS

from .auth import Authenticator
from .changes import ChangeLog
from .password_routes import password_routes
from .registry_client import RegistryClient
from .registry_routes import registry_routes
from .routes import PREFIX, admin_router, api_router
from .store import AdminStore
from .upstream_links import UpstreamLinks

__all__ = ["PREFIX", "AdminStore", "Authenticator", "ChangeLog", "admin_api", "admin_router", "api_router"]


def admin_api(
    store: AdminStore,
    auth: Authenticator,
    nc: NATS | None = None,
    changes: ChangeLog | None = None,
    registries: RegistryClient | None = None,
) -> APIRouter:
    """The configuration routes: KV through `store`, credentials checked by `auth`.

    `nc` reaches the oauth service for user passwords and for authorization links of upstreams that need
    OAuth; `changes` records each password set and authorization link minted; `registries` are the MCP
    Registries servers are imported from."""
    links = UpstreamLinks(nc, changes) if nc else None
    router = admin_router(store, auth, links)
    if nc is not None:
        password_routes(router, nc, changes)
    if registries is not None:
        registry_routes(router, store, registries)
    return router
