"""Who may decide a parked call, judged on the people behind it rather than on names alone (docs/approvals.md).

Nobody decides a call made by their own principal, by a key bound to their own user, or by a key whose
secret they were shown (they created or rotated it); and an approver whose `approvals:decide` is scoped
to a team or a customer sees and decides only the calls of keys lying wholly inside that scope (the
tenant of the call)."""

from __future__ import annotations

from libs.common.cedar.approvals import ApprovalRecord

from ..roles import Scope
from .errors import AdminError
from .identity import Identity
from .store import AdminStore

__all__ = ["inside_scope", "own_call"]

_PERMISSION = "approvals:decide"


async def own_call(store: AdminStore, identity: Identity, record: ApprovalRecord) -> AdminError | None:
    """The 403 for a decider who is, or holds, the caller of `record`; None when they are another person."""
    why = await _why_own(store, identity, record)
    if why is None:
        return None
    message = f"{identity.principal} {why}: another person decides it"
    return AdminError(403, "forbidden", message, permission=_PERMISSION)


async def _why_own(store: AdminStore, identity: Identity, record: ApprovalRecord) -> str | None:
    if identity.principal in {record.key_name, record.user_id}:
        return "made this call (its key or user)"
    found = await store.access.principals.find(identity.principal)
    user = found.value.user_id if found is not None else None
    if user is not None and user == record.user_id:
        return f"is user {user!r}, whom the calling key acts for"
    key = await store.keys.find(record.key_id)
    if key is not None and key.value.created_by == identity.principal:
        return "was shown the calling key's secret (created or rotated it)"
    if key is not None and user is not None and key.value.user_id == user:
        return f"is user {user!r}, to whom the calling key is bound"
    return None


async def inside_scope(store: AdminStore, identity: Identity, record: ApprovalRecord) -> bool:
    """Whether `identity` decides calls of `record`'s tenant.

    Everywhere, or every link of the calling key (its team, its customer) inside one of the scopes it
    holds `approvals:decide` for."""
    allowed = identity.grants.scopes(_PERMISSION)
    if allowed is None:
        return True
    if record.team_id is None and record.customer_id is None:
        return False  # a key of no tenant: only an approver of everything decides it
    owner: str | None = None
    if record.team_id is not None:
        team = await store.entities["team"].find(record.team_id)
        owner = getattr(team.value, "customer_id", None) if team is not None else None
        in_team = Scope("team", record.team_id) in allowed
        if not in_team and (owner is None or Scope("customer", owner) not in allowed):
            return False
        if record.customer_id is not None and record.customer_id != owner:
            return Scope("customer", record.customer_id) in allowed
        return True
    return Scope("customer", record.customer_id or "") in allowed
