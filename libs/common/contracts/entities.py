"""Governance entities: customers, teams, users, tool groups, and what limits them.

Stored in the JetStream KV bucket `subjects.KV_POLICY` under `<kind>.<id>` (e.g. `team.payments`),
one watch away from every policy and ingress replica. Virtual keys stay in `subjects.KV_KEYS`
(`messages.KeyRecord`) and servers in `subjects.KV_SERVERS`. Ids are slugs so they can be KV keys.

Hierarchy: customer → team → user → key. A key may name a user, a team and a customer directly;
the policy view fills in what the key leaves out from its user (user → team → customer).
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from libs.common.contracts.model_grants import MAX_MODEL_GRANTS

__all__ = [
    "ENTITY_KINDS",
    "Budget",
    "Customer",
    "Entity",
    "Period",
    "RateLimit",
    "Team",
    "ToolGroup",
    "User",
    "entity_key",
]

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
"""Lower-case id usable as a KV key and in URLs."""

Period = Literal["minute", "hour", "day", "week", "month"]
"""Calendar-aligned reset periods, in UTC (a `day` budget resets at 00:00 UTC, `week` on Monday)."""

Window = Literal["second", "minute", "hour", "day"]


class _Entity(BaseModel):
    model_config = ConfigDict(extra="forbid")
    v: int = 1
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit_usd: Annotated[float, Field(ge=0)]
    period: Period = "month"


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests: Annotated[int, Field(ge=1)]
    per: Window = "minute"


class ToolGroup(_Entity):
    """A named bundle of grants (`server/tool` patterns), attachable to keys, users, teams, customers."""

    id: Slug
    description: str = ""
    tools: list[str] = Field(default_factory=list)
    models: list[str] | None = Field(default=None, max_length=MAX_MODEL_GRANTS)
    """Model grants on `/v1` (patterns); None: this group states none (docs/llm-routing.md, "Grants")."""
    customer_id: Slug | None = None
    """The tenant that owns the group (its scoped admins may change it); None: shared by every tenant,
    changed only by a principal holding `groups:write` everywhere."""


class _Member(_Entity):
    """A customer, a team or a user: named, and granted the tools of its groups."""

    id: Slug
    name: str
    groups: list[Slug] = Field(default_factory=list)


class Customer(_Member):
    budget: Budget | None = None


class Team(_Member):
    customer_id: Slug | None = None
    budget: Budget | None = None
    models: list[str] | None = Field(default=None, max_length=MAX_MODEL_GRANTS)
    """Model grants on `/v1` for the team's keys and users; None: the team states none."""


class User(_Member):
    team_id: Slug | None = None
    rate_limit: RateLimit | None = None


Entity = ToolGroup | Customer | Team | User

ENTITY_KINDS: dict[str, type[Entity]] = {"group": ToolGroup, "customer": Customer, "team": Team, "user": User}
"""KV key prefix -> model."""


def entity_key(kind: str, entity_id: str) -> str:
    return f"{kind}.{entity_id}"
