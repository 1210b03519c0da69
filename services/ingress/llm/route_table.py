"""The routed models ingress serves.

(`llm.models`, KV `bastion_llm` under `ROUTES_KEY`), and a model name resolved to the deployments its
request carries (docs/llm-routing.md).

A model a provider lists is a route of its own; a request for it carries no deployments and goes
to that provider as before. A routed model's request carries its deployments and its fallbacks',
each priced (its own price, else its provider's price for the upstream model), so that policy
charges the dearest of them and the executor settles at the one that answered.
"""

from __future__ import annotations

from libs.common.bus.kvwatch import decode_value
from libs.common.contracts.llm import ProviderRecord, RoutedDeployment
from libs.common.contracts.llm_config import ModelPrice, ModelRoute
from libs.common.contracts.llm_routes import RoutesRecord, candidates, listed_route

__all__ = ["RouteTable"]


class RouteTable:
    def __init__(self) -> None:
        self.routes: dict[str, ModelRoute] = {}

    def put(self, value: bytes) -> None:
        record = decode_value(RoutesRecord, value, "llm routes")
        self.routes = record.models if record is not None else {}

    def clear(self) -> None:
        self.routes = {}

    def served(self, providers: dict[str, ProviderRecord]) -> dict[str, tuple[str, ModelPrice | None, float]]:
        """Routed models as `ModelDirectory.models` entries.

        The first deployment's provider, no one price (each deployment has its own), and the longest
        timeout among its deployments."""
        served: dict[str, tuple[str, ModelPrice | None, float]] = {}
        for name, route in self.routes.items():
            found = self.deployments(name, providers)
            if found:
                served[name] = (route.deployments[0].provider, None, _timeout(found, providers))
        return served

    def deployments(self, model: str, providers: dict[str, ProviderRecord]) -> list[RoutedDeployment]:
        """What a request for `model` is tried on; empty for a model only a provider lists."""
        if model not in self.routes:
            return []
        listed = {
            listed_model: listed_route(name, record, listed_model)
            for name, record in providers.items()
            for listed_model in record.config.models
        }
        found = candidates(model, {**listed, **self.routes})
        for deployment in found:
            record = providers.get(deployment.provider)
            if deployment.price is None and record is not None:
                deployment.price = record.config.prices.get(deployment.model)
        return found

    def timeout(self, found: list[RoutedDeployment], providers: dict[str, ProviderRecord]) -> float:
        return _timeout(found, providers)


def _timeout(found: list[RoutedDeployment], providers: dict[str, ProviderRecord]) -> float:
    """Time for the deployments to be tried in turn.

    The sum of their providers' timeouts, at most three times the longest (a failover past the third slow
    deployment is worth less than an answer)."""
    timeouts = [providers[d.provider].config.timeout for d in found if d.provider in providers]
    return min(sum(timeouts), 3 * max(timeouts)) if timeouts else 120.0
