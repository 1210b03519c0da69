"""The `llm:` section of the configuration file: providers (each in its own wire), their models and prices."""

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

    base_url: str = ""
    """Up to and including `/v1`: `https://api.openai.com/v1`, `http://localhost:11434/v1`; for
    `azure` the resource's `https://<resource>.openai.azure.com/openai`. Required for `openai` and
    `azure`; the others default to their provider's public endpoint (docs/llm-providers.md)."""
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

    api_version: str | None = Field(default=None, pattern=r"^[0-9A-Za-z._-]{1,40}$")
    """`azure`: the `api-version` query (default `2024-10-21`); `anthropic`: the `anthropic-version`
    header (default `2023-06-01`)."""
    azure_auth: Literal["api-key", "entra"] | None = None
    """`azure`: the key goes as the `api-key` header (default), or is an Entra ID access token sent as bearer."""
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
    """`bedrock` (required): the AWS region, such as `us-east-1`: where requests go and what SigV4 signs."""
    project: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
    """`vertex` (required): the Google Cloud project id."""
    location: str | None = Field(default=None, pattern=r"^[a-z0-9-]{1,40}$")
    """`vertex` (required): the region (`us-central1`) or `global`."""

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_key(self) -> ProviderConfig:
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("give api_key or api_key_env, not both")
        return self

    @model_validator(mode="after")
    def _kind_fields(self) -> ProviderConfig:
        """Each kind's own fields present where required, absent elsewhere; its default endpoint filled in."""
        for field, kinds in _KIND_FIELDS.items():
            if getattr(self, field) is not None and self.kind not in kinds:
                raise ValueError(f"{field} applies to kind {' or '.join(kinds)} only, not {self.kind}")
        for field in _REQUIRED.get(self.kind, ()):
            if getattr(self, field) is None:
                raise ValueError(f"kind {self.kind} needs {field}")
        if self.kind == "azure":
            self.api_version = self.api_version or "2024-10-21"
            self.azure_auth = self.azure_auth or "api-key"
        if not self.base_url:
            self.base_url = self._default_base_url()
        return self

    def _default_base_url(self) -> str:
        if self.kind == "anthropic":
            return "https://api.anthropic.com/v1"
        if self.kind == "gemini":
            return "https://generativelanguage.googleapis.com/v1beta"
        if self.kind == "vertex":
            host = (
                "aiplatform.googleapis.com"
                if self.location == "global"
                else f"{self.location}-aiplatform.googleapis.com"
            )
            return f"https://{host}/v1"
        if self.kind == "bedrock":
            return f"https://bedrock-runtime.{self.region}.amazonaws.com"
        raise ValueError(f"kind {self.kind} needs base_url (where its server is, such as https://api.openai.com/v1)")


_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "api_version": ("azure", "anthropic"),
    "azure_auth": ("azure",),
    "region": ("bedrock",),
    "project": ("vertex",),
    "location": ("vertex",),
}
_REQUIRED: dict[str, tuple[str, ...]] = {"bedrock": ("region",), "vertex": ("project", "location")}


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
