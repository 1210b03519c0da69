"""The policy service's compiled view of every governance entity, fed by KV watches.

Keys, tool groups, users, teams, customers and servers arrive as KV puts and deletes. A key's
effective rights (grants ∪ its groups', budgets up its hierarchy, rate limits) are compiled on
first use and cached until any entity changes, so a decision is a dict lookup and regex matches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache

from libs.common.bus.kvwatch import decode_value
from libs.common.contracts.config import ServerConfig
from libs.common.contracts.entities import ENTITY_KINDS, Budget, Customer, RateLimit, Team, ToolGroup, User
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.grants import GrantSet
from libs.common.contracts.messages import Caller, GatewayError, KeyRecord, ServerRecord
from libs.common.contracts.model_grants import ModelGrants
from libs.common.contracts.oauth import USER_CALLER_PREFIX

from .filters import Narrowing, union_of_grants
from .visibility import Visibility

__all__ = ["COMPILED_KEYS", "CompiledKey", "PolicyView"]

COMPILED_KEYS = 10_000
"""Compiled keys kept at once (least recently used go first): memory stays bounded however many
keys exist, and the keys in use stay compiled."""

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CompiledKey:
    record: KeyRecord
    grants: GrantSet
    user: User | None
    team: Team | None
    customer: Customer | None
    models: ModelGrants = field(default_factory=lambda: ModelGrants(None, None))
    """The models this key may use on `/v1` (`model_grants`)."""

    @property
    def budgets(self) -> list[tuple[str, Budget]]:
        """Outermost first, so a refusal names the widest limit that is exhausted.

        A key's budget is scoped by its name, which survives rotation (a new secret must not reset what
        was spent)."""
        chain: list[tuple[str, Budget | None]] = []
        if self.customer is not None:
            chain.append((f"customer:{self.customer.id}", self.customer.budget))
        if self.team is not None:
            chain.append((f"team:{self.team.id}", self.team.budget))
        chain.append((f"key:{self.record.name}", self.record.budget))
        return [(scope, budget) for scope, budget in chain if budget is not None]

    @property
    def rate_limits(self) -> list[tuple[str, RateLimit]]:
        limits = [(f"key:{self.record.name}", self.record.rate_limit)]
        if self.user is not None:
            limits.append((f"user:{self.user.id}", self.user.rate_limit))
        return [(scope, limit) for scope, limit in limits if limit is not None]


class PolicyView:
    def __init__(self) -> None:
        self.keys: dict[str, KeyRecord] = {}
        self.groups: dict[str, ToolGroup] = {}
        self.users: dict[str, User] = {}
        self.teams: dict[str, Team] = {}
        self.customers: dict[str, Customer] = {}
        self.servers: dict[str, ServerConfig] = {}
        self._compiled: LRUCache[str, CompiledKey] = LRUCache(maxsize=COMPILED_KEYS)
        self.visibility = Visibility()

    # ------------------------------------------------------------------ KV feeds

    def put_key(self, key_id: str, value: bytes, _revision: int = 0) -> None:
        if (record := decode_value(KeyRecord, value, f"key {key_id[:8]}…")) is not None:
            self.keys[key_id] = record
            self._compiled.clear()

    def delete_key(self, key_id: str) -> None:
        self.keys.pop(key_id, None)
        self._compiled.clear()

    def put_entity(self, kv_key: str, value: bytes, _revision: int = 0) -> None:
        kind, _, entity_id = kv_key.partition(".")
        model = ENTITY_KINDS.get(kind)
        if model is None or (entity := decode_value(model, value, kv_key)) is None:
            return
        self._table(kind)[entity_id] = entity
        self._compiled.clear()

    def delete_entity(self, kv_key: str) -> None:
        kind, _, entity_id = kv_key.partition(".")
        if kind in ENTITY_KINDS:
            self._table(kind).pop(entity_id, None)
            self._compiled.clear()

    def put_server(self, name: str, value: bytes, _revision: int = 0) -> None:
        if (record := decode_value(ServerRecord, value, f"server {name}")) is not None:
            self.servers[name] = record.config

    def delete_server(self, name: str) -> None:
        self.servers.pop(name, None)

    def _table(self, kind: str) -> dict[str, Any]:
        tables: dict[str, dict[str, Any]] = {
            "group": self.groups,
            "user": self.users,
            "team": self.teams,
            "customer": self.customers,
        }
        return tables[kind]

    # ------------------------------------------------------------------ decisions

    def compiled(self, key_id: str) -> CompiledKey | None:
        compiled = self._compiled.get(key_id)
        if compiled is None:
            record = self.keys.get(key_id) or self._user_caller(key_id)
            if record is None:
                return None
            user = self.users.get(record.user_id) if record.user_id else None
            team_id = record.team_id or (user.team_id if user else None)
            team = self.teams.get(team_id) if team_id else None
            customer_id = record.customer_id or (team.customer_id if team else None)
            customer = self.customers.get(customer_id) if customer_id else None
            bound = [
                *record.groups,
                *(user.groups if user else ()),
                *(team.groups if team else ()),
                *(customer.groups if customer else ()),
            ]
            bound_groups = [self.groups[g] for g in dict.fromkeys(bound) if g in self.groups]
            grants = union_of_grants(record.grants, (group.tools for group in bound_groups))
            stated = [record.models, *(group.models for group in bound_groups), team.models if team else None]
            models = ModelGrants.of(stated)
            compiled = self._compiled[key_id] = CompiledKey(record, grants, user, team, customer, models)
        return compiled

    def _user_caller(self, key_id: str) -> KeyRecord | None:
        """A caller authenticated with an OAuth access token (`user:<id>`) acts as a key bound to that user.

        And to nothing else: the user's, team's and customer's groups, budgets and rate limits."""
        if not key_id.startswith(USER_CALLER_PREFIX):
            return None
        user_id = key_id.removeprefix(USER_CALLER_PREFIX)
        if user_id not in self.users:
            return None
        return KeyRecord(id=key_id, name=key_id, user_id=user_id)

    def caller_key(self, caller: Caller) -> CompiledKey | GatewayError:
        key = self.compiled(caller.key_id)
        if key is None or key.record.revoked:
            if caller.key_id.startswith(USER_CALLER_PREFIX):
                message = f"user {caller.key_id.removeprefix(USER_CALLER_PREFIX)!r} does not exist (any more)"
                return GatewayError(kind=ErrorKind.KEY_REVOKED, message=message)
            return GatewayError(kind=ErrorKind.KEY_REVOKED, message=f"key {caller.key_name!r} is revoked or unknown")
        if caller.user_id is not None and caller.user_id != key.record.user_id:
            # the user a call acts for decides whose upstream credentials it may use: never taken on trust
            return GatewayError(kind=ErrorKind.FORBIDDEN, message=f"{caller.key_name!r} does not act for that user")
        return key

    def authorize(self, caller: Caller, server: str, tool: str, narrowing: Narrowing) -> CompiledKey | GatewayError:
        """The caller's compiled key when it may call `server/tool`, else the reason it may not."""
        key = self.caller_key(caller)
        if isinstance(key, GatewayError):
            return key
        if not key.grants.allows(server, tool):
            return GatewayError(
                kind=ErrorKind.FORBIDDEN,
                message=f"key {caller.key_name!r} is not allowed to {_action(tool)} on server {server!r}",
            )
        if not narrowing.allows(server, tool):
            return GatewayError(
                kind=ErrorKind.FORBIDDEN,
                message=f"{_action(tool, verb=False)} on server {server!r} is excluded by this request's "
                "X-Bastion-Include-Servers / X-Bastion-Include-Tools headers",
            )
        return key

    def visible(self, caller: Caller, digest: str, narrowing: Narrowing) -> list[int] | GatewayError:
        """Indexes of the (server, tool) pairs of list `digest` (`self.visibility` holds it) the caller may see."""
        key = self.caller_key(caller)
        if isinstance(key, GatewayError):
            return key
        return self.visibility.allowed(key.grants, narrowing, digest)


def _action(target: str, *, verb: bool = True) -> str:
    """How a grant target reads in a refusal: a tool, or a `prompt:` / `resource:` target."""
    kind, _, name = target.partition(":")
    if name and kind == "prompt":
        return f"{'use ' if verb else ''}prompt {name!r}"
    if name and kind == "resource":
        return f"{'read ' if verb else ''}resource {name!r}"
    return f"{'call ' if verb else ''}tool {target!r}"
