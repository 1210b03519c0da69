"""The admin REST API's router (`/admin/v1`): every route behind the admin token, one module per
collection (`key_routes`, `entity_routes`, `server_routes`, `provider_routes`; `passwords` is added
by `admin_api`). KV access goes through `store`.

Every write validates everything first (body, references to other entities, name uniqueness) and
then makes one KV write, revision-checked, so a request either changes one record completely or
changes nothing. Errors are one `ErrorBody` shape whatever their origin: a request model, a
missing reference, a lost race, NATS being unreachable. Secrets appear only in the answers to
key create and rotate; error bodies never echo the request (its `input` is dropped).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from .auth import AdminAuth
from .entity_routes import entity_routes
from .errors import AdminRoute, documented
from .key_routes import key_routes
from .models import (
    CustomerCreate,
    CustomerFields,
    CustomerOut,
    CustomerPatch,
    GroupCreate,
    GroupFields,
    GroupOut,
    GroupPatch,
    TeamCreate,
    TeamFields,
    TeamOut,
    TeamPatch,
    UserCreate,
    UserFields,
    UserOut,
    UserPatch,
)
from .provider_routes import provider_routes
from .server_routes import server_routes
from .store import AdminStore
from .upstream_links import UpstreamLinks

__all__ = ["PREFIX", "admin_router"]

PREFIX = "/admin/v1"


def admin_router(store: AdminStore, auth: AdminAuth, links: UpstreamLinks | None = None) -> APIRouter:
    """Every admin route under `/admin/v1`, all behind the admin token."""
    route_class = type("BoundAdminRoute", (AdminRoute,), {"auth": auth})
    router = APIRouter(
        prefix=PREFIX,
        route_class=route_class,
        dependencies=[Depends(auth)],
        responses=documented(401, 403, 503),
    )
    key_routes(router, store)
    entity_routes(router, store, "group", "/groups", GroupCreate, GroupFields, GroupPatch, GroupOut, {})
    entity_routes(
        router,
        store,
        "customer",
        "/customers",
        CustomerCreate,
        CustomerFields,
        CustomerPatch,
        CustomerOut,
        {"groups": "group"},
    )
    entity_routes(
        router,
        store,
        "team",
        "/teams",
        TeamCreate,
        TeamFields,
        TeamPatch,
        TeamOut,
        {"groups": "group", "customer_id": "customer"},
    )
    entity_routes(
        router,
        store,
        "user",
        "/users",
        UserCreate,
        UserFields,
        UserPatch,
        UserOut,
        {"groups": "group", "team_id": "team"},
    )
    server_routes(router, store, links)
    provider_routes(router, store)
    return router
