"""Calls parked for a person's approval, on policy's side: park one, and run an approved one once.

Parking stores the whole `ToolCall` (sealed) in `KV_APPROVALS` and answers the agent with an
`approval_required` error naming the approval, who decides, until when, and how to come back. The
agent's later call of the same tool naming the approval (`params._meta["bastion/approval"]`), or
the same key's call of the same tool with the same arguments (found through `call.<digest>`, see
`_call_index`), gets: still waiting, refused (denied, expired), or the outcome. The first such call after an approval
moves the record to `running` (a compare-and-set: one caller wins) and runs the STORED call, never
the arguments just sent; its outcome is kept (sealed) and every later call gets it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from typing import Any

import httpx2
import orjson
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError, KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from libs.common.bus.relay import AckedRequester, ResponderLost
from libs.common.cedar import approvals
from libs.common.cedar.approvals import APPROVAL_META, ApprovalConflict, ApprovalRecord
from libs.common.cedar.cedar_eval import Verdict
from libs.common.contracts import subjects
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CallOutcome, GatewayError, ToolCall, decode_outcome, encode_outcome
from libs.common.runtime.sealing import Sealer, SealingError
from libs.common.settings import PolicySettings
from libs.common.web.egress_rules import EgressRules
from libs.common.web.guarded_http import guarded_transport

__all__ = ["ApprovalDesk"]

log = logging.getLogger(__name__)

_POLL_AFTER = 5
"""Seconds the agent is told to wait before asking again."""
_WRONG_LAST = frozenset({10071, 10164})
"""JetStream's "wrong last sequence" errors: a delete expecting a revision lost the race."""


class ApprovalDesk:
    def __init__(self, kv: KeyValue, executors: AckedRequester, settings: PolicySettings) -> None:
        self._kv = kv
        self._executors = executors
        self._sealer = Sealer(settings.secrets_key)
        self._ttl = settings.approval_ttl
        self._webhook = settings.approval_webhook_url
        self._webhook_key = settings.approval_webhook_secret.get_secret_value().encode()
        self._egress = EgressRules(settings.egress.allow_private_hosts)
        self._notices: set[asyncio.Task[None]] = set()

    async def park(self, call: ToolCall, verdict: Verdict) -> bytes:
        """The answer to a call a policy parks (an outcome in its bus form).

        The earlier approval of the same call when one is open (an agent without `_meta` collects by
        calling again), else a new one."""
        # arguments too large for the bus message travel as a blob the digest does not cover: such a
        # call is never matched to another (it would collect that call's approved run)
        index = _call_index(call) if call.arguments_blob is None else None
        again = await self._same_again(call, index) if index is not None else None
        if again is not None:
            return again
        now = time.time()
        record = ApprovalRecord(
            id=approvals.new_approval_id(),
            key_id=call.caller.key_id,
            key_name=call.caller.key_name,
            user_id=call.caller.user_id,
            team_id=call.caller.team_id,
            customer_id=call.caller.customer_id,
            server=call.server,
            tool=call.tool,
            name=call.name,
            policy=verdict.policy,
            reason=verdict.reason,
            approvers=verdict.approvers or "",
            call_sealed=self._sealer.seal_value(call.model_dump_json()),
            arguments_sha256=_arguments_sha256(call),
            created_at=now,
            expires_at=now + (verdict.timeout or self._ttl),
        )
        await approvals.create(self._kv, record)
        if index is not None:
            await self._kv.put(index, record.id.encode())
        if self._webhook:
            task = asyncio.create_task(self._notify(record))
            self._notices.add(task)
            task.add_done_callback(self._notices.discard)
        return encode_outcome(_waiting(call.id, record))

    async def _same_again(self, call: ToolCall, index: str) -> bytes | None:
        """The answer from the approval this key's same call (same tool, same arguments) got last.

        While it means something to the agent: waiting, approved (this call collects the run), or a
        denial or expiry not yet told. None: park anew (it ran, was told, or there is none)."""
        try:
            entry = await self._kv.get(index)
        except KeyNotFoundError:
            return None
        found = await approvals.read(self._kv, (entry.value or b"").decode())
        if found is None or not _same_call(found[0], call):
            return None
        record = found[0]
        if record.state in ("pending", "approved", "running") and not record.expired():
            return await self.resume(call, record.id)
        if record.state == "ran":
            return None
        try:  # a denial or expiry is told once; the next same call asks a person anew
            await self._kv.delete(index, last=entry.revision)
        except APIError as exc:
            if exc.err_code not in _WRONG_LAST:
                raise
            return None  # another call of the same arguments told it, or parked anew
        return self._answer(call.id, record)

    async def resume(self, call: ToolCall, approval_id: str) -> bytes:
        """The answer to a call naming an approval (an outcome in its bus form)."""
        found = await approvals.read(self._kv, approval_id)
        if found is None or not _same_call(found[0], call):
            message = f"no approval {approval_id!r} waits for this key's call of {call.name!r}"
            return _refused(call.id, approval_id, None, GatewayError(kind=ErrorKind.FORBIDDEN, message=message))
        record = found[0]
        if record.state == "approved" and not record.expired():
            try:
                record = await approvals.transition(self._kv, approval_id, frozenset({"approved"}), state="running")
            except ApprovalConflict:
                found = await approvals.read(self._kv, approval_id)
                record = found[0] if found is not None else record
            else:
                return await self._run(call, record)
        return self._answer(call.id, record)

    def _answer(self, call_id: str, record: ApprovalRecord) -> bytes:
        if record.state == "ran" and record.outcome_sealed is not None:
            outcome = decode_outcome(self._sealer.open_value(record.outcome_sealed).encode())
            # the kept outcome again: nothing ran for this call, and its audit row says so
            outcome.id, outcome.approval_run, outcome.execution = call_id, "replay", "not_run"
            return encode_outcome(outcome)
        if record.expired() or record.state == "expired":
            message = f"approval {record.id} expired unanswered: the call did not run (call the tool again to ask anew)"
            error = GatewayError(kind=ErrorKind.FORBIDDEN, message=message, data={"approval": _public(record)})
            return _refused(call_id, record.id, record.policy, error)
        if record.state == "denied":
            why = f": {record.decision_reason}" if record.decision_reason else ""
            message = f"approval {record.id} was denied by {record.decided_by}{why}; the call did not run"
            error = GatewayError(kind=ErrorKind.FORBIDDEN, message=message, data={"approval": _public(record)})
            return _refused(call_id, record.id, record.policy, error)
        return encode_outcome(_waiting(call_id, record))

    async def _run(self, call: ToolCall, record: ApprovalRecord) -> bytes:
        """The stored call, run once under this request's id and deadline; its outcome kept."""
        try:
            stored = ToolCall.model_validate_json(self._sealer.open_value(record.call_sealed))
        except SealingError as exc:
            outcome = CallOutcome(
                id=call.id, error=GatewayError(kind=ErrorKind.INTERNAL, message=str(exc)), decided_by="policy"
            )
            return await self._ran(record, outcome, None)
        run = stored.model_copy(
            update={
                "id": call.id,
                "sent_at": call.sent_at,
                "timeout": call.timeout,
                "deadline": call.deadline,
                "stream": call.stream,
                "trace_id": call.trace_id,
                "meta": {k: v for k, v in (stored.meta or {}).items() if k != APPROVAL_META} or None,
            }
        )
        within = max(call.deadline - time.time() - 0.05, 0.05)
        try:
            reply = await self._executors.request(subjects.EXEC_CALL, run.model_dump_json().encode(), within=within)
            outcome = decode_outcome(reply.data)
        except (ResponderLost, NatsTimeout, ValidationError) as exc:
            # it may have run: never run it again, say so
            message = f"the approved call was sent but its outcome was lost ({type(exc).__name__}); it is not run again"
            outcome = CallOutcome(
                id=call.id,
                error=GatewayError(kind=ErrorKind.GATEWAY_TIMEOUT, message=message),
                decided_by="policy",
                execution="may_have_run",
            )
        except NoRespondersError:
            message = "no executor service is running; the approved call did not run"
            outcome = CallOutcome(
                id=call.id,
                error=GatewayError(kind=ErrorKind.GATEWAY_UNAVAILABLE, message=message),
                decided_by="policy",
                execution="not_run",
            )
        # the arguments that ran, for the audit row (a call whose arguments travel as a blob: its digest only)
        return await self._ran(record, outcome, stored.arguments if stored.arguments_blob is None else None)

    async def _ran(self, record: ApprovalRecord, outcome: CallOutcome, arguments: dict[str, Any] | None) -> bytes:
        outcome.policy_id, outcome.approval_id, outcome.approval_run = record.policy, record.id, "run"
        outcome.ran_arguments = arguments
        encoded = encode_outcome(outcome)
        try:
            await approvals.transition(
                self._kv,
                record.id,
                frozenset({"running"}),
                state="ran",
                ran_at=time.time(),
                outcome_sealed=self._sealer.seal_value(encoded.decode()),
            )
        except Exception as exc:  # the agent still gets the outcome; the record stays `running`, never run again
            log.error("approval %s ran but its outcome could not be kept: %s", record.id, type(exc).__name__)
        return encoded

    async def _notify(self, record: ApprovalRecord) -> None:
        """POST the park to the webhook: who, which tool, which policy, never the arguments."""
        body = orjson.dumps({"event": "approval.pending", "approval": _public(record)})
        signature = hmac.new(self._webhook_key, body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Bastion-Signature": f"sha256={signature}"}
        # as an upstream is reached: checked addresses only, no redirect, no proxy from the environment
        transport = guarded_transport(self._egress.addresses, trust_env=False)
        try:
            async with httpx2.AsyncClient(
                timeout=5.0, transport=transport, follow_redirects=False, trust_env=False
            ) as client:
                answer = await client.post(self._webhook, content=body, headers=headers)
            if answer.status_code >= 300:
                log.warning("approval webhook answered %s for %s", answer.status_code, record.id)
        except httpx2.HTTPError as exc:
            # a connect error names the host (the egress rules' refusal, how to allow it), never the
            # URL's path, which often holds the chat tool's token; other errors are named by kind
            why = str(exc) if isinstance(exc, httpx2.ConnectError) else type(exc).__name__
            log.warning("approval webhook unreachable for %s: %s", record.id, why)

    async def stop(self) -> None:
        if self._notices:
            await asyncio.wait(self._notices, timeout=5)


def _arguments_sha256(call: ToolCall) -> str:
    return hashlib.sha256(orjson.dumps(call.arguments, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _call_index(call: ToolCall) -> str:
    """The KV key naming the approval this key's call of this tool with these arguments got last.

    (Its value is the approval id): what finds it again when the agent calls the same way."""
    who = "\0".join((call.caller.key_id, call.server, call.tool, _arguments_sha256(call)))
    return approvals.CALL_PREFIX + hashlib.sha256(who.encode()).hexdigest()


def _same_call(record: ApprovalRecord, call: ToolCall) -> bool:
    """The approval belongs to this key's call of this tool: another caller naming it learns nothing."""
    return record.key_id == call.caller.key_id and record.server == call.server and record.tool == call.tool


def _public(record: ApprovalRecord) -> dict[str, Any]:
    """What the agent and the webhook are told of an approval (never the arguments)."""
    return {
        "id": record.id,
        "state": "expired" if record.expired() else record.state,
        "tool": record.name,
        "policy": record.policy,
        "reason": record.reason,
        "approvers": record.approvers,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "decided_by": record.decided_by,
        "decision_reason": record.decision_reason,
    }


def _waiting(call_id: str, record: ApprovalRecord) -> CallOutcome:
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.expires_at))
    why = f" ({record.reason})" if record.reason else ""
    state = "is approved and about to run" if record.state in ("approved", "running") else "waits for approval"
    message = (
        f"this call of {record.name!r} {state} by {record.approvers} under policy {record.policy!r}{why}. "
        f"Approval {record.id} expires at {until}. To get its result once approved, call {record.name!r} "
        f"again with the same arguments (after {_POLL_AFTER}s or more): that call runs the approved arguments "
        "once and answers with their result; until a person decides it gets this answer again. "
        f'(Or call it with params._meta["{APPROVAL_META}"] = "{record.id}": then the approved arguments run, '
        "whatever arguments that call sends.)"
    )
    data = {
        "approval": _public(record),
        "retry": {"same_arguments": True, "_meta": {APPROVAL_META: record.id}, "after_seconds": _POLL_AFTER},
    }
    error = GatewayError(kind=ErrorKind.APPROVAL_REQUIRED, message=message, data=data)
    return CallOutcome(
        id=call_id,
        error=error,
        decided_by="policy",
        execution="not_run",
        policy_id=record.policy,
        approval_id=record.id,
    )


def _refused(call_id: str, approval_id: str, policy: str | None, error: GatewayError) -> bytes:
    outcome = CallOutcome(
        id=call_id, error=error, decided_by="policy", execution="not_run", policy_id=policy, approval_id=approval_id
    )
    return encode_outcome(outcome)
