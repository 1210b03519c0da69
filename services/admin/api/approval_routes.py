"""`/admin/v1/approvals`: tool calls a policy parked for a person (docs/approvals.md).

An approver (`approvals:decide`) sees each with its arguments, opened from their seal here only, and
approves or denies it with a reason; each decision is an admin audit event naming who. Nobody decides a
call made by themselves or by a key they hold, and a scoped approver sees and decides only its tenant's
calls (`approval_judge`).

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

import json
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from libs.common.cedar import approvals
from libs.common.cedar.approvals import ApprovalConflict, ApprovalRecord, ApprovalState, OwnCall, redacted
from libs.common.contracts import subjects
from libs.common.runtime.sealing import SealingError

from .approval_judge import inside_scope, own_call
from .errors import AdminError
from .identity import current
from .route_table import Route, register
from .store import AdminStore
from .tables import Conflict, NotFound

__all__ = ["approval_routes"]


class ApprovalOut(BaseModel):
    id: str
    state: ApprovalState
    key_name: str
    user_id: str | None
    team_id: str | None = None
    customer_id: str | None = None
    server: str
    tool: str
    name: str = Field(description="the tool's name as the agent called it")
    policy: str = Field(description="the @id of the policy that asked for approval")
    reason: str | None
    approvers: str = Field(description="who the policy names to decide (its @approval)")
    arguments: dict[str, Any] | None = Field(description="the arguments that run if approved (None: cannot be opened)")
    arguments_sha256: str
    created_at: float
    expires_at: float
    decided_by: str | None
    decided_at: float | None
    decision_reason: str | None
    ran_at: float | None


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000, description="why: the agent and the audit trail read it")


def _arguments(store: AdminStore, record: ApprovalRecord) -> dict[str, Any] | None:
    try:
        call = json.loads(store.sealer.open_value(record.call_sealed))
    except (SealingError, ValueError):
        return None
    arguments = call.get("arguments") if isinstance(call, dict) else None
    return arguments if isinstance(arguments, dict) else None


def _out(store: AdminStore, record: ApprovalRecord) -> ApprovalOut:
    fields = record.model_dump(exclude={"call_sealed", "outcome_sealed", "key_id"})
    if record.expired():
        fields["state"] = "expired"
    return ApprovalOut(**fields, arguments=_arguments(store, record))


async def _kv(store: AdminStore) -> Any:
    return await store.buckets.get(subjects.KV_APPROVALS)


async def list_approvals(store: AdminStore, state: ApprovalState | None = None) -> list[ApprovalOut]:
    """Every parked call the approver decides for, newest first (`?state=pending`: only those waiting for a person).

    A scoped approver: only its tenant's."""
    identity = current()
    records = await approvals.list_records(await _kv(store))
    wanted = [r for r in records if state is None or _out_state(r) == state]
    return [_out(store, r) for r in wanted if await inside_scope(store, identity, r)]


async def show_approval(store: AdminStore, approval_id: str) -> ApprovalOut:
    return _out(store, await _visible(store, approval_id))


async def _visible(store: AdminStore, approval_id: str) -> ApprovalRecord:
    """The record, when the approver decides for its tenant.

    404 otherwise (another tenant's calls are not shown to exist)."""
    got = await approvals.read(await _kv(store), approval_id)
    if got is None or not await inside_scope(store, current(), got[0]):
        raise NotFound(f"there is no approval {approval_id!r}")
    return got[0]


async def approve(store: AdminStore, approval_id: str, body: DecisionIn) -> ApprovalOut:
    """Approve: the agent's next call naming the approval runs the stored arguments, once."""
    return await _decided(store, approval_id, body, "approve")


async def deny(store: AdminStore, approval_id: str, body: DecisionIn) -> ApprovalOut:
    """Deny: the call never runs; the agent is told who denied it and why."""
    return await _decided(store, approval_id, body, "deny")


async def _decided(
    store: AdminStore, approval_id: str, body: DecisionIn, what: Literal["approve", "deny"]
) -> ApprovalOut:
    identity = current()
    refused = await own_call(store, identity, await _visible(store, approval_id))
    if refused is not None:
        raise refused
    try:
        before, after = await approvals.decide(await _kv(store), approval_id, what, identity.principal, body.reason)
    except KeyError:
        raise NotFound(f"there is no approval {approval_id!r}") from None
    except OwnCall as exc:
        raise AdminError(403, "forbidden", str(exc), permission="approvals:decide") from None
    except ApprovalConflict as exc:
        raise Conflict(str(exc)) from None
    if store.changes is not None:
        store.changes.record("approval", what, approval_id, redacted(before), redacted(after))
    return _out(store, after)


APPROVAL_ROUTES = (
    Route("GET", "/approvals", "approvals:decide", list_approvals),
    Route("GET", "/approvals/{approval_id}", "approvals:decide", show_approval, errors=(404,)),
    Route("POST", "/approvals/{approval_id}/approve", "approvals:decide", approve, errors=(403, 404, 409)),
    Route("POST", "/approvals/{approval_id}/deny", "approvals:decide", deny, errors=(403, 404, 409)),
)


def approval_routes(router: APIRouter, store: AdminStore) -> None:
    register(router, APPROVAL_ROUTES, "approvals", store)


def _out_state(record: ApprovalRecord) -> str:
    return "expired" if record.expired() else record.state
