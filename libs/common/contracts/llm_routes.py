"""Routed models on the bus.

The `llm.models` routes as one KV record, and a model name resolved to the deployments a request may be
tried on (docs/llm-routing.md).

The routes live in KV `bastion_llm` beside the providers, under `ROUTES_KEY` (a name no provider
can have: provider names are slugs). Ingress resolves a request's model with `candidates`; policy
marks which of them the caller may use; the executor orders and tries them.
"""

from __future__ import annotations

from typing import Final

from pydantic import Field

from libs.common.contracts.llm import MAX_CANDIDATES, ProviderRecord, RoutedDeployment
from libs.common.contracts.llm_config import MAX_ROUTES, Deployment, ModelRoute
from libs.common.contracts.messages_base import BusMessage

__all__ = ["API_SOURCE", "ROUTES_KEY", "RoutesRecord", "candidates", "listed_route"]

ROUTES_KEY: Final = "_routes"
"""The KV key of the routes record in `bastion_llm`."""

API_SOURCE: Final = "api"
"""The source of a route written through the admin API (`PUT /admin/v1/llm-models/{name}`)."""


class RoutesRecord(BusMessage):
    """KV `bastion_llm` value under `ROUTES_KEY`: every `llm.models` route."""

    models: dict[str, ModelRoute] = Field(default_factory=dict, max_length=MAX_ROUTES)
    source: str | None = None
    """The source of a route `sources` does not name (a record written before routes had their own)."""
    sources: dict[str, str] = Field(default_factory=dict, max_length=MAX_ROUTES)
    """Route name -> who wrote it: `config` (`bastion config apply`, which replaces only these) or `api`."""

    def source_of(self, name: str) -> str | None:
        """Who wrote the route `name`."""
        return self.sources.get(name, self.source)

    def by_source(self, source: str | None) -> dict[str, ModelRoute]:
        """The routes `source` wrote."""
        return {name: route for name, route in self.models.items() if self.source_of(name) == source}


def listed_route(provider: str, record: ProviderRecord, model: str) -> ModelRoute:
    """A model a provider lists, as the route it implicitly is: one deployment, no fallbacks."""
    price = record.config.prices.get(model)
    return ModelRoute(deployments=[Deployment(provider=provider, model=model, price=price)])


def candidates(model: str, routes: dict[str, ModelRoute]) -> list[RoutedDeployment]:
    """The deployments of `model`, then of its fallbacks (depth first, each model once), at most `MAX_CANDIDATES`.

    Empty when `model` has no route. A deployment without its own price gets the route's provider price
    when `routes` was built with `listed_route` for it."""
    found: list[RoutedDeployment] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        route = routes.get(name)
        if route is None or name in seen:
            return
        seen.add(name)
        for deployment in route.deployments:
            if len(found) < MAX_CANDIDATES:
                found.append(
                    RoutedDeployment(
                        **deployment.model_dump(), route=name, strategy=route.strategy, cooldown=route.cooldown
                    )
                )
        for fallback in route.fallbacks:
            visit(fallback)

    visit(model)
    return found
