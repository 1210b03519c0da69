"""The Bastion configuration file's models (YAML or JSON).

`mcpServers` is accepted exactly as Claude Desktop, Cursor, Claude Code and Cline write it:
`command`/`args`/`env` for stdio, `url`/`headers` (optionally `type: http|sse`) for remote servers.
Bastion's own sections (`gateway`, `stack`, `keys`) sit beside it. Data only: reading the file,
expanding `${VAR}` from the environment and the messages of a document that does not validate are
`libs.common.settings.config_file`'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from libs.common.contracts.a2a_config import A2aSection
from libs.common.contracts.config_text import ConfigError, parse_untrusted_text
from libs.common.contracts.egress import EgressSection, check_allowed_hosts
from libs.common.contracts.entities import Budget, Customer, RateLimit, Team, ToolGroup, User
from libs.common.contracts.gateway_tasks import HostedTask
from libs.common.contracts.guardrails import GuardrailsSection
from libs.common.contracts.llm_config import AgentMode, LlmLimits, LlmSection
from libs.common.contracts.model_grants import MAX_MODEL_GRANTS
from libs.common.contracts.openapi_config import OpenApiSection, check_http_url
from libs.common.contracts.pins import PinMode
from libs.common.contracts.registry_entries import OFFICIAL_REGISTRY, RegistryOrigin
from libs.common.contracts.repeats import named_once

__all__ = [
    "BastionConfig",
    "CircuitBreakerConfig",
    "ConfigError",
    "GatewaySection",
    "KeyConfig",
    "SandboxConfig",
    "ServerConfig",
    "StackSection",
    "grant_problem",
    "parse_untrusted_text",
]

# \Z, not $: `$` also matches before a trailing newline, which would let "github\n" through
SERVER_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
# keys other MCP clients write into their mcpServers entries; accepted and ignored
_FOREIGN_SERVER_KEYS = frozenset({"autoApprove", "alwaysAllow", "description", "transportType", "envFile", "oauth"})
# Cline's legacy `transportType` of a remote server, honoured when `type` is absent
_LEGACY_TRANSPORTS = frozenset({"sse", "http"})
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_SECRET_FIELDS = ("key", "key_env", "key_sha256")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _as_text(value: Any) -> Any:
    """YAML scalars written without quotes (`PORT: 8080`, `DEBUG: true`) as the strings meant."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


class CircuitBreakerConfig(_Strict):
    """When the executor stops sending calls to a failing server, and when it tries again."""

    failure_threshold: Annotated[int, Field(ge=1, le=1000)] = 5
    """Consecutive connection failures or timeouts that open the breaker."""
    reset_timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0
    """Seconds the breaker stays open before one probe call is let through (doubled after each
    failed probe, up to ten times this)."""


class SandboxConfig(_Strict):
    """The operating system's wall around one stdio server (docs/stdio-sandbox.md).

    What it may read, write and connect to beyond its defaults, and its resource limits."""

    mode: Literal["on", "off"] = "on"
    """"off" runs the server with every right of the executor's user (owner-only; logged as a
    warning every time the server starts)."""
    read: list[str] = Field(default_factory=list)
    """Further folders or files it may read (and execute), e.g. the data a server serves."""
    write: list[str] = Field(default_factory=list)
    """Further folders or files it may write, e.g. a filesystem server's folder."""
    connect: list[Annotated[int, Field(ge=1, le=65535)]] | Literal["any"] | None = None
    """TCP ports it may connect to, on any host: None (the default) the web's (53, 80 and 443: DNS,
    HTTP, HTTPS), so not the stack's own listeners on loopback (NATS, Valkey, the admin API,
    `/metrics`); a list: those only ([] none); "any": every port (owner-only, like all of `sandbox`)."""
    memory_mb: Annotated[int, Field(ge=64, le=1_048_576)] = 1024
    """Its heap and other private writable memory, in MiB (RLIMIT_DATA)."""
    processes: Annotated[int, Field(ge=1, le=100_000)] = 128
    """Processes and threads it may start beyond what the user already runs (RLIMIT_NPROC)."""
    cpu_seconds: Annotated[int, Field(ge=1)] | None = None
    """CPU seconds over its whole life (RLIMIT_CPU); None: no limit (a server lives for days)."""
    open_files: Annotated[int, Field(ge=16, le=1_048_576)] = 4096
    """Open files and sockets at once (RLIMIT_NOFILE)."""

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_switch(cls, mode: Any) -> Any:
        """YAML 1.1 reads an unquoted `on`/`off` as a boolean."""
        return {True: "on", False: "off"}.get(mode, mode) if isinstance(mode, bool) else mode

    @field_validator("read", "write")
    @classmethod
    def _paths(cls, paths: list[str]) -> list[str]:
        for i, path in enumerate(paths):
            if not path.strip() or "\x00" in path:
                raise ValueError(f"entry {i} is not a path (empty, or holds a NUL character)")
        return paths


def grant_problem(pattern: str) -> str | None:
    """Why `pattern` is not a grant, or None.

    Grants are `*`, `server/tool`, `server/prompt:name` or `server/resource:uri` (a URI may contain `/`),
    wildcards allowed (docs/access-control.md)."""
    server, slash, name = pattern.partition("/")
    if pattern == "*" or (slash and server and name and ("/" not in name or name.startswith("resource:"))):
        return None
    return (
        "a grant must look like 'server/tool', 'server/prompt:name' or 'server/resource:uri' (wildcards allowed) or '*'"
    )


A2A_TASK_AFTER_MS = 1000
"""An A2A agent's default `tasks`: a skill call running longer becomes a gateway-hosted task."""


class ServerConfig(_Strict):
    """One upstream MCP server, in the `mcpServers` dialect plus Bastion's optional knobs."""

    type: Literal["stdio", "http", "streamable-http", "streamableHttp", "sse", "openapi", "a2a"] | None = None
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # Bastion additions
    openapi: OpenApiSection | None = None
    """A REST API described by an OpenAPI 3.0 / 3.1 or Swagger 2.0 document, served as this server's tools
    (docs/openapi.md); `headers` go on each of its requests."""
    a2a: A2aSection | None = None
    """With `type: a2a`: how the agent's card is read and trusted (docs/a2a.md)."""
    timeout: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """Seconds a single upstream call may take before it fails with a timeout error."""
    disabled: bool = False
    tools: list[str] | None = None
    """Tool names (wildcards allowed) this server exposes through Bastion; all when omitted."""
    prices: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    """USD per call by tool name (wildcards allowed; the most specific match wins); unlisted tools are free."""
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)
    """Requests per window by tool name (wildcards allowed), across every caller of that tool."""
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)
    tasks: dict[str, HostedTask] = Field(default_factory=dict)
    """Tools (by name, wildcards allowed; the most specific match wins) the gateway turns into a task of
    its own when a call outlasts `after_ms`, for agents that speak MCP tasks (docs/tasks.md)."""
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    """Re-sends after a connection failure, only for tools annotated idempotent or read-only."""
    protocol: Literal["auto", "legacy"] = "auto"
    """Which protocol era Bastion speaks to this server. "auto": 2026-07-28 when the server offers it,
    else the newest handshake version. "legacy": always the `initialize` handshake (2025-11-25 and
    older), for servers whose tools rely on what 2026-07-28 removed: requests to the agent mid-call
    through the old API (sampling, elicitation, roots), `resources/subscribe`, `logging/setLevel`."""
    namespace: bool = True
    """False serves this server's tools and prompts under their own names instead of
    `<server>__<name>` (for agents that call tools by fixed names). A name another server already
    uses falls back to the namespaced form, with a warning in the ingress log."""
    per_user: bool = False
    """An OAuth upstream called with each user's own token, over that user's own session (never
    another user's); a caller who is no user, or has not authorized yet, is refused (docs/oauth.md)."""
    allow_private_hosts: list[str] = Field(default_factory=list)
    """Hosts, exactly as this server's URLs write them (`url`, `openapi.document`, `openapi.base_url`,
    their redirects and OAuth token URLs), it may reach although they are (or resolve to) loopback,
    private, link-local or other non-public addresses; refused otherwise (`libs.common.contracts.egress`,
    docs/configuration.md "Egress"). Only an owner may set it."""
    pinning: PinMode = "tofu"
    """How drift of this server's tool, prompt and template definitions is handled (docs/supply-chain.md):
    "tofu" trusts what the server lists when first added and quarantines later additions and changes
    until a person approves them; "approve" quarantines everything until approved; "warn" serves drift,
    flagged."""
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    """The wall around a stdio server's process (docs/stdio-sandbox.md); on by default."""
    registry: RegistryOrigin | None = None
    """Set when the entry was imported from an MCP Registry (docs/registry.md): which registry, which
    server, the version it is pinned at. A newer version there is offered as an update to approve."""

    @model_validator(mode="before")
    @classmethod
    def _drop_client_extras(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        legacy = data.get("transportType")
        cleaned = {k: v for k, v in data.items() if k not in _FOREIGN_SERVER_KEYS}
        if "type" not in cleaned and not cleaned.get("command") and legacy in _LEGACY_TRANSPORTS:
            cleaned["type"] = legacy
        if (cleaned.get("type") == "a2a" or "a2a" in cleaned) and "tasks" not in cleaned:
            # an agent's work is a task: slow skills become gateway-hosted tasks any replica answers for
            cleaned["tasks"] = {"*": {"after_ms": A2A_TASK_AFTER_MS}}
        return cleaned

    @field_validator("allow_private_hosts")
    @classmethod
    def _allowed_hosts(cls, hosts: list[str]) -> list[str]:
        return check_allowed_hosts(hosts)

    @field_validator("args", mode="before")
    @classmethod
    def _args_as_text(cls, args: Any) -> Any:
        return [_as_text(a) for a in args] if isinstance(args, list) else args

    @field_validator("env", "headers", mode="before")
    @classmethod
    def _values_as_text(cls, mapping: Any) -> Any:
        return {k: _as_text(v) for k, v in mapping.items()} if isinstance(mapping, dict) else mapping

    @model_validator(mode="after")
    def _one_transport(self) -> ServerConfig:
        if self.openapi is not None or self.type == "openapi":
            return self._openapi_only()
        if self.type == "a2a" or self.a2a is not None:
            if self.type not in (None, "a2a"):
                raise ValueError(f"an 'a2a' section is for type 'a2a', not {self.type!r}")
            return self._a2a_only()
        if self.command and self.url:
            raise ValueError("give either 'command' (stdio) or 'url' (http/sse), not both")
        if not self.command and not self.url:
            raise ValueError("needs 'command' (stdio server) or 'url' (streamable HTTP / SSE server)")
        if self.type == "stdio" and not self.command:
            raise ValueError("type 'stdio' needs 'command'")
        if self.type not in (None, "stdio") and not self.url:
            raise ValueError(f"type {self.type!r} needs 'url'")
        if self.url:
            _check_url(self.url)
        if self.url and self.sandbox != SandboxConfig():
            raise ValueError("'sandbox' is for stdio servers (a process Bastion starts), not remote ones")
        if self.per_user and not self.url:
            raise ValueError("'per_user' is for remote (http/sse) servers that use OAuth, not stdio")
        if self.per_user and any(k.lower() == "authorization" for k in self.headers):
            raise ValueError("'per_user' needs each user's own OAuth token: drop the 'Authorization' header")
        return self

    def _openapi_only(self) -> ServerConfig:
        if self.openapi is None:
            raise ValueError("type 'openapi' needs an 'openapi' section naming the document")
        if self.command or self.url:
            raise ValueError("an 'openapi' server takes no 'command' or 'url' (give 'openapi.base_url')")
        if self.type not in (None, "openapi"):
            raise ValueError(f"an 'openapi' server cannot have type {self.type!r}")
        if self.sandbox != SandboxConfig():
            raise ValueError("'sandbox' is for stdio servers (a process Bastion starts), not 'openapi' ones")
        if self.env:
            raise ValueError("an 'openapi' server runs no process: 'env' does not apply (secrets go in 'openapi.auth')")
        if self.per_user and self.openapi.oauth_resource is None:
            raise ValueError("'per_user' needs 'openapi.auth' of type 'oauth' (each user's own OAuth token)")
        if self.per_user and any(k.lower() == "authorization" for k in self.headers):
            raise ValueError("'per_user' needs each user's own OAuth token: drop the 'Authorization' header")
        return self

    def _a2a_only(self) -> ServerConfig:
        if not self.url or self.command:
            raise ValueError("an 'a2a' server is an agent: give its 'url' (where its card is served), no 'command'")
        _check_url(self.url)
        if self.sandbox != SandboxConfig() or self.env:
            raise ValueError("an 'a2a' server runs no process: 'sandbox' and 'env' do not apply")
        if self.per_user:
            raise ValueError("'per_user' is not supported for 'a2a' agents yet")
        return self

    @property
    def transport(self) -> Literal["stdio", "http", "sse", "openapi", "a2a"]:
        if self.type == "a2a" or self.a2a is not None:
            return "a2a"
        if self.openapi is not None:
            return "openapi"
        if self.command:
            return "stdio"
        if self.type == "sse":
            return "sse"
        return "http"

    def secret_values(self) -> list[str]:
        """Every value sealed at rest (`libs.common.runtime.sealing`).

        `env`, `headers`, an OpenAPI server's auth secrets."""
        extra = self.openapi.secret_values() if self.openapi is not None else []
        return [*self.env.values(), *self.headers.values(), *extra]

    def map_secrets(self, fn: Callable[[str, str], str]) -> ServerConfig:
        """A copy with every secret value replaced by `fn(where, value)`.

        `where` names it for messages (`env 'TOKEN'`, `header 'Authorization'`, `openapi.auth.token`)."""
        if not self.secret_values():
            return self
        update: dict[str, Any] = {
            "env": {k: fn(f"env {k!r}", v) for k, v in self.env.items()},
            "headers": {k: fn(f"header {k!r}", v) for k, v in self.headers.items()},
        }
        if self.openapi is not None:
            update["openapi"] = self.openapi.map_secrets(lambda where, v: fn(f"openapi.{where}", v))
        return self.model_copy(update=update)


def _check_url(url: str) -> None:
    # the URL itself stays out of the message: query strings often carry tokens
    check_http_url(url, "url")


class KeyConfig(_Strict):
    """A virtual key declared in the file. Only its sha256 ever leaves the loader."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    key: str | None = Field(default=None, repr=False)
    key_env: Annotated[str | None, Field(pattern=_ENV_NAME)] = None
    key_sha256: Annotated[str | None, Field(pattern=r"^[0-9a-f]{64}$")] = None
    tools: list[str] = Field(default_factory=list)
    """Grants: `server/tool` patterns with `*` wildcards. Deny by default: empty means nothing."""
    groups: list[str] = Field(default_factory=list)
    """Tool groups (from the `groups` section or the admin API) this key also gets."""
    user: str | None = None
    team: str | None = None
    customer: str | None = None
    budget: Budget | None = None
    rate_limit: RateLimit | None = None
    agent: AgentMode | None = None
    """Agent mode on `/v1/chat/completions` (docs/llm.md); None: tool calls come back to the application."""
    models: list[str] | None = Field(default=None, max_length=MAX_MODEL_GRANTS)
    """Model grants on `/v1` (patterns, `*` wildcards); None: none stated (docs/llm-routing.md, "Grants")."""
    llm_limits: LlmLimits | None = None
    """Tokens and requests per minute on `/v1` (docs/llm-routing.md)."""
    code_mode: bool = False
    """Offer this key the Code Mode meta-tools instead of the catalog (docs/code-mode.md)."""
    discovery: bool = False
    """Discovery mode: `tools/list` offers `find_tools` and `discovery_pinned` instead of the
    catalog, and what the agent finds joins its list (docs/code-mode.md, "Discovery mode")."""
    discovery_pinned: list[str] = Field(default_factory=list, max_length=100)
    """Tools (gateway names, e.g. `time__get_current_time`) always listed in discovery mode."""
    content_logging: bool = True
    """Record this key's tool arguments and results in audit events (else only sizes and sha256)."""

    @model_validator(mode="after")
    def _one_secret(self) -> KeyConfig:
        given = [f for f in _SECRET_FIELDS if getattr(self, f) is not None]
        if not given:
            raise ValueError("needs one of 'key', 'key_env' or 'key_sha256'")
        if len(given) > 1:
            both = " and ".join(map(repr, given))
            raise ValueError(f"give only one of 'key', 'key_env' or 'key_sha256', not {both}")
        if self.key is not None and len(self.key) < 16:
            raise ValueError("'key' must be at least 16 characters")
        return self

    @field_validator("tools")
    @classmethod
    def _grant_shape(cls, grants: list[str]) -> list[str]:
        for grant in grants:
            if (problem := grant_problem(grant)) is not None:
                raise ValueError(problem)
        return grants


class GatewaySection(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8420
    max_body_bytes: Annotated[int, Field(gt=0)] = 4 * 1024 * 1024
    response_mode: Literal["json", "sse"] = "json"
    call_timeout: Annotated[float, Field(gt=0, le=3600)] = 120.0
    """Upper bound on a whole tools/call through the gateway, whatever the server allows."""
    public_url: Annotated[str | None, Field(pattern=r"^https?://[^/?#\s]+$")] = None
    """Scheme and authority agents reach the gateway under behind a proxy (`https://mcp.example.com`):
    the OAuth issuer; `bastion up` prints `<public_url>/mcp` as the MCP URL. Unset: `http://<host>:<port>`."""


class StackSection(_Strict):
    """External infrastructure. Anything left unset is started embedded by `bastion up`."""

    nats_url: str | None = None
    redis_url: str | None = None
    clickhouse_url: str | None = None
    data_dir: str = ".bastion"
    colocate: bool = False
    """`bastion up` runs ingress and the executor as one process (deploy/README.md, "Co-located
    ingress and executor"): a call's hop between them is handed over in memory, not through
    nats-server (~15-20 % less gateway CPU per call, ~0.4 ms less latency). The internet-facing
    process then also holds policy's work-signing key and the upstream sessions; under `bastion up`
    (one host, one user) that separation was nominal anyway. Off: every service is its own process."""
    nats_cluster: int = Field(default=1, ge=1, le=7)
    """Embedded nats-servers `bastion up` runs (no `nats_url`): 1, or a cluster of 3 to 7 on this
    machine, joined by routes on loopback, with every stream, bucket and object store replicated on
    3 of them (`BASTION_NATS_REPLICAS`), so one may be lost (deploy/README.md, "Trying a NATS cluster")."""
    nats_threads: int = Field(default=1, ge=0, le=1024)
    """GOMAXPROCS of the embedded nats-servers (no `nats_url`): the cores Go schedules their goroutines
    on. 1: Go does not wake idle cores to look for work each time a message readies a goroutine, CPU
    that the gateway's own processes on the same machine could use (docs/configuration.md has the
    figures). 0: Go's default, every core (or the GOMAXPROCS `bastion up` was started with)."""

    @field_validator("nats_cluster")
    @classmethod
    def _quorum(cls, size: int) -> int:
        if size == 2:
            raise ValueError("a NATS cluster needs 3 or more servers to survive losing one (1: a single server)")
        return size


class BastionConfig(_Strict):
    mcp_servers: dict[str, ServerConfig] = Field(default_factory=dict, alias="mcpServers")
    keys: Annotated[list[KeyConfig], named_once("key")] = Field(default_factory=list)
    groups: list[ToolGroup] = Field(default_factory=list)
    customers: list[Customer] = Field(default_factory=list)
    teams: list[Team] = Field(default_factory=list)
    users: list[User] = Field(default_factory=list)
    gateway: GatewaySection = Field(default_factory=GatewaySection)
    stack: StackSection = Field(default_factory=StackSection)
    llm: LlmSection = Field(default_factory=LlmSection)
    """OpenAI-compatible providers behind `/v1/chat/completions` (docs/llm.md)."""
    guardrails: GuardrailsSection = Field(default_factory=GuardrailsSection)
    """Checks on definitions, arguments and results (docs/guardrails.md)."""
    egress: EgressSection = Field(default_factory=EgressSection)
    """Where upstream connections may go: `allow_private_hosts` lets every server reach those hosts
    although they are not public addresses (docs/configuration.md, "Egress")."""
    registries: dict[str, str] = Field(default_factory=lambda: {"official": OFFICIAL_REGISTRY})
    """MCP Registries servers are imported from, by name: each the base URL of a server serving the
    registry API (`/v0.1/servers`, docs/registry.md). The official one by default."""

    @field_validator("registries")
    @classmethod
    def _registry_urls(cls, registries: dict[str, str]) -> dict[str, str]:
        for i, (name, url) in enumerate(registries.items()):
            if not SERVER_NAME.match(name):
                raise ValueError(f"registry #{i + 1}'s name: letters, digits, '_', '-', '.' only")
            if not re.match(r"\Ahttps?://[^\s/?#]+(/[^\s?#]*)?\Z", url):
                raise ValueError(f"registry {name!r}: its URL is not an http(s) base URL")
        return {name: url.rstrip("/") for name, url in registries.items()}

    policies: str | None = None
    """Cedar policies beside the grants (docs/policy.md), compiled when the file is read
    (`cedar_policies.check_config_policies`): applying the file publishes them as a new version when
    they differ from the active one. Absent: the policies stay as the admin API last set them."""

    @field_validator("mcp_servers")
    @classmethod
    def _server_names(cls, servers: dict[str, ServerConfig]) -> dict[str, ServerConfig]:
        for i, name in enumerate(servers):
            if not SERVER_NAME.match(name):
                raise ValueError(
                    f"server name #{i + 1} must start with a letter or digit and use only letters, digits,"
                    " '_', '-', '.' (at most 64 characters)"
                )
        return servers
