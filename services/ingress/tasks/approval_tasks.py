"""A call parked for a person's approval, answered as a gateway-hosted task (docs/approvals.md).

Policy parks the call and answers `approval_required` (-32055) naming the approval; for an agent
that speaks tasks the task router turns that answer into a task at once, and the task's work is
the agent's own retry done for it: the same call, naming the approval in
`params._meta["bastion/approval"]`, sent through the ordinary request path (policy answers it from
the approval record; ingress never reads the approvals bucket) until it answers something other
than `approval_required`. Policy runs the STORED call on the first retry after the approval, so the
task ends with the run of the arguments that were approved, or with the denial or expiry.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from libs.common.cedar.approvals import APPROVAL_META
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import AuditEvent
from services.ingress.context import RequestContext
from services.ingress.tasks.task_host import TaskHost

__all__ = ["collect", "names_approval", "parked_approval", "waiting_message"]

_TRANSIENT = frozenset((ErrorKind.GATEWAY_UNAVAILABLE.value, ErrorKind.GATEWAY_TIMEOUT.value))


def parked_approval(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The approval an `approval_required` answer names (its `data.approval`), else None."""
    error = payload.get("error")
    data = error.get("data") if isinstance(error, dict) else None
    if not isinstance(data, dict) or data.get("kind") != "approval_required":
        return None
    approval = data.get("approval")
    if not isinstance(approval, dict) or not isinstance(approval.get("id"), str):
        return None
    return approval


def names_approval(params: dict[str, Any]) -> bool:
    """Whether the agent's call already names an approval (it collects by retry itself)."""
    meta = params.get("_meta")
    return isinstance(meta, dict) and APPROVAL_META in meta


def waiting_message(approval: dict[str, Any]) -> str:
    """The task's status message while the call waits: who decides, under which policy, until when."""
    expires = approval.get("expires_at")
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)) if isinstance(expires, int | float) else "?"
    reason = approval.get("reason")
    why = f" ({reason})" if isinstance(reason, str) and reason else ""
    return (
        f"waits for approval by {approval.get('approvers') or 'an approver'} under policy "
        f"{approval.get('policy')!r}{why}; approval {approval['id']} expires at {until}"
    )


async def collect(
    ctx: RequestContext, params: dict[str, Any], approval_id: str, interval: float, h: TaskHost
) -> tuple[dict[str, Any], AuditEvent | None]:
    """The call's answer once the approval is decided.

    The approved run's result (policy runs the stored arguments; the ones in `params` are never used), or
    the refusal of a denial or expiry. Each poll is a request of its own on `ctx` (a detached one: its
    latency and `call_id` are the poll's, so a cancel abandons the one in flight)."""
    sent = params.get("_meta")
    meta: dict[str, Any] = sent if isinstance(sent, dict) else {}
    retry = {**params, "_meta": {**meta, APPROVAL_META: approval_id}}
    while True:
        await asyncio.sleep(interval)
        ctx.started, ctx.call_id = time.perf_counter(), None
        payload, audit = await h.tools_call(ctx, retry)
        if parked_approval(payload) is None and not _transient(payload):
            return payload, audit


def _transient(payload: dict[str, Any]) -> bool:
    """The gateway could not answer this poll (the bus or the approvals store away): poll again.

    Safe even mid-run: the record's compare-and-set runs the call once, and a later poll reads the kept
    outcome. The task's ttl bounds the waiting."""
    error = payload.get("error")
    data = error.get("data") if isinstance(error, dict) else None
    return isinstance(data, dict) and data.get("kind") in _TRANSIENT
