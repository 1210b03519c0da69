"""Configuration and catalog records kept in KV (`messages`): keys, servers, each server's catalog."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.entities import Budget, RateLimit
from libs.common.contracts.gateway_tasks import HostedTask
from libs.common.contracts.llm_config import AgentMode, LlmLimits
from libs.common.contracts.messages_base import BusMessage
from libs.common.contracts.model_grants import MAX_MODEL_GRANTS

__all__ = ["MAX_ALIASES", "BreakerStatus", "CatalogTool", "KeyRecord", "ServerCatalog", "ServerRecord"]


class KeyRecord(BusMessage):
    id: str
    """sha256 hex of the secret; also the KV key. The secret itself is never stored."""
    name: str
    grants: list[str] = Field(default_factory=list)
    """`server/tool` patterns (wildcards allowed); deny by default."""
    groups: list[str] = Field(default_factory=list)
    """Tool group ids whose grants this key also gets."""
    user_id: str | None = None
    team_id: str | None = None
    customer_id: str | None = None
    budget: Budget | None = None
    rate_limit: RateLimit | None = None
    agent: AgentMode | None = None
    """Agent mode on `/v1/chat/completions`: which tool calls Bastion runs itself, and how deep it loops."""
    models: list[str] | None = Field(default=None, max_length=MAX_MODEL_GRANTS)
    """Model grants (patterns); None: this key states none (`model_grants`)."""
    llm_limits: LlmLimits | None = None
    revoked: bool = False
    content_logging: bool = True
    """Whether audit events of this key's requests record their arguments and results (else only
    sizes and sha256); the deployment's `BASTION_AUDIT_CONTENT=false` turns it off for every key."""
    code_mode: bool = False
    """Whether `tools/list` offers this key the Code Mode meta-tools instead of the catalog
    (docs/code-mode.md); the `X-Bastion-Code-Mode` request header overrides it."""
    discovery: bool = False
    """Whether `tools/list` offers this key `find_tools` and its pinned tools instead of the catalog
    (docs/code-mode.md, "Discovery mode"); the `X-Bastion-Discovery` request header overrides it."""
    discovery_pinned: list[str] = Field(default_factory=list, max_length=100)
    """Gateway tool names always listed in discovery mode (when the key may use them)."""
    created_at: float = Field(default_factory=time.time)
    created_by: str | None = None
    """The admin principal that was shown its secret (created or last rotated the key through the admin
    API); None for keys made otherwise (the config file). Nobody decides an approval of a call made
    with a key they hold the secret of (docs/approvals.md)."""
    source: str | None = None
    """Who manages the record: "config" for keys `bastion up` applied from the config file (removed
    again when they leave it); None for keys created any other way, which config runs never touch."""


class ServerRecord(BusMessage):
    name: str
    config: ServerConfig
    source: str | None = None
    """"config" for servers `bastion up` / `config apply` wrote from a file (removed again when they
    leave it); None for servers added at run time (admin API), which applying a file never touches."""


MAX_ALIASES = 16
"""Stable names a catalog tool carries besides its own, at most (Cedar asks the policies once per name)."""


class CatalogTool(BaseModel):
    model_config = ConfigDict(extra="ignore")
    tool: str
    """The upstream's own name."""
    definition: dict[str, Any]
    """The upstream's `Tool` exactly as it sent it (wire JSON, camelCase)."""
    aliases: list[str] = Field(default_factory=list, max_length=MAX_ALIASES)
    """The tool's stable identities besides `tool`, which Cedar policies judge it under too
    (docs/policy.md, "Stable identities"): an OpenAPI operation's operationId (or `METHOD /path`),
    the names it was listed under before a rename a person approved."""


class BreakerStatus(BaseModel):
    """The executor's circuit breaker for one server, as last published."""

    model_config = ConfigDict(extra="ignore")
    state: Literal["closed", "open", "half_open"]
    failures: int = 0
    """Consecutive connection failures and timeouts counted so far."""
    probe_at: float | None = None
    """Unix time when an open breaker lets its next probe call through."""


class ServerCatalog(BusMessage):
    server: str
    status: Literal["ready", "unavailable"]
    """Whether the server's tools are listed (ingress includes them when "ready"); see `health`."""
    error: str | None = None
    stderr_tail: list[str] = Field(default_factory=list, max_length=16)
    """With status "unavailable": the last lines the server wrote on its stderr (a stdio server)
    before the attempt failed, at most a few KiB, its configured `env` and `headers` values masked:
    often the real cause behind `error` ("can't open file ...")."""
    health: Literal["healthy", "degraded", "open", "down", "needs_auth", "disabled"] | None = None
    """Finer than `status`: degraded = recent failures, breaker still closed; open = calls are
    refused at once; down = not connected. None from executors that predate it."""
    breaker: BreakerStatus | None = None
    protocol_version: str | None = None
    tools: list[CatalogTool] = Field(default_factory=list)
    namespace: bool = True
    """False when the server's tools and prompts keep their own names (`ServerConfig.namespace`)."""
    per_user: bool = False
    """Configured `per_user`: each user is listed what their own session lists
    (`libs.common.contracts.user_catalogs`), not this shared listing."""
    capabilities: dict[str, Any] = Field(default_factory=dict)
    """The upstream's server capabilities (wire JSON): which of prompts, resources (subscribe),
    completions and logging it offers."""
    prompts: list[dict[str, Any]] = Field(default_factory=list)
    """The upstream's prompts (wire JSON), every page."""
    resources: list[dict[str, Any]] = Field(default_factory=list)
    resource_templates: list[dict[str, Any]] = Field(default_factory=list)
    skills: list[dict[str, Any]] = Field(default_factory=list)
    """The upstream's skills (`io.modelcontextprotocol/skills` `skills/list` entries, upstream URIs)."""
    withheld: list[str] = Field(default_factory=list)
    """Tools (upstream names) held out of `tools` but answered for by name: a quarantined definition
    waiting for a person's approval. Ingress routes a call of one so the executor refuses it naming
    the approval needed, instead of answering that no such tool exists."""
    withheld_prompts: list[str] = Field(default_factory=list)
    """The same for prompts (upstream names): a `prompts/get` of one is routed and refused there."""
    withheld_templates: list[str] = Field(default_factory=list)
    """The same for resource templates (`uriTemplate`): a read of a URI only one of them matches is
    routed to the executor, which refuses it naming the approval needed."""
    hosted_tasks: dict[str, HostedTask] = Field(default_factory=dict)
    """`ServerConfig.tasks`: tools (name patterns) ingress turns into tasks of its own when slow."""
    updated_at: float = Field(default_factory=time.time)
    publisher: str | None = None
    """The executor process that wrote the entry (its instance name and a per-start nonce). Another
    replica does not overwrite a fresh "ready" with its own "unavailable" (`executor.catalog_store`);
    a "ready" is refreshed every `catalog_heartbeat` seconds so a dead replica's one ages out. None
    from executors that predate it."""

    def same_listing(self, other: ServerCatalog) -> bool:
        """`other` says what this entry says.

        Only a heartbeat (or another replica) wrote it again, so a consumer need not rebuild what it
        derives from the catalog."""
        refresh = {"updated_at", "publisher"}
        return self.model_dump(exclude=refresh) == other.model_dump(exclude=refresh)
