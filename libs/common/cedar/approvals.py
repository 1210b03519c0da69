"""Tool calls parked for a person's approval: the record on the bus and its state machine.

`KV_APPROVALS` holds `approval.<id>` -> `ApprovalRecord`. The policy service creates one when a
policy's `@approval` forbid matches a call (pending), the admin role decides it (approved or
denied), and the policy service runs an approved call once, when the agent calls again naming the
approval (running, then ran with the outcome kept). Every transition is a compare-and-set on the
entry's revision, so two deciders, or two retries of the agent, never both win:

    pending --approve--> approved --agent retries--> running --> ran
    pending --deny--> denied
    pending|approved --past expires_at--> expired   (the admin service's sweep, audited by `timeout`)

The call (its arguments included) and its outcome are sealed with `BASTION_SECRETS_KEY`
(`libs.common.runtime.sealing`), so the bus never holds them in plain text when a key is configured.
"""

from __future__ import annotations

import secrets
import time
from typing import Final, Literal

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field, ValidationError

from libs.common.bus.nats import kv_entries, kv_keys
from libs.common.contracts.messages_audit import AuditEvent

__all__ = [
    "APPROVAL_META",
    "CALL_PREFIX",
    "DECIDED",
    "ApprovalConflict",
    "ApprovalRecord",
    "ApprovalState",
    "OwnCall",
    "approval_audit_event",
    "approval_key",
    "create",
    "decide",
    "expire_due",
    "list_records",
    "new_approval_id",
    "read",
    "redacted",
    "transition",
]

APPROVAL_META: Final = "bastion/approval"
"""The `_meta` field of a `tools/call` naming the approval it continues."""
_PREFIX: Final = "approval."
CALL_PREFIX: Final = "call."
"""`call.<sha256 of key, tool, arguments>` -> the id of the approval that call got last (the policy
service finds it again when the agent calls the same way, `_meta` or not)."""

ApprovalState = Literal["pending", "approved", "running", "ran", "denied", "expired"]
DECIDED: Final = frozenset({"approved", "denied"})


class ApprovalRecord(BaseModel):
    id: str
    state: ApprovalState = "pending"
    key_id: str
    key_name: str
    user_id: str | None = None
    team_id: str | None = None
    customer_id: str | None = None
    """The calling key's team and customer: the tenant whose approvers may decide it."""
    server: str
    tool: str
    name: str
    """The namespaced tool name the agent called."""
    policy: str
    """The `@id` of the policy that asked for approval."""
    reason: str | None = None
    approvers: str
    """The policy's `@approval`: who is expected to decide (anyone holding `approvals:decide` may)."""
    call_sealed: str
    """The `ToolCall` as JSON, sealed: the arguments that are approved and run, never the agent's next ones."""
    arguments_sha256: str
    created_at: float = Field(default_factory=time.time)
    expires_at: float
    decided_by: str | None = None
    decided_at: float | None = None
    decision_reason: str | None = Field(default=None, max_length=2000)
    ran_at: float | None = None
    outcome_sealed: str | None = None
    """The run's `CallOutcome` (bus form), sealed: what every later retry of the agent gets."""

    def expired(self, now: float | None = None) -> bool:
        return self.state in ("pending", "approved") and (now or time.time()) >= self.expires_at


class ApprovalConflict(Exception):
    """The record is not in the state the transition starts from (someone else moved it first)."""


class OwnCall(Exception):
    """A person deciding a call made for themselves (its key's name or its user is theirs)."""


def new_approval_id() -> str:
    return "ap_" + secrets.token_hex(12)


def approval_key(approval_id: str) -> str:
    return _PREFIX + approval_id


async def create(kv: KeyValue, record: ApprovalRecord) -> None:
    await kv.create(approval_key(record.id), record.model_dump_json().encode())


async def read(kv: KeyValue, approval_id: str) -> tuple[ApprovalRecord, int] | None:
    """The record and its revision; None when there is none (or the id is not one)."""
    if not _is_id(approval_id):
        return None
    try:
        entry = await kv.get(approval_key(approval_id))
    except KeyNotFoundError:
        return None
    return _record(entry)


def _is_id(approval_id: str) -> bool:
    return approval_id.startswith("ap_") and approval_id[3:].isalnum()


def _record(entry: KeyValue.Entry) -> tuple[ApprovalRecord, int] | None:
    if entry.value is None or entry.revision is None:
        return None
    try:
        return ApprovalRecord.model_validate_json(entry.value), entry.revision
    except ValidationError:
        return None


async def transition(kv: KeyValue, approval_id: str, start: frozenset[str], **changes: object) -> ApprovalRecord:
    """Move the record from one of the `start` states, applying `changes`.

    `ApprovalConflict` when it is in another state, past its expiry, or another writer moved it between
    the read and the write."""
    found = await read(kv, approval_id)
    if found is None:
        raise KeyError(approval_id)
    record, revision = found
    if record.expired():  # moved to `expired` by the admin service's sweep (`expire_due`), audited there
        raise ApprovalConflict(f"approval {approval_id} expired at {_when(record.expires_at)}")
    if record.state not in start:
        raise ApprovalConflict(f"approval {approval_id} is {record.state}, not {' or '.join(sorted(start))}")
    moved = record.model_copy(update=changes)
    await _update(kv, moved, revision)
    return moved


async def _update(kv: KeyValue, record: ApprovalRecord, revision: int) -> None:
    try:
        await kv.update(approval_key(record.id), record.model_dump_json().encode(), last=revision)
    except KeyWrongLastSequenceError:
        raise ApprovalConflict(f"approval {record.id} was changed by someone else at the same time") from None


async def _stored(kv: KeyValue) -> list[tuple[ApprovalRecord, int]]:
    """Every well-formed record with its revision, read 32 at a time (`kv_entries`)."""
    try:
        keys = [k for k in await kv_keys(kv, under=_PREFIX) if _is_id(k[len(_PREFIX) :])]
    except NotFoundError:  # no policy service created the bucket yet
        return []
    found = (_record(entry) for entry in (await kv_entries(kv, keys)).values())
    return [record for record in found if record is not None]


async def list_records(kv: KeyValue) -> list[ApprovalRecord]:
    """Every record, pending ones past their expiry shown as expired, newest first."""
    now = time.time()
    records = [r.model_copy(update={"state": "expired"}) if r.expired(now) else r for r, _ in await _stored(kv)]
    return sorted(records, key=lambda r: r.created_at, reverse=True)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


async def decide(
    kv: KeyValue, approval_id: str, what: Literal["approve", "deny"], by: str, reason: str
) -> tuple[ApprovalRecord, ApprovalRecord]:
    """A person's decision on a pending call: (before, after).

    `KeyError`: no such approval; `OwnCall`: `by` made the call; `ApprovalConflict`: not pending
    (decided, expired, raced)."""
    found = await read(kv, approval_id)
    if found is None:
        raise KeyError(approval_id)
    before = found[0]
    if by in {before.key_name, before.user_id}:
        raise OwnCall(f"{by} made this call (its key or user): another person decides it")
    now = time.time()
    changes: dict[str, object] = {
        "state": "approved" if what == "approve" else "denied",
        "decided_by": by,
        "decided_at": now,
        "decision_reason": reason,
    }
    if what == "approve":  # the agent gets as long again to come back for it
        changes["expires_at"] = now + max(before.expires_at - before.created_at, 60.0)
    after = await transition(kv, approval_id, frozenset({"pending"}), **changes)
    return before, after


def redacted(record: ApprovalRecord) -> ApprovalRecord:
    """The record as audit events show it: the sealed call and outcome left out."""
    return record.model_copy(update={"call_sealed": "[sealed]", "outcome_sealed": None})


def approval_audit_event(before: ApprovalRecord, after: ApprovalRecord, actor: str, what: str) -> AuditEvent:
    """The admin audit event of a decision made outside the admin API (`bastion approvals`)."""
    return AuditEvent(
        kind="admin",
        status="ok",
        latency_ms=0.0,
        server=after.server,
        tool=f"approval.{what}",
        name=after.id,
        actor=actor,
        action=f"approval.{what}",
        target=after.id,
        approval_id=after.id,
        policy_id=after.policy,
        before=redacted(before).model_dump_json(),
        after=redacted(after).model_dump_json(),
    )


async def expire_due(kv: KeyValue) -> list[tuple[ApprovalRecord, ApprovalRecord]]:
    """Move every pending or approved record past its expiry to `expired`.

    (Before, after) of each this caller moved (a compare-and-set: of several sweepers, one moves each
    record)."""
    moved: list[tuple[ApprovalRecord, ApprovalRecord]] = []
    now = time.time()
    for record, revision in await _stored(kv):
        if not record.expired(now):
            continue
        after = record.model_copy(update={"state": "expired"})
        try:
            await _update(kv, after, revision)
        except ApprovalConflict:
            continue  # another sweeper, a decision or a run moved it first
        moved.append((record, after))
    return moved
