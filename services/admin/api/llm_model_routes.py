"""`/admin/v1/llm-models`: the model names `/v1` serves, each with its deployments, strategy and fallbacks.

Read only. The routed models (`llm.models`) come from the routes record in KV `bastion_llm`; a model
a provider lists is a route of its own, one deployment at the provider's price. Nothing here is a
secret: provider names, upstream model names, weights, priorities, prices and limits.

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

from fastapi import APIRouter
from pydantic import BaseModel

from libs.common.contracts import subjects
from libs.common.contracts.llm_config import Deployment, ModelRoute, RoutingStrategy
from libs.common.contracts.llm_routes import ROUTES_KEY, RoutesRecord, listed_route

from .route_table import Route, register
from .store import AdminStore
from .tables import NotFound, Table

__all__ = ["llm_model_routes"]


class ModelOut(BaseModel):
    name: str
    routed: bool
    """True: an `llm.models` route; false: a model its provider lists (one deployment, no fallbacks)."""
    strategy: RoutingStrategy
    deployments: list[Deployment]
    fallbacks: list[str]
    cooldown: float
    source: str | None = None
    """`config` when `bastion config apply` wrote it; null for a provider added through this API."""


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
    routes = Table(store.buckets, subjects.KV_LLM, RoutesRecord, "llm routes")
    found: dict[str, ModelOut] = {}
    for provider, stored in await store.providers.list():
        record = stored.value
        for model in record.config.models:
            found[model] = _out(model, listed_route(provider, record, model), False, record.source)
    table = await routes.find(ROUTES_KEY)
    if table is not None:
        for name, route in table.value.models.items():
            found[name] = _out(name, route, True, table.value.source)
    return [found[name] for name in sorted(found)]


async def get_model(store: AdminStore, name: str) -> ModelOut:
    """One model name: its deployments in failover order's terms (strategy, priorities, weights) and fallbacks."""
    for model in await list_models(store):
        if model.name == name:
            return model
    raise NotFound(f"no model {name!r} (neither under llm.models nor listed by a provider)")


LLM_MODEL_ROUTES = (
    Route("GET", "/llm-models", "providers:read", list_models),
    Route("GET", "/llm-models/{name}", "providers:read", get_model, errors=(404,)),
)


def llm_model_routes(router: APIRouter, store: AdminStore) -> None:
    register(router, LLM_MODEL_ROUTES, "llm", store)
