"""The model grants of a caller as ingress sees them, for `GET /v1/models` to list only the models the key may use.

Policy decides every request on its own (`services.policy.llm_governance`); this view only keeps a
listing from naming models a request would be refused.

Fed by the watch ingress already runs on `bastion_policy` (groups, teams, users, customers) and by
the key records (`KeyDirectory`).
"""

from __future__ import annotations

from typing import TypeVar

from libs.common.bus.kvwatch import decode_value
from libs.common.contracts.entities import ENTITY_KINDS, Customer, Team, ToolGroup, User
from libs.common.contracts.messages import KeyRecord
from libs.common.contracts.model_grants import ModelGrants

__all__ = ["ModelGrantView"]

T = TypeVar("T")


class ModelGrantView:
    def __init__(self) -> None:
        self._entities: dict[str, dict[str, object]] = {kind: {} for kind in ENTITY_KINDS}

    def put(self, key: str, value: bytes, _revision: int = 0) -> None:
        kind, _, entity_id = key.partition(".")
        model = ENTITY_KINDS.get(kind)
        if model is not None and (entity := decode_value(model, value, key)) is not None:
            self._entities[kind][entity_id] = entity

    def delete(self, key: str) -> None:
        kind, _, entity_id = key.partition(".")
        self._entities.get(kind, {}).pop(entity_id, None)

    def grants(self, record: KeyRecord | None, user_id: str | None = None) -> ModelGrants:
        """The key's (or the OAuth user's) model grants, compiled as policy compiles them."""
        user = self._get("user", User, (record.user_id if record else None) or user_id)
        team = self._get("team", Team, (record.team_id if record else None) or (user.team_id if user else None))
        customer_id = (record.customer_id if record else None) or (team.customer_id if team else None)
        customer = self._get("customer", Customer, customer_id)
        bound = [
            *(record.groups if record else ()),
            *(user.groups if user else ()),
            *(team.groups if team else ()),
            *(customer.groups if customer else ()),
        ]
        groups = [group for g in dict.fromkeys(bound) if (group := self._get("group", ToolGroup, g)) is not None]
        stated = [record.models if record else None, *(g.models for g in groups), team.models if team else None]
        return ModelGrants.of(stated)

    def _get(self, kind: str, model: type[T], entity_id: str | None) -> T | None:
        found = self._entities[kind].get(entity_id) if entity_id else None
        return found if isinstance(found, model) else None
