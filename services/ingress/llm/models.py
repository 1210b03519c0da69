"""The models ingress serves: which provider or route serves each, its price and timeout, and who may use it.

Fed by the KV watches of `bastion_llm` (providers, and the routes record) and `bastion_policy` (model
grants); read by `/v1/models` and by each completion to find its provider. No key is ever kept here.
"""

from __future__ import annotations

from libs.common.bus.kvwatch import decode_value
from libs.common.contracts.llm import ProviderRecord, RoutedDeployment
from libs.common.contracts.llm_config import ModelPrice
from libs.common.contracts.llm_routes import ROUTES_KEY
from services.ingress.llm.model_grants import ModelGrantView
from services.ingress.llm.route_table import RouteTable

__all__ = ["ModelDirectory"]


class ModelDirectory:
    """Which provider serves each model, and its price, from KV `bastion_llm` (keys are never used here)."""

    def __init__(self) -> None:
        self._providers: dict[str, ProviderRecord] = {}
        self.routing = RouteTable()
        self.grants = ModelGrantView()
        """Who may use which model, for `GET /v1/models` (fed by the `bastion_policy` watch)."""
        self.models: dict[str, tuple[str, ModelPrice | None, float]] = {}
        """model -> (provider, price, provider timeout)"""

    def put(self, name: str, value: bytes, _revision: int = 0) -> None:
        if name == ROUTES_KEY:
            self.routing.put(value)
            self._rebuild()
            return
        record = decode_value(ProviderRecord, value, f"llm provider {name!r}")
        if record is None:
            self.delete(name)
            return
        self._providers[name] = record
        self._rebuild()

    def delete(self, name: str) -> None:
        if name == ROUTES_KEY:
            self.routing.clear()
        self._providers.pop(name, None)
        self._rebuild()

    def deployments(self, model: str) -> list[RoutedDeployment]:
        """A routed model's deployments and its fallbacks' (docs/llm-routing.md); empty otherwise."""
        return self.routing.deployments(model, self._providers)

    def _rebuild(self) -> None:
        self.models = {
            model: (name, record.config.prices.get(model), record.config.timeout)
            for name, record in sorted(self._providers.items())
            for model in record.config.models
        }
        self.models.update(self.routing.served(self._providers))
