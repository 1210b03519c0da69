"""Who a user belongs to: their team, and that team's customer, from the KV watch on `bastion_policy`.

A virtual key carries its team and customer in its own record; an OAuth access token names only
the user. So that the audit rows (and rollups per team and customer) of a user's token calls say
the same as those of a key, ingress keeps each user's team and each team's customer here, fed by
the watch it already runs on the policy bucket, and fills them in when it verifies a token.
"""

from __future__ import annotations

from libs.common.bus.kvwatch import decode_value
from libs.common.contracts.entities import Team, User

__all__ = ["Owners"]


class Owners:
    def __init__(self) -> None:
        self._team_of: dict[str, str | None] = {}
        """user id -> team id"""
        self._customer_of: dict[str, str | None] = {}
        """team id -> customer id"""

    def put(self, key: str, value: bytes, _revision: int = 0) -> None:
        kind, _, entity_id = key.partition(".")
        if kind == "user" and (user := decode_value(User, value, f"user {entity_id}")) is not None:
            self._team_of[entity_id] = user.team_id
        elif kind == "team" and (team := decode_value(Team, value, f"team {entity_id}")) is not None:
            self._customer_of[entity_id] = team.customer_id

    def delete(self, key: str) -> None:
        kind, _, entity_id = key.partition(".")
        if kind == "user":
            self._team_of.pop(entity_id, None)
        elif kind == "team":
            self._customer_of.pop(entity_id, None)

    def of(self, user_id: str) -> tuple[str | None, str | None]:
        """The user's team and customer (None where the records name none, or do not exist)."""
        team = self._team_of.get(user_id)
        return team, self._customer_of.get(team) if team is not None else None
