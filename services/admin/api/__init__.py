"""The admin REST API (`/admin/v1`): keys, tool groups, customers, teams, users, servers and LLM providers.

Served by the admin service and written only to JetStream KV, which every policy and ingress
replica watches: a change made through any admin replica reaches all of them.
`models` holds the bodies, `store` the KV access, `routes` the HTTP layer, `auth` the admin token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from pydantic import SecretStr

from libs.common.messages import AuditEvent
from libs.common.sealing import Sealer

from .auth import AdminAuth
from .changes import ChangeLog
from .passwords import password_routes
from .routes import PREFIX, admin_router
from .store import AdminStore
from .upstream_links import UpstreamLinks

__all__ = ["PREFIX", "AdminAuth", "AdminStore", "admin_api", "admin_router"]


def admin_api(
    js: JetStreamContext,
    token: SecretStr,
    sealer: Sealer | None = None,
    nc: NATS | None = None,
    audit: Callable[[AuditEvent], Any] | None = None,
) -> APIRouter:
    """The router the admin service mounts: KV through `js`, guarded by `token`; `sealer` seals
    upstream secrets before they are stored; `nc` (its NATS connection) reaches the oauth service for
    user passwords and for authorization links of upstreams that need OAuth; `audit`
    is given an event per change made, password set and authorization link minted."""
    changes = ChangeLog(audit) if audit is not None else None
    links = UpstreamLinks(nc, changes) if nc else None
    store = AdminStore(js, sealer, changes)
    router = admin_router(store, AdminAuth(token, store), links)
    if nc is not None:
        password_routes(router, nc, changes)
    return router
