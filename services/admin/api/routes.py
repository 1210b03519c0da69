"""The admin REST API's router (`/admin/v1`).

Every route behind a principal's credential and the permission it declares, one module per collection
(`key_routes`, `entity_routes`, `server_routes`, `provider_routes`, `pin_routes`; `config_routes` imports
a configuration file; `passwords` is added by `admin_api`). KV access goes through `store`.

Every write validates everything first (body, references to other entities, name uniqueness) and
then makes one KV write, revision-checked, so a request either changes one record completely or
changes nothing (an import checks the whole file, then writes record by record). Errors are one
`ErrorBody` shape whatever their origin: a request model, a missing reference, a lost race, NATS
being unreachable. Secrets appear only in the answers to key create and rotate; error bodies never
echo the request (its `input` is dropped).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from .admin_route import bound_route
from .approval_routes import approval_routes
from .auth import Authenticator, security_schemes
from .config_routes import config_routes
from .entity_routes import EntityKind, entity_routes
from .errors import documented
from .key_routes import key_routes
from .llm_model_routes import llm_model_routes
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
from .pin_routes import pin_routes
from .policy_routes import policy_routes
from .provider_routes import provider_routes
from .server_routes import server_routes
from .store import AdminStore
from .upstream_links import UpstreamLinks

__all__ = ["PREFIX", "admin_router", "api_router"]

PREFIX = "/admin/v1"


def api_router(auth: Authenticator) -> APIRouter:
    """An empty router under `/admin/v1` whose routes check credentials with `auth`."""
    return APIRouter(
        prefix=PREFIX,
        route_class=bound_route(auth),
        dependencies=[Depends(security_schemes)],
        responses=documented(401, 403, 503),
    )


GROUPS = EntityKind(
    "group",
    "/groups",
    GroupCreate,
    GroupFields,
    GroupPatch,
    GroupOut,
    {"customer_id": "customer"},
    ("groups:read", "groups:write"),
)
CUSTOMERS = EntityKind(
    "customer",
    "/customers",
    CustomerCreate,
    CustomerFields,
    CustomerPatch,
    CustomerOut,
    {"groups": "group"},
    ("directory:read", "directory:write"),
)
TEAMS = EntityKind(
    "team",
    "/teams",
    TeamCreate,
    TeamFields,
    TeamPatch,
    TeamOut,
    {"groups": "group", "customer_id": "customer"},
    ("directory:read", "directory:write"),
)
USERS = EntityKind(
    "user",
    "/users",
    UserCreate,
    UserFields,
    UserPatch,
    UserOut,
    {"groups": "group", "team_id": "team"},
    ("directory:read", "directory:write"),
)


def admin_router(store: AdminStore, auth: Authenticator, links: UpstreamLinks | None = None) -> APIRouter:
    """The configuration routes under `/admin/v1`: keys, groups, customers, teams, users, servers, LLM providers."""
    router = api_router(auth)
    key_routes(router, store)
    for kind in (GROUPS, CUSTOMERS, TEAMS, USERS):
        entity_routes(router, store, kind)
    server_routes(router, store, links)
    provider_routes(router, store)
    llm_model_routes(router, store)
    pin_routes(router, store)
    policy_routes(router, store)
    approval_routes(router, store)
    config_routes(router, store)
    return router
