"""Request and response bodies of the admin API.

Requests forbid unknown fields, so a typo (`grant` for `grants`) is a 422 naming it instead of a
silently ignored field. PATCH bodies default every field to None meaning "absent": only the fields
a client sends are applied (`model_fields_set`), and an explicit `null` clears a nullable field
(a budget) but is refused for a list or a name. Responses carry the record's KV `revision`, which
a client may send back as `If-Match` to make its next write conditional.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from libs.common.contracts.config import SERVER_NAME, ServerConfig, grant_problem
from libs.common.contracts.entities import Budget, Customer, RateLimit, Team, ToolGroup, User
from libs.common.contracts.llm_config import AgentMode, LlmLimits, ProviderConfig
from libs.common.contracts.messages import BreakerStatus
from libs.common.contracts.model_grants import MAX_MODEL_GRANTS
from libs.common.contracts.refused_values import refusal_text

__all__ = [
    "MASK",
    "CustomerCreate",
    "CustomerFields",
    "CustomerOut",
    "CustomerPatch",
    "ErrorBody",
    "FieldError",
    "GroupCreate",
    "GroupFields",
    "GroupOut",
    "GroupPatch",
    "KeyCreate",
    "KeyCreated",
    "KeyOut",
    "KeyPatch",
    "ProviderCreate",
    "ProviderOut",
    "ProviderUpdate",
    "ServerCreate",
    "ServerOut",
    "ServerUpdate",
    "TeamCreate",
    "TeamFields",
    "TeamOut",
    "TeamPatch",
    "UserCreate",
    "UserFields",
    "UserOut",
    "UserPatch",
    "field_errors",
    "masked",
    "valid_server_name",
]

MASK = "***"
"""Shown instead of every stored secret; sent back in a write it keeps the stored value, for the same
destination only (`secret_binding`)."""

_SLUG = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Slug = Annotated[str, Field(pattern=_SLUG, examples=["payments"])]
"""Same shape as `libs.common.contracts.entities` ids: usable as a KV key and in URLs."""


def _grant(pattern: str) -> str:
    if (problem := grant_problem(pattern)) is not None:
        raise ValueError(problem)
    return pattern


Grant = Annotated[str, AfterValidator(_grant), Field(examples=["github/*"])]
Name = Annotated[str, Field(min_length=1, max_length=64)]


def valid_server_name(name: str) -> bool:
    """A name `bastion config` accepts that is also a valid KV key (no trailing or doubled '.')."""
    return bool(SERVER_NAME.match(name)) and not name.endswith(".") and ".." not in name


def _server_name(name: str) -> str:
    if not valid_server_name(name):
        raise ValueError(
            "must start with a letter or digit and use only letters, digits, '_', '-', '.' (at most 64"
            " characters, no trailing or doubled '.')"
        )
    return name


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


def patch_of(model: type[_Request], name: str) -> type[_Request]:
    """The PATCH body of `model`: each of its fields with its type and limits, absent (None) by default.

    One declaration serves both, so a field a create or replace takes is never missing from the patch.
    An absent field stays as it is; an explicit `null` clears a nullable field (a budget) and is refused
    for any other (a name, a list), its type not allowing it."""
    fields: dict[str, Any] = {
        field: (info.annotation, FieldInfo.merge_field_infos(info, default=None, default_factory=None))
        for field, info in model.model_fields.items()
    }
    return create_model(name, __base__=_Request, __module__=__name__, **fields)


# ---------------------------------------------------------------- errors


class FieldError(BaseModel):
    loc: list[str | int]
    """Where the problem is, e.g. `["body", "grants", 0]`."""
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error of the admin API: a machine code, one human line, and the fields at fault."""

    error: str
    message: str
    detail: list[FieldError] | None = None
    permission: str | None = None
    """403: the permission the principal lacks (`docs/admin-api.md` lists them)."""


ModelGrantList = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=256)]] | None, Field(max_length=MAX_MODEL_GRANTS)
]
"""Model name patterns (`gpt-4.1*`); null: none stated, which with none stated elsewhere allows every model."""

# ---------------------------------------------------------------- keys


class KeyCreate(_Request):
    name: Name
    """Unique among keys that are not revoked; budgets and rate limits are counted per name."""
    grants: list[Grant] = Field(default_factory=list)
    groups: list[Slug] = Field(default_factory=list)
    user_id: Slug | None = None
    team_id: Slug | None = None
    customer_id: Slug | None = None
    budget: Budget | None = None
    rate_limit: RateLimit | None = None
    code_mode: bool = False
    """Offer the Code Mode meta-tools instead of the catalog (docs/code-mode.md)."""
    content_logging: bool = True
    """Record this key's tool arguments and results in audit events (else only their sizes and sha256)."""
    agent: AgentMode | None = None
    """Agent mode on `/v1/chat/completions` (docs/llm.md): the tool calls Bastion runs itself."""
    models: ModelGrantList = None
    """Model grants on `/v1` (patterns); null: none stated (docs/llm-routing.md, "Model grants")."""
    llm_limits: LlmLimits | None = None
    """Requests and tokens per minute on `/v1` (docs/llm-routing.md)."""


KeyPatch = patch_of(KeyCreate, "KeyPatch")


class KeyOut(BaseModel):
    """A key as stored: its id is the sha256 of the secret; the secret itself is never returned."""

    id: str
    name: str
    grants: list[str]
    groups: list[str]
    user_id: str | None
    team_id: str | None
    customer_id: str | None
    budget: Budget | None
    rate_limit: RateLimit | None
    revoked: bool
    code_mode: bool
    content_logging: bool = True
    agent: AgentMode | None = None
    models: list[str] | None = None
    llm_limits: LlmLimits | None = None
    created_at: float
    created_by: str | None = None
    source: str | None
    revision: int


class KeyCreated(BaseModel):
    """The answer to create and rotate: the only time the secret is ever shown."""

    secret: str
    """Send it as `Authorization: Bearer <secret>`. Store it now: Bastion keeps only its sha256."""
    key: KeyOut


# ---------------------------------------------------------------- tool groups, customers, teams, users


class GroupFields(_Request):
    description: str = ""
    tools: list[Grant] = Field(default_factory=list)
    models: ModelGrantList = None
    customer_id: Slug | None = None


class GroupCreate(GroupFields):
    id: Slug


GroupPatch = patch_of(GroupFields, "GroupPatch")


class GroupOut(ToolGroup):
    revision: int


class _MemberFields(_Request):
    """What a customer, a team and a user all have (`entities._Member`)."""

    name: Name
    groups: list[Slug] = Field(default_factory=list)


class CustomerFields(_MemberFields):
    budget: Budget | None = None


class CustomerCreate(CustomerFields):
    id: Slug


CustomerPatch = patch_of(CustomerFields, "CustomerPatch")


class CustomerOut(Customer):
    revision: int


class TeamFields(_MemberFields):
    customer_id: Slug | None = None
    budget: Budget | None = None
    models: ModelGrantList = None


class TeamCreate(TeamFields):
    id: Slug


TeamPatch = patch_of(TeamFields, "TeamPatch")


class TeamOut(Team):
    revision: int


class UserFields(_MemberFields):
    team_id: Slug | None = None
    rate_limit: RateLimit | None = None


class UserCreate(UserFields):
    id: Slug


UserPatch = patch_of(UserFields, "UserPatch")


class UserOut(User):
    revision: int


# ---------------------------------------------------------------- servers


class ServerCreate(_Request):
    name: Annotated[str, AfterValidator(_server_name), Field(examples=["github"])]
    config: ServerConfig
    """One `mcpServers` entry, as Claude Desktop / Cursor / Claude Code write it. Strings are stored
    literally: `${VAR}` is not expanded (the executor's environment is not the caller's)."""


class ServerUpdate(_Request):
    config: ServerConfig
    """Replaces the whole entry. A secret equal to the mask keeps the stored value, unless the entry's
    destination changes (`secret_binding`): then it must be given again."""


class ServerOut(BaseModel):
    name: str
    config: ServerConfig
    """With every `env` and `headers` value (and an OpenAPI server's auth secrets) replaced by the mask: they
    usually hold upstream credentials."""
    status: Literal["ready", "unavailable", "pending", "disabled"]
    """What the executor reports: `pending` until it has tried to connect, `disabled` when the entry is."""
    health: Literal["healthy", "degraded", "open", "down", "needs_auth", "disabled", "pending"] = "pending"
    """Finer than `status`: `degraded` = recent failures, breaker still closed; `open` = its circuit
    breaker refuses calls until a probe succeeds; `needs_auth` = the server answers HTTP 401."""
    breaker: BreakerStatus | None = None
    error: str | None = None
    stderr_tail: list[str] = Field(default_factory=list)
    """While unavailable: the last lines a stdio server wrote on stderr (its configured secrets masked)."""
    tools: int = 0
    """Tools the upstream exposes through Bastion (when ready)."""
    authorize_url: str | None = None
    """While `needs_auth` and the server uses OAuth: a fresh Bastion link an admin opens to authorize
    the server's shared token (docs/oauth.md). It expires (`BASTION_UPSTREAM_LINK_TTL`)."""
    revision: int


# ---------------------------------------------------------------- LLM providers


class ProviderCreate(_Request):
    name: Slug
    config: ProviderConfig
    """One `llm.providers` entry (docs/llm.md). An inline `api_key` is sealed before it is stored
    (when `BASTION_SECRETS_KEY` is set) and never shown again; `api_key_env` names a variable of
    the executors' environment instead."""


class ProviderUpdate(_Request):
    config: ProviderConfig
    """Replaces the whole entry. An `api_key` equal to the mask keeps the stored key, unless `base_url`
    changes (`secret_binding`): then it must be given again."""


class ProviderOut(BaseModel):
    name: str
    config: ProviderConfig
    """With `api_key` replaced by the mask when one is stored."""
    source: str | None = None
    """`config` when `bastion config apply` manages it (the next apply may change or remove it);
    null when added here."""
    revision: int


def masked(config: ServerConfig) -> ServerConfig:
    """`config` with every secret value (`env`, `headers`, an OpenAPI server's auth secrets) replaced by the mask."""
    return config.map_secrets(lambda _where, _value: MASK)


def field_errors(errors: Sequence[Any]) -> list[FieldError]:
    """Pydantic/FastAPI errors without their `input`, in the message too (it may hold an upstream credential)."""
    return [
        FieldError(
            loc=[p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
            msg=refusal_text(e),
            type=str(e.get("type", "value_error")),
        )
        for e in errors
    ]
