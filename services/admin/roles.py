"""Permissions and roles of the admin API.

The documented permission strings, the built-in roles, and what a principal's role bindings grant. Pure:
no I/O.

Deny by default: a route declares the one permission it needs (`routes` refuses to build one that
declares none), a principal holds only what its roles list, and a refusal names the permission. A
binding scoped to a team or a customer (the customer is the tenant) grants only the role's tenant
permissions (`SCOPABLE`: keys, tool groups, the directory), and only over objects lying wholly inside
that team or customer (`api.outcome_rules`). Nobody may grant more than they hold: creating a
principal, a token for one, or a role is refused when it would give a permission the caller lacks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from libs.common.contracts.admin_principals import OWNER, RoleBinding
from libs.common.contracts.command_servers import COMMAND_PERMISSION, WHY_OWNER_ONLY

__all__ = [
    "AUTHENTICATED",
    "BUILTIN_ROLES",
    "OWNER_ONLY",
    "PERMISSIONS",
    "PUBLIC",
    "SCOPABLE",
    "Grants",
    "Scope",
    "grants_of",
    "missing_to_grant",
    "unknown_permissions",
]

PERMISSIONS: Final[Mapping[str, str]] = {
    "keys:read": "list and show virtual keys (never their secrets)",
    "keys:write": "create, change, revoke, rotate and delete virtual keys",
    "groups:read": "list and show tool groups",
    "groups:write": "create, change and delete tool groups",
    "directory:read": "list and show customers, teams and users",
    "directory:write": "create, change and delete customers, teams and users",
    "users:password": "set a user's password in the built-in user store",
    "servers:read": "list and show upstream servers and their health (`env` and `headers` masked)",
    "servers:write": "add, change and remove upstream servers, and get their OAuth authorization links",
    COMMAND_PERMISSION: "add a stdio server or change what it runs (`command`, `args`, `env`, `cwd`) and a server's"
    " other owner-only fields (`sandbox`, `allow_private_hosts`), with `POST` or `PUT /servers`, `POST /config/apply`,"
    " `POST /console/servers/test` or a registry import of a package (beside `servers:write`): the owner role's"
    " alone, no custom role may hold it",
    "providers:read": "list and show LLM providers (`api_key` masked)",
    "providers:write": "add, change and remove LLM providers and the model routes written through the API",
    "tools:approve": "approve or reject changed tool definitions (pinning, docs/supply-chain.md)",
    "analytics:read": "the dashboard's panels and read-only SQL over the audit metadata",
    "audit:payloads": "see tool arguments and results, and admin changes' before and after, in analytics and exports",
    "audit:verify": "check the audit trail's hash chains and signed checkpoints",
    "audit:export": "export audit events",
    "principals:read": "list and show admin principals and their API tokens (never a token itself)",
    "principals:write": "create, change, disable and delete principals; issue, rotate and revoke their API tokens",
    "roles:read": "list and show roles",
    "roles:write": "create, change and delete custom roles",
    "policies:read": "list and show the Cedar policy versions, and check a policy text against a sample call",
    "policies:write": "publish a new Cedar policy version, or make an earlier one active again (docs/policy.md)",
    "approvals:decide": "see the tool calls parked for approval, their arguments included, and approve or deny"
    " them (docs/approvals.md)",
}
"""Every permission, with what it opens. A route needs exactly one."""

SCOPABLE: Final = frozenset(
    {
        "keys:read",
        "keys:write",
        "groups:read",
        "groups:write",
        "directory:read",
        "directory:write",
        "approvals:decide",
        "analytics:read",
    }
)
"""What a binding scoped to a team or customer grants: the permissions over objects a tenant owns (keys,
tool groups, customers, teams, users), each for the objects lying wholly inside that team or customer, and
`approvals:decide` for the calls those keys made, `analytics:read` for the audit rows of that team or
customer (the engine filters every table: docs/analytics.md)."""

OWNER_ONLY: Final[Mapping[str, str]] = {COMMAND_PERMISSION: WHY_OWNER_ONLY}
"""Permissions the owner role alone holds, with why: a custom role may not be given one (the admin API
refuses such a role, and a stored custom role listing one grants it nothing), so holding one means
being an owner."""

AUTHENTICATED: Final = "authenticated"
"""A route's marker, not a permission: any signed-in principal (who am I, sign out)."""
PUBLIC: Final = "public"
"""A route's marker, not a permission: no credential (the login, the index, health, static pages)."""

_READ_CONFIG = frozenset({"keys:read", "groups:read", "directory:read", "servers:read", "providers:read"})

BUILTIN_ROLES: Final[Mapping[str, tuple[str, frozenset[str]]]] = {
    OWNER: ("everything, principals, roles and what stdio servers run included", frozenset(PERMISSIONS)),
    "operator": (
        "servers, LLM providers, tool groups and tool approvals; reads the rest of the configuration",
        _READ_CONFIG | {"servers:write", "providers:write", "groups:write", "tools:approve", "policies:read"},
    ),
    "policy_admin": (
        "the Cedar policies: reads and publishes them (docs/policy.md)",
        frozenset({"policies:read", "policies:write"}),
    ),
    "call_approver": (
        "sees the tool calls parked for approval, with their arguments, and approves or denies them",
        frozenset({"approvals:decide"}),
    ),
    "key_manager": (
        "issues, rotates and revokes virtual keys (bind it to a team or customer to keep it there)",
        frozenset({"keys:read", "keys:write"}),
    ),
    "analyst": ("the dashboard and analytics on metadata: no arguments or results", frozenset({"analytics:read"})),
    "auditor": (
        "analytics with arguments and results, audit verify and export",
        frozenset({"analytics:read", "audit:payloads", "audit:verify", "audit:export"}),
    ),
    "viewer": ("reads the configuration (no secrets: they are never shown)", _READ_CONFIG),
}
"""name -> (what it is for, its permissions). Custom roles may not take these names."""


@dataclass(frozen=True, slots=True)
class Scope:
    kind: Literal["team", "customer"]
    id: str

    def __str__(self) -> str:
        return f"{self.kind} {self.id!r}"


@dataclass(frozen=True, slots=True)
class Grants:
    """What a principal may do: permissions everywhere, and tenant permissions for some scopes only."""

    everywhere: frozenset[str] = frozenset()
    scoped: Mapping[str, frozenset[Scope]] = field(default_factory=dict)

    def allows(self, permission: str) -> bool:
        """Whether any of its bindings grants `permission` (a scoped one only for some objects)."""
        return permission in self.everywhere or bool(self.scoped.get(permission))

    def scopes(self, permission: str) -> frozenset[Scope] | None:
        """None: `permission` everywhere; else the scopes it holds it for (maybe none)."""
        return None if permission in self.everywhere else self.scoped.get(permission, frozenset())

    def allows_in(self, permission: str, scope: Scope) -> bool:
        found = self.scopes(permission)
        return found is None or scope in found


def _scope(binding: RoleBinding) -> Scope | None:
    if binding.team_id is not None:
        return Scope("team", binding.team_id)
    if binding.customer_id is not None:
        return Scope("customer", binding.customer_id)
    return None


def role_permissions(role: str, custom: Mapping[str, frozenset[str]]) -> frozenset[str] | None:
    """A role's permissions, or None when there is no such role."""
    if role in BUILTIN_ROLES:
        return BUILTIN_ROLES[role][1]
    found = custom.get(role)
    return None if found is None else found - OWNER_ONLY.keys()


def grants_of(bindings: Iterable[RoleBinding], custom: Mapping[str, frozenset[str]]) -> Grants:
    """What `bindings` grant; a binding naming a role that no longer exists grants nothing."""
    everywhere: set[str] = set()
    scoped: dict[str, set[Scope]] = {}
    for binding in bindings:
        permissions = role_permissions(binding.role, custom) or frozenset()
        scope = _scope(binding)
        if scope is None:
            everywhere |= permissions
            continue
        for permission in permissions & SCOPABLE:
            scoped.setdefault(permission, set()).add(scope)
    return Grants(frozenset(everywhere), {p: frozenset(s) for p, s in scoped.items() if p not in everywhere})


def unknown_permissions(permissions: Iterable[str]) -> list[str]:
    return sorted(set(permissions) - set(PERMISSIONS))


def missing_to_grant(
    caller: Grants, bindings: Iterable[RoleBinding], custom: Mapping[str, frozenset[str]]
) -> tuple[str, Scope | None] | None:
    """The first permission (and scope) `bindings` would grant that `caller` does not hold, or None.

    Nobody hands out more than they have. A role that does not exist is the caller's to fix first."""
    for binding in bindings:
        permissions = role_permissions(binding.role, custom) or frozenset()
        scope = _scope(binding)
        for permission in sorted(permissions & SCOPABLE if scope is not None else permissions):
            held = caller.allows_in(permission, scope) if scope is not None else permission in caller.everywhere
            if not held:
                return permission, scope
    return None
