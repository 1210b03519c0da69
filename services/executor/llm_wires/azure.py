"""Azure OpenAI.

The chat completions wire, one deployment per model in the URL, an `api-version` query, and an `api-key`
header or an Entra ID bearer token.

The request's `model` names the deployment (`<base_url>/deployments/<model>/chat/completions`):
Azure names deployments as their owner chose, so a provider lists its deployment names as models.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import quote

import httpx2

from libs.common.contracts.llm_config import ProviderConfig

from .openai import OpenAiWire

__all__ = ["AzureWire"]


class AzureWire(OpenAiWire):
    def __init__(self, config: ProviderConfig, credential: str | None) -> None:
        super().__init__(config, credential)
        self._base = httpx2.URL(config.base_url)
        self.endpoint = self._base.copy_with(path=self._base.path.rstrip("/") + "/deployments")
        self._version = config.api_version or ""
        # each model's URL made once per wire (an httpx URL costs ~0.1 ms to build)
        self._deployment_url = functools.lru_cache(maxsize=256)(self._make_deployment_url)

    @staticmethod
    def _auth(config: ProviderConfig, credential: str | None) -> dict[str, str]:
        if not credential:
            return {}
        if config.azure_auth == "entra":
            return {"authorization": f"Bearer {credential}"}
        return {"api-key": credential}

    def _target(self, body: dict[str, Any]) -> httpx2.URL:
        return self._deployment_url(str(body.get("model") or ""))

    def _make_deployment_url(self, model: str) -> httpx2.URL:
        deployment = quote(model, safe="")
        path = self._base.path.rstrip("/") + f"/deployments/{deployment}/chat/completions"
        return self._base.copy_with(path=path).copy_merge_params({"api-version": self._version})
