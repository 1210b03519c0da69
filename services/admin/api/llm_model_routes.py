"""`/admin/v1/llm-models`: the model names `/v1` serves, each with its deployments, strategy and fallbacks.

The routed models (`llm.models`) come from the routes record in KV `bastion_llm`; a model a provider
lists is a route of its own, one deployment at the provider's price. Nothing here is a secret: provider
names, upstream model names, weights, priorities, prices and limits.

`PUT` and `DELETE` write routes of their own (`source: api`), which `bastion config apply` keeps; a
route the file wrote (`source: config`) is changed in the file only.

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

import logging

from fastapi import APIRouter, Response
from pydantic import BaseModel

from libs.common.contracts.llm_config import MAX_ROUTES, Deployment, ModelRoute, RoutingStrategy, route_problem
from libs.common.contracts.llm_routes import API_SOURCE, ROUTES_KEY, RoutesRecord, listed_route

from .errors import invalid
from .models import FieldError
from .route_table import Route, register
from .store import AdminStore, Conflict
from .tables import NotFound, Versioned

__all__ = ["llm_model_routes"]

log = logging.getLogger(__name__)


class ModelOut(BaseModel):
    name: str
    routed: bool
    """True: an `llm.models` route; false: a model its provider lists (one deployment, no fallbacks)."""
    strategy: RoutingStrategy
    deployments: list[Deployment]
    fallbacks: list[str]
    cooldown: float
    source: str | None = None
    """`config` when `bastion config apply` wrote it; a route: `api` when written here; a listed model:
    null for a provider added through this API."""


def _out(name: str, route: ModelRoute, routed: bool, source: str | None) -> ModelOut:
    return ModelOut(
        name=name,
        routed=routed,
        strategy=route.strategy,
        deployments=route.deployments,
        fallbacks=route.fallbacks,
        cooldown=route.cooldown,
        source=source,
    )


async def list_models(store: AdminStore) -> list[ModelOut]:
    """Every model name `/v1` serves, routed ones and those providers list, by name."""
    found: dict[str, ModelOut] = {}
    for provider, stored in await store.providers.list():
        record = stored.value
        for model in record.config.models:
            found[model] = _out(model, listed_route(provider, record, model), False, record.source)
    table = await store.routes.find(ROUTES_KEY)
    if table is not None:
        for name, route in table.value.models.items():
            found[name] = _out(name, route, True, table.value.source_of(name))
    return [found[name] for name in sorted(found)]


async def get_model(store: AdminStore, name: str) -> ModelOut:
    """One model name: its deployments in failover order's terms (strategy, priorities, weights) and fallbacks."""
    for model in await list_models(store):
        if model.name == name:
            return model
    raise NotFound(f"no model {name!r} (neither under llm.models nor listed by a provider)")


def _not_from_file(stored: RoutesRecord, name: str) -> None:
    if name in stored.models and stored.source_of(name) != API_SOURCE:
        raise Conflict(
            f"route {name!r} comes from the config file (source {stored.source_of(name)!r}); change it there"
        )


async def _route_problem(store: AdminStore, routes: dict[str, ModelRoute], name: str) -> str | None:
    """Why route `name` of `routes` cannot be served: the config file's checks, against the stored providers."""
    providers = await store.providers.list()
    listed = {model: provider for provider, stored in providers for model in stored.value.config.models}
    return route_problem(routes, listed, {provider for provider, _ in providers}, only={name})


async def put_model(store: AdminStore, name: str, body: ModelRoute) -> ModelOut:
    """Create or replace the route of model `name` (`source: api`); ingress and executors use it at once.

    Checked as the config file's `llm.models` are: deployments name stored providers, fallbacks name
    served models without a loop, and no provider lists `name` itself (422 naming the problem)."""
    if not name or len(name) > 256:
        raise invalid([FieldError(loc=["path", "name"], msg="a model name is 1 to 256 characters", type="value_error")])
    found = await store.routes.find(ROUTES_KEY)
    stored = found.value if found is not None else RoutesRecord()
    _not_from_file(stored, name)
    if name not in stored.models and len(stored.models) >= MAX_ROUTES:
        raise Conflict(f"there are {MAX_ROUTES} routed models already, the most there may be")
    models = {**stored.models, name: body}
    if problem := await _route_problem(store, models, name):
        raise invalid([FieldError(loc=["body"], msg=problem, type="invalid_route")], "invalid_route")
    await _write(store, found, stored.model_copy(update={"models": models, "sources": _sources(stored, name, True)}))
    log.info("admin: wrote llm route %r (%d deployment(s))", name, len(body.deployments))
    return _out(name, body, True, API_SOURCE)


async def delete_model(store: AdminStore, name: str) -> Response:
    """Remove the route of model `name` written through this API; the model is unknown after (unless listed)."""
    found = await store.routes.find(ROUTES_KEY)
    if found is None or name not in found.value.models:
        raise NotFound(f"no routed model {name!r}")
    stored = found.value
    _not_from_file(stored, name)
    models = {other: route for other, route in stored.models.items() if other != name}
    await _write(store, found, stored.model_copy(update={"models": models, "sources": _sources(stored, name, False)}))
    log.info("admin: removed llm route %r", name)
    return Response(status_code=204)


def _sources(stored: RoutesRecord, name: str, present: bool) -> dict[str, str]:
    """Every route's source spelled out (a record from before per-route sources has only `source`)."""
    sources = {other: source for other in stored.models if other != name and (source := stored.source_of(other))}
    return {**sources, name: API_SOURCE} if present else sources


async def _write(store: AdminStore, found: Versioned[RoutesRecord] | None, record: RoutesRecord) -> None:
    """The whole record, at the revision read (409 when a concurrent write or apply moved it)."""
    if found is None:
        await store.routes.create(ROUTES_KEY, record)
    else:
        await store.routes.update(ROUTES_KEY, record, found.revision)


LLM_MODEL_ROUTES = (
    Route("GET", "/llm-models", "providers:read", list_models),
    Route("GET", "/llm-models/{name:path}", "providers:read", get_model, errors=(404,)),
    Route("PUT", "/llm-models/{name:path}", "providers:write", put_model, errors=(409, 422)),
    Route("DELETE", "/llm-models/{name:path}", "providers:write", delete_model, 204, (404, 409)),
)


def llm_model_routes(router: APIRouter, store: AdminStore) -> None:
    register(router, LLM_MODEL_ROUTES, "llm", store)
