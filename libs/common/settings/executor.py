"""The executor's settings, its deny-list among them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from libs.common.contracts.egress import EgressSection
from libs.common.contracts.guardrails import GuardrailsSection
from libs.common.settings.base import RequestPathSettings

__all__ = ["DenyList", "ExecutorSettings"]


class DenyList(BaseModel):
    """`BASTION_DENY_LIST` (JSON): what every executor refuses, whoever calls (the `deny_list` interceptor)."""

    model_config = ConfigDict(extra="forbid")

    tools: list[str] = Field(default_factory=list, max_length=1024)
    """Grant patterns (`server/tool`, `server/prompt:name`, `*/delete_*`): hidden from every listing,
    and refused when called by name."""
    max_argument_bytes: int | None = Field(default=None, gt=0)
    """Arguments (their JSON) larger than this are refused before the upstream is called."""
    terms: list[str] = Field(default_factory=list, max_length=256)
    """Words or phrases (case-insensitive) replaced by `[REDACTED]` in every result before the agent sees it."""

    @field_validator("terms")
    @classmethod
    def _plain_terms(cls, terms: list[str]) -> list[str]:
        if any(not term.strip() or len(term) > 1024 for term in terms):
            raise ValueError("each term is 1 to 1,024 characters, not only spaces")
        return terms


class ExecutorSettings(RequestPathSettings):
    bus_signing_key: SecretStr = SecretStr("")
    """Policy's HMAC key (`libs.common.bus.work_signing`): set, the executor runs only work signed with it."""
    secrets_key: SecretStr = SecretStr("")
    """Fernet key(s), comma-separated, newest first: opens the sealed `env`/`headers` values of
    `bastion_servers` (`libs.common.runtime.sealing`). Every key in the list can decrypt."""
    stdio_root: str = ""
    """Folder holding each stdio server's own working folder (`<stdio_root>/<server>`), the only
    place a sandboxed server may write by default (docs/security.md). `bastion up` uses
    `<data_dir>/servers`; empty: a folder under the system's temporary directory."""
    stdio_write: list[str] = Field(default_factory=list)
    """Paths beyond `stdio_root` its stdio servers' `sandbox.write` may name: the executor's own box
    holds them too when it is confined (`libs.common.runtime.walls.boxes`), since a server's box lies inside
    it. `bastion up` gives every `sandbox.write` of its config file."""
    connect_timeout: float = 30.0
    """Seconds to wait for an upstream to accept a session before marking it unavailable."""
    reconnect_max_backoff: float = 30.0
    health_interval: float = 15.0
    """Seconds a connected upstream may stay idle before the executor pings it; a failed ping
    reconnects the session."""
    drift_interval: float = Field(default=2.0, ge=0)
    """Seconds between re-listings of every connected upstream's definitions (tools, prompts,
    resource templates), notification or not, so a definition changed silently is pinned against
    within this long plus one listing (docs/supply-chain.md); a listing equal to the last one costs
    the listing and one comparison. A server whose listing takes longer than a tenth of this waits
    ten times its listing's time instead. 0: re-list only when the upstream announces a change."""
    catalog_heartbeat: float = Field(default=10.0, gt=0)
    """Seconds between refreshes of a "ready" catalog entry. Another replica's "unavailable" for the
    same server does not replace a "ready" refreshed within 3 heartbeats (the server works here), so
    a replica that dies stops hiding the failure of the others after at most that long."""
    max_user_sessions: int = Field(default=256, ge=1, le=100_000)
    """Upstream sessions this executor keeps open for users of `per_user` servers; beyond it the least
    recently used one is closed (that user's next call opens a new one)."""
    validation_values: bool = False
    """A tool call whose arguments the tool's `inputSchema` refuses is answered naming each field and
    the rule it breaks, never the value sent (it may be a secret, and the refusal is kept in the audit
    row's `error` column, which readers without `audit:payloads` see). True: the agent's answer quotes
    the values too (jsonschema's wording); the audit row still does not."""
    lean_calls: bool = True
    """Send each `tools/call` on a streamable-HTTP session as one POST on its pooled connection,
    parsing the answer with orjson, and on a stdio session as one line on its pipe, instead of
    through the MCP SDK's dispatcher (which still handles setup, listings, notifications and server
    requests). Measured: most of the executor's CPU per call on HTTP (docs/benchmarks.md). False:
    every call the SDK's way."""
    deny_list: DenyList | None = None
    """Tools hidden and refused, an argument size limit and terms redacted from results, for every
    caller (`interceptors.deny_list`); None: no such checks (and none of their cost)."""

    guardrails: GuardrailsSection = Field(default_factory=GuardrailsSection)
    """`BASTION_GUARDRAILS` (JSON, the config file's `guardrails` section: `bastion up` sets it):
    checks on definitions, arguments and results (docs/guardrails.md). Unset: the built-in rules
    (credentials in arguments and results redacted; injection markers, hidden Unicode and
    exfiltration links in definitions flagged). `{"defaults": false}` with no rules: none at all."""
    egress: EgressSection = Field(default_factory=EgressSection)
    """`BASTION_EGRESS` (JSON, the config file's `egress` section: `bastion up` sets it): hosts every
    upstream may reach although they are not public addresses (`allow_private_hosts`), besides each
    server's own list. Unset: public addresses only."""
    pinning: bool = True
    """Pin every tool, prompt and template definition and quarantine drift, per each server's
    `pinning` mode (docs/supply-chain.md). False: definitions are served as listed, unpinned (a
    deployment that pins elsewhere; not recommended)."""

    @field_validator("deny_list", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("guardrails", "egress", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return {} if isinstance(value, str) and not value.strip() else value
