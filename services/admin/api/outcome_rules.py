"""The control plane's authorization rules, as data.

For each kind of object an admin change writes, the permission the write needs and the scope rule it is
judged by (docs/admin-api.md, "Who may change what"). `outcome` applies them to every write of an admin
table; this module is pure (no I/O).

The customer is the tenant. A principal whose role is bound to a customer or a team (`roles.Scope`)
may write an object of a `TENANT` kind only when the object lies wholly inside one of its scopes, as
it was before the change and as it would be after: every link it carries (customer, team, user, tool
group) resolves to a `Place` inside that scope. A `GLOBAL` kind needs the permission held everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

from ..roles import Scope

__all__ = ["GLOBAL", "OWN_TOKEN", "RULES", "TENANT", "UNGUARDED", "Place", "Rule", "inside"]

TENANT: Final = "tenant"
GLOBAL: Final = "global"
OWN_TOKEN: Final = "global, or the principal's own token"

ScopeRule = Literal["tenant", "global", "global, or the principal's own token"]


@dataclass(frozen=True, slots=True)
class Rule:
    kind: str
    """The table's label (`tables.Table.label`): what the audit trail calls the object."""
    permission: str
    scope: ScopeRule
    why: str


RULES: Final[Mapping[str, Rule]] = {
    rule.kind: rule
    for rule in (
        Rule("key", "keys:write", TENANT, "a key acts for its customer, team and user and spends their budget"),
        Rule("customer", "directory:write", TENANT, "the customer is the tenant: its record, budget and groups"),
        Rule("team", "directory:write", TENANT, "a team lies in its customer"),
        Rule("user", "directory:write", TENANT, "a user lies in its team"),
        Rule("tool group", "groups:write", TENANT, "a group with a customer is that tenant's; one without is shared"),
        Rule("server", "servers:write", GLOBAL, "every tenant's keys reach the same upstreams and their secrets"),
        Rule("llm provider", "providers:write", GLOBAL, "one provider key pays for every tenant's calls"),
        Rule("llm routes", "providers:write", GLOBAL, "a model name is routed the same for every tenant"),
        Rule("principal", "principals:write", GLOBAL, "who may administer is above every tenant"),
        Rule("api token", "principals:write", OWN_TOKEN, "a principal rotates its own token (`/me/token/rotate`)"),
        Rule("role", "roles:write", GLOBAL, "a role is granted in any scope"),
    )
}
"""Kind -> the rule every write of it is decided by. Policies, tool pins and approvals are not tables
of the admin store; their routes' permissions (`policies:write`, `tools:approve`, `approvals:decide`)
are never granted in a scope (`roles.SCOPABLE`), so they are global by the same rule."""

UNGUARDED: Final = frozenset({"session", "login", "oauth client", "server catalog"})
"""Tables no admin change writes: the sign-in's own state, and the catalog executors publish."""


class Place(NamedTuple):
    """Where one link of an object lies: a customer, a team in it, or a teamless link (both None)."""

    customer: str | None
    team: str | None


def inside(places: list[Place], scope: Scope, team_customers: Mapping[str, str | None]) -> bool:
    """Whether an object whose links resolve to `places` lies wholly inside `scope`.

    A customer holds every place of that customer. A team holds the places in the team (of its
    stored customer) and the customer link naming that customer, but an object only in the customer
    (no link to the team) is the customer's, not the team's. An object with no place (no link at all,
    or only shared groups) belongs to no tenant: only a principal holding the permission everywhere
    writes it. `team_customers` maps a scope's team to its stored customer."""
    if not places:
        return False
    if scope.kind == "customer":
        return all(place.customer == scope.id for place in places)
    owner = team_customers.get(scope.id)
    in_team = [place.team == scope.id and place.customer == owner for place in places]
    of_owner = [place.team is None and owner is not None and place.customer == owner for place in places]
    return any(in_team) and all(a or b for a, b in zip(in_team, of_owner, strict=True))
