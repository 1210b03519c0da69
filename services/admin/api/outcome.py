"""The one component every admin change goes through.

Each write of an admin table (`tables.Table`: create, update, delete) is decided here over the object as
it was and as it would be, by the rules of `outcome_rules`, before anything is written. Routes check the
permission a request needs (`admin_route`); what a scoped principal may reach is decided on the outcome
alone, whatever route, console page, configuration import or registry import made the change.

The same placement decides what a scoped principal sees (`visible`): only objects wholly inside one
of its scopes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from ..roles import Scope
from .errors import AdminError
from .identity import CURRENT, Identity
from .outcome_rules import OWN_TOKEN, RULES, TENANT, UNGUARDED, Place, inside
from .tables import Table, Versioned

__all__ = ["Outcome"]

M = TypeVar("M", bound=BaseModel)


class Outcome:
    """Decides writes and visibility over the directory of `entities` (the policy bucket's tables)."""

    def __init__(self, entities: Mapping[str, Table[BaseModel]]) -> None:
        self._entities = entities

    async def decide(self, kind: str, record_id: str, before: BaseModel | None, after: BaseModel | None) -> None:
        """Raise 403 unless the current principal may turn `before` into `after` (None: absent)."""
        if kind in UNGUARDED:
            return
        rule = RULES.get(kind)
        if rule is None:  # a new table without a rule is a bug: deny by default
            raise RuntimeError(f"no authorization rule for writes of a {kind}")
        identity = CURRENT.get()
        if identity is None:
            raise RuntimeError(f"a write of a {kind} with no principal behind it")
        allowed = identity.grants.scopes(rule.permission)
        if allowed is None:
            return
        if rule.scope == OWN_TOKEN and all(_own_token(identity, r) for r in (before, after) if r is not None):
            return
        if rule.scope != TENANT or not allowed:
            raise _refused(identity, rule.permission, allowed, kind)
        cache: dict[tuple[str, str], Any] = {}
        for state in (before, after):
            if state is not None and not await self._inside_any(kind, state, allowed, cache):
                raise _refused(identity, rule.permission, allowed, kind)

    async def visible(self, kind: str, permission: str, found: Iterable[Versioned[M]]) -> list[Versioned[M]]:
        """The records of `found` the current principal may read with `permission`."""
        allowed = _identity().grants.scopes(permission)
        if allowed is None:
            return list(found)
        cache: dict[tuple[str, str], Any] = {}
        return [v for v in found if allowed and await self._inside_any(kind, v.value, allowed, cache)]

    async def require_visible(self, kind: str, permission: str, record: BaseModel) -> None:
        """403 unless the current principal may read `record` with `permission`."""
        identity = _identity()
        allowed = identity.grants.scopes(permission)
        if allowed is not None and not (allowed and await self._inside_any(kind, record, allowed, {})):
            raise _refused(identity, permission, allowed, kind)

    async def _inside_any(
        self, kind: str, record: BaseModel, scopes: frozenset[Scope], cache: dict[tuple[str, str], Any]
    ) -> bool:
        places = await self._places(kind, record, cache)
        teams = {s.id: await self._team_customer(s.id, cache) for s in scopes if s.kind == "team"}
        return any(inside(places, scope, teams) for scope in scopes)

    async def _places(self, kind: str, record: BaseModel, cache: dict[tuple[str, str], Any]) -> list[Place]:
        """Where every scope link of `record` lies; a shared tool group adds none."""
        own: list[Place] = []
        if kind == "customer":
            own.append(Place(getattr(record, "id"), None))  # noqa: B009  # the models differ; each has an id
        elif kind == "team":
            own.append(Place(getattr(record, "customer_id"), getattr(record, "id")))  # noqa: B009
        elif kind == "tool group" and (owner := getattr(record, "customer_id", None)) is not None:
            own.append(Place(owner, None))
        elif kind == "user":
            own.append(await self._team_place(getattr(record, "team_id"), cache))  # noqa: B009
        elif kind == "key":
            own += await self._key_places(record, cache)
        for group in getattr(record, "groups", None) or ():
            if (customer := await self._group_customer(group, cache)) is not None:
                own.append(Place(customer, None))
        return own

    async def _key_places(self, key: BaseModel, cache: dict[tuple[str, str], Any]) -> list[Place]:
        """A key's customer, team (in its customer) and user (in its team)."""
        found: list[Place] = []
        if (customer := getattr(key, "customer_id", None)) is not None:
            found.append(Place(customer, None))
        if (team := getattr(key, "team_id", None)) is not None:
            found.append(await self._team_place(team, cache))
        if (user := getattr(key, "user_id", None)) is not None:
            found.append(await self._user_place(user, cache))
        return found

    async def _lookup(self, kind: str, record_id: str, cache: dict[tuple[str, str], Any]) -> Any:
        if (kind, record_id) not in cache:
            found = await self._entities[kind].find(record_id)
            cache[kind, record_id] = found.value if found is not None else None
        return cache[kind, record_id]

    async def _team_customer(self, team_id: str, cache: dict[tuple[str, str], Any]) -> str | None:
        team = await self._lookup("team", team_id, cache)
        return getattr(team, "customer_id", None)

    async def _team_place(self, team_id: str | None, cache: dict[tuple[str, str], Any]) -> Place:
        if team_id is None:
            return Place(None, None)
        return Place(await self._team_customer(team_id, cache), team_id)

    async def _user_place(self, user_id: str, cache: dict[tuple[str, str], Any]) -> Place:
        user = await self._lookup("user", user_id, cache)
        return await self._team_place(getattr(user, "team_id", None), cache)

    async def _group_customer(self, group_id: str, cache: dict[tuple[str, str], Any]) -> str | None:
        return getattr(await self._lookup("group", group_id, cache), "customer_id", None)


def _identity() -> Identity:
    identity = CURRENT.get()
    if identity is None:
        raise RuntimeError("no principal: this route is public")
    return identity


def _own_token(identity: Identity, record: BaseModel) -> bool:
    return getattr(record, "principal", None) == identity.principal


def _refused(identity: Identity, permission: str, allowed: frozenset[Scope], kind: str) -> AdminError:
    held = ", ".join(sorted(str(scope) for scope in allowed)) or "no team or customer"
    return AdminError(
        403,
        "forbidden",
        f"{identity.principal} ({identity.role_label}) lacks the permission {permission!r} for this {kind}: "
        f"it holds it for {held} only, and every link of the {kind} (customer, team, user, tool group) "
        "must lie in one of those, before and after the change",
        permission=permission,
    )
