"""Request and response bodies of the principals, API tokens, roles and `/me` routes (`access_routes`).

Requests forbid unknown fields (a typo is a 422 naming it); PATCH bodies apply only the fields sent.
A token's secret is in `TokenCreated`, the answer to the request that made it, and nowhere else.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from libs.common.contracts.admin_principals import MAX_TOKEN_DAYS, ROLE_NAME, PrincipalName, RoleBinding

__all__ = [
    "Me",
    "PermissionOut",
    "PrincipalCreate",
    "PrincipalCreated",
    "PrincipalOut",
    "PrincipalPatch",
    "RoleCreate",
    "RoleOut",
    "RoleUpdate",
    "TokenCreate",
    "TokenCreated",
    "TokenOut",
]

_Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", examples=["alice"])]
RoleName = Annotated[str, Field(pattern=ROLE_NAME.pattern, examples=["release-manager"])]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenCreate(_Request):
    label: str = Field(default="", max_length=64, description="What the token is for (`ci`, `laptop`).")
    expires_in_days: int | None = Field(
        default=None, ge=1, le=MAX_TOKEN_DAYS, description="Lifetime; default BASTION_ADMIN_TOKEN_DAYS (90)."
    )


class TokenOut(BaseModel):
    id: str
    """The sha256 of the token (never the token)."""
    principal: str
    label: str
    created_at: float
    expires_at: float
    revoked: bool
    created_by: str


class TokenCreated(BaseModel):
    """The answer to issue and rotate: the only time the token is ever shown."""

    secret: str
    """Send it as `Authorization: Bearer <secret>`. Store it now: Bastion keeps only its sha256."""
    token: TokenOut


class PrincipalCreate(_Request):
    name: PrincipalName
    kind: Literal["person", "automation"]
    user_id: _Slug | None = None
    """A person: the Bastion user they sign in as through the oauth service (unique among principals)."""
    roles: list[RoleBinding] = Field(default_factory=list, max_length=32)
    token: TokenCreate | None = None
    """Issue an API token with the principal (its secret is in the answer)."""


class PrincipalPatch(_Request):
    roles: list[RoleBinding] | None = Field(default=None, max_length=32)
    """Absent: unchanged (null is refused)."""
    disabled: bool = None  # type: ignore[assignment]  # absent: unchanged
    user_id: _Slug | None = None


class PrincipalOut(BaseModel):
    name: str
    kind: Literal["person", "automation"]
    user_id: str | None
    roles: list[RoleBinding]
    disabled: bool
    created_at: float
    updated_at: float
    created_by: str
    revision: int


class PrincipalCreated(BaseModel):
    principal: PrincipalOut
    token: TokenCreated | None = None


class RoleUpdate(_Request):
    description: str = Field(default="", max_length=256)
    permissions: list[str] = Field(min_length=1, max_length=64)
    """Permission names (`GET /admin/v1/permissions`)."""


class RoleCreate(RoleUpdate):
    name: RoleName


class RoleOut(BaseModel):
    name: str
    description: str
    permissions: list[str]
    builtin: bool
    revision: int | None = None
    """None for a built-in role (it is code, not a record)."""


class PermissionOut(BaseModel):
    name: str
    description: str
    scopable: bool
    """Whether a binding scoped to a team or customer grants it (for that team's or customer's keys)."""
    owner_only: bool = False
    """Whether only the owner role holds it (no custom role may: `servers:command`)."""


class Me(BaseModel):
    """Who the credential belongs to, and what it may do (a console shows only what this allows)."""

    principal: str
    kind: Literal["person", "automation", "bootstrap"]
    roles: list[RoleBinding]
    permissions: list[str]
    """Held everywhere."""
    scoped: dict[str, list[str]]
    """Held for some teams or customers only: permission -> `team:<id>` / `customer:<id>`."""
    via: Literal["token", "session", "bootstrap"]
