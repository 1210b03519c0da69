"""Which virtual keys a principal may read or write when it holds `keys:read` / `keys:write` for a
team or a customer only (`roles.Grants.scoped`).

A key belongs to its team, to its customer, and to its team's customer: a key manager of customer
`acme` reaches the keys of acme's teams too. A key of no team or customer is reachable only by a
principal holding the permission everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable

from libs.common.messages import KeyRecord

from ..roles import Scope
from .errors import AdminError
from .identity import Identity, current
from .store import AdminStore
from .tables import Versioned

__all__ = ["KeyScopes"]


class KeyScopes:
    def __init__(self, store: AdminStore) -> None:
        self._store = store

    async def of(
        self, team_id: str | None, customer_id: str | None, teams: dict[str, str | None] | None = None
    ) -> set[Scope]:
        """The scopes a key with these links falls in. `teams` caches team -> customer over a listing."""
        found: set[Scope] = set()
        if customer_id is not None:
            found.add(Scope("customer", customer_id))
        if team_id is not None:
            found.add(Scope("team", team_id))
            if teams is not None and team_id in teams:
                owner = teams[team_id]
            else:
                team = await self._store.entities["team"].find(team_id)
                owner = getattr(team.value, "customer_id", None) if team is not None else None
                if teams is not None:
                    teams[team_id] = owner
            if owner is not None:
                found.add(Scope("customer", owner))
        return found

    async def require(self, permission: str, team_id: str | None, customer_id: str | None) -> None:
        """403 unless the current principal holds `permission` for a key with these links."""
        identity = current()
        allowed = identity.grants.scopes(permission)
        if allowed is None:
            return
        if not allowed & await self.of(team_id, customer_id):
            raise _outside(identity, permission, allowed)

    async def require_key(self, permission: str, key: KeyRecord) -> None:
        await self.require(permission, key.team_id, key.customer_id)

    async def visible(self, permission: str, keys: Iterable[Versioned[KeyRecord]]) -> list[Versioned[KeyRecord]]:
        """The keys the current principal holds `permission` for (all of them, when it holds it everywhere)."""
        allowed = current().grants.scopes(permission)
        if allowed is None:
            return list(keys)
        teams: dict[str, str | None] = {}
        return [k for k in keys if allowed & await self.of(k.value.team_id, k.value.customer_id, teams)]


def _outside(identity: Identity, permission: str, allowed: frozenset[Scope]) -> AdminError:
    held = ", ".join(sorted(str(scope) for scope in allowed))
    return AdminError(
        403,
        "forbidden",
        f"{identity.principal} ({identity.role_label}) lacks the permission {permission!r} for this key: "
        f"it holds it for {held} only",
        permission=permission,
    )
