"""The `llm:` section of the configuration file.

Providers (each in its own wire), their models and prices, and the routes (`models:`) that spread a model
name over several deployments, with failover and fallbacks (docs/llm-routing.md)."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "AgentMode",
    "Deployment",
    "LlmLimits",
    "LlmSection",
    "ModelPrice",
    "ModelRoute",
    "ProviderConfig",
    "ProviderKind",
    "RoutingStrategy",
]

MAX_ROUTES = 1000
"""Routed model names at most: the routes travel as one KV record."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelPrice(_Strict):
    """USD per million tokens."""

    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    """Prompt tokens the provider read from its cache (`Usage.cached_tokens`); None: priced as `input`."""
    reasoning: float | None = Field(default=None, ge=0)
    """Reasoning tokens (`Usage.reasoning_tokens`, part of the output); None: priced as `output`."""


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
    """`azure`: the key goes as the `api-key` header (default), or Entra ID: with `tenant_id` and
    `client_id` the key is the app's client secret, exchanged for access tokens (client credentials);
    without them, it is an access token sent as bearer as it is."""
    tenant_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,99}$")
    """`azure` with `azure_auth: entra`: the Entra ID tenant (its id or domain) the app is registered in."""
    client_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,99}$")
    """`azure` with `azure_auth: entra`: the app's (client) id."""
    vertex_auth: Literal["token", "service-account"] | None = None
    """`vertex`: the key is an OAuth access token sent as it is (default), or a service account's JSON
    key, from which Bastion signs assertions and fetches access tokens."""
    token_url: str | None = Field(default=None, max_length=2048)
    """Where access tokens are fetched (Entra's `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`,
    Google's `https://oauth2.googleapis.com/token` by default); reached under the egress rules, as the provider is."""
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

    @field_validator("token_url")
    @classmethod
    def _token_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("token_url must be an http:// or https:// URL")
        return value

    @property
    def fetches_tokens(self) -> bool:
        """Whether the key is a credential exchanged for access tokens rather than sent itself."""
        return self.tenant_id is not None or self.vertex_auth == "service-account"

    def _check_token_fields(self) -> None:
        if (self.tenant_id is None) != (self.client_id is None):
            raise ValueError("give tenant_id and client_id together (Entra ID client credentials)")
        if self.tenant_id is not None and self.azure_auth != "entra":
            raise ValueError("tenant_id and client_id go with azure_auth: entra")
        if self.token_url is not None and not self.fetches_tokens:
            raise ValueError("token_url applies to Entra ID client credentials or a Vertex service account only")

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
        self._check_token_fields()
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
    "tenant_id": ("azure",),
    "client_id": ("azure",),
    "vertex_auth": ("vertex",),
    "token_url": ("azure", "vertex"),
    "region": ("bedrock",),
    "project": ("vertex",),
    "location": ("vertex",),
}
_REQUIRED: dict[str, tuple[str, ...]] = {"bedrock": ("region",), "vertex": ("project", "location")}


class Deployment(_Strict):
    """One place a routed model is served: a provider and the model name it knows it by."""

    provider: str = Field(min_length=1, max_length=128)
    """A name under `llm.providers` (or added at run time)."""
    model: str = Field(min_length=1, max_length=256)
    """The upstream model name sent in the request body (`gpt-4.1`, `claude-sonnet-4-5`, a deployment id)."""
    weight: int = Field(default=1, ge=1, le=1_000_000)
    """Share of the traffic under the `weighted` strategy."""
    priority: int = Field(default=0, ge=0, le=1000)
    """Order under the `priority` strategy: lower first."""
    price: ModelPrice | None = None
    """This deployment's price; None: the provider's `prices` entry for `model`, else free."""
    tpm: int | None = Field(default=None, ge=1)
    """Tokens per minute this deployment may be sent (per executor replica); beyond, it is skipped."""
    rpm: int | None = Field(default=None, ge=1)
    """Requests per minute this deployment may be sent (per executor replica); beyond, it is skipped."""


RoutingStrategy = Literal["priority", "weighted", "latency"]
"""How the deployments of a route are ordered for each request: by `priority`, at random in
proportion to `weight`, or lowest observed latency first (a deployment not measured yet first)."""


class ModelRoute(_Strict):
    """`llm.models.<name>`.

    The deployments a model name is served by, in failover order, and the model names to fall back to
    when every one of them failed."""

    deployments: list[Deployment] = Field(min_length=1, max_length=32)
    strategy: RoutingStrategy = "priority"
    fallbacks: list[str] = Field(default_factory=list, max_length=8)
    """Model names tried, in order, after every deployment of this one failed (each with its own
    deployments, strategy and fallbacks, depth first; a loop is refused)."""
    cooldown: float = Field(default=30.0, gt=0, le=3600)
    """Seconds a deployment is skipped after a 429 or an overload answer without `Retry-After`."""


class LlmLimits(_Strict):
    """A key's limits on `/v1`, across every model and deployment, counted in Valkey by policy."""

    tpm: int | None = Field(default=None, ge=1)
    """Tokens (prompt + completion, as providers report them) per minute; a request is refused
    once the minute's count reached it (the one that crosses it is let through: its size is
    known only after it ran)."""
    rpm: int | None = Field(default=None, ge=1)
    """Chat completion requests per minute (each agent-mode round counts)."""


class AgentMode(_Strict):
    """A key's agent mode on `/v1/chat/completions`.

    Bastion runs the tool calls it may, feeds their results back to the model, and loops until the model
    stops or proposes something else."""

    tools_to_auto_execute: list[str] = Field(min_length=1)
    """Gateway tool names (`<server>__<tool>`, `*` wildcards) Bastion runs without asking; only
    tools the key may use anyway are ever run."""
    max_depth: int = Field(default=10, ge=1, le=100)
    """Model round trips at most; the response says when the limit stopped the loop."""


class LlmSection(_Strict):
    """`llm:` in the configuration file."""

    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelRoute] = Field(default_factory=dict, max_length=MAX_ROUTES)
    """Routed model names (docs/llm-routing.md); a model a provider lists is a route of its own,
    one deployment, no fallbacks."""

    @model_validator(mode="after")
    def _models_unique(self) -> LlmSection:
        owner: dict[str, str] = {}
        if reserved := [name for name in self.providers if name.startswith("_")]:
            raise ValueError(f"llm.providers: names starting with '_' are reserved ({reserved[0]!r})")
        for name, provider in self.providers.items():
            for model in provider.models:
                if model in owner:
                    raise ValueError(
                        f"providers {owner[model]!r} and {name!r} list the same model: a model has one provider"
                    )
                owner[model] = name
        if problem := route_problem(self.models, owner, set(self.providers)):
            raise ValueError(problem)
        return self


def route_problem(
    routes: dict[str, ModelRoute],
    listed: dict[str, str],
    providers: set[str] | None,
    only: AbstractSet[str] | None = None,
) -> str | None:
    """Why `routes` cannot be served beside the models providers list (`listed`: model -> provider), or None.

    `providers`: the provider names to check deployments against (None: not checked). `only`: the routes
    whose own fields are checked (None: all); fallback loops are looked for among all of them."""
    for name, route in routes.items():
        if only is not None and name not in only:
            continue
        if name in listed:
            return (
                f"llm.models.{name}: provider {listed[name]!r} lists {name!r} too; a model has one route "
                f"(remove it from the provider's models, or add that provider as a deployment)"
            )
        for deployment in route.deployments:
            if providers is not None and deployment.provider not in providers:
                known = ", ".join(sorted(providers)) or "none"
                return f"llm.models.{name}: unknown provider {deployment.provider!r} (providers: {known})"
        for fallback in route.fallbacks:
            if fallback == name:
                return f"llm.models.{name}: a model cannot fall back to itself"
            if fallback not in routes and fallback not in listed:
                return f"llm.models.{name}: fallback {fallback!r} is neither a routed model nor one a provider lists"
    return _fallback_loop(routes)


def _fallback_loop(routes: dict[str, ModelRoute]) -> str | None:
    """A cycle of fallbacks (a -> b -> a), named, or None: a request must end after finitely many tries."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> str | None:
        if state.get(name) == 1:
            return " -> ".join([*path[path.index(name) :], name])
        if state.get(name) == 2 or name not in routes:
            return None
        state[name] = 1
        for fallback in routes[name].fallbacks:
            if found := visit(fallback, [*path, name]):
                return found
        state[name] = 2
        return None

    for name in routes:
        if loop := visit(name, []):
            return f"llm.models: fallbacks loop ({loop}); a chain of fallbacks must end"
    return None
