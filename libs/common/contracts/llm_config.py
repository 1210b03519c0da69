"""The `llm:` section of the configuration file: OpenAI-compatible providers, their models and prices."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["AgentMode", "LlmSection", "ModelPrice", "ProviderConfig", "ProviderKind"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelPrice(_Strict):
    """USD per million tokens."""

    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)


ProviderKind = Literal["openai", "azure", "anthropic", "gemini", "vertex", "bedrock"]
"""The wire a provider speaks; `openai` is any OpenAI-compatible server (OpenAI, vLLM, Ollama, LiteLLM)."""


class ProviderConfig(_Strict):
    """One model provider: its wire, where it is, its key, its models and their prices."""

    kind: ProviderKind = "openai"

    base_url: str
    """Up to and including `/v1`: `https://api.openai.com/v1`, `http://localhost:11434/v1`."""
    api_key: str | None = None
    """The key itself (sealed at rest when `BASTION_SECRETS_KEY` is set); prefer `api_key_env`."""
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Name of an environment variable of the executor holding the key."""
    models: list[str] = Field(min_length=1)
    """The model names this provider serves; a request's `model` picks the provider."""
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    """Model -> price; a model without one costs nothing (and is never refused by a budget)."""
    timeout: float = Field(default=120.0, gt=0, le=3600)
    retries: int = Field(default=2, ge=0, le=10)
    """Retries on transport errors (connection refused or reset) before any token was streamed."""
    failure_threshold: int = Field(default=5, ge=1)
    reset_timeout: float = Field(default=30.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_key(self) -> ProviderConfig:
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("give api_key or api_key_env, not both")
        return self


class AgentMode(_Strict):
    """A key's agent mode on `/v1/chat/completions`: Bastion runs the tool calls it may, feeds their
    results back to the model, and loops until the model stops or proposes something else."""

    tools_to_auto_execute: list[str] = Field(min_length=1)
    """Gateway tool names (`<server>__<tool>`, `*` wildcards) Bastion runs without asking; only
    tools the key may use anyway are ever run."""
    max_depth: int = Field(default=10, ge=1, le=100)
    """Model round trips at most; the response says when the limit stopped the loop."""


class LlmSection(_Strict):
    """`llm:` in the configuration file."""

    providers: dict[str, ProviderConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _models_unique(self) -> LlmSection:
        owner: dict[str, str] = {}
        for name, provider in self.providers.items():
            for model in provider.models:
                if model in owner:
                    raise ValueError(
                        f"providers {owner[model]!r} and {name!r} list the same model: a model has one provider"
                    )
                owner[model] = name
        return self
