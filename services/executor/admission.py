"""Which work an executor runs.

What policy signed (`signing.WorkSigner`), or a call ingress sends straight to the executors with
policy's grant for it (`messages.Grant`). Policy decided once that this caller may make such calls with
nothing to count, and signed that decision; the executor runs one only when the grant is policy's, for
exactly this caller, target and narrowing. Anything else is unsigned work: nothing runs and nothing
answers.

A genuine grant no longer holds once it has expired, or once this executor has applied a change to
the servers' configuration policy had not when it decided (a tool's price or rate limit lives
there, and ingress does not watch that bucket: keys and policy changes it catches itself). Such a
call is answered unrun as stale (`stale_answer`), and the requester asks policy.

A grant with a `condition` (a tool some per-call Cedar policy governs) holds only for a call whose
arguments those policies plainly allow: the executor decides it here, on the arguments it has just
parsed, with the policies compiled once per grant. A call they do not allow (a forbid that matched,
one that could not be evaluated, one asking for an approval or the user's confirmation) or whose
arguments travel apart (a blob) is answered as stale too: policy decides it and words the refusal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cedarpy
from pydantic import ValidationError

from libs.common.bus.work_signing import WorkSigner
from libs.common.cedar.cedar_eval import call_context, condition_allows
from libs.common.cedar.condition_plans import ConditionPlan, plan
from libs.common.cedar.context_reads import Reads, context_reads
from libs.common.contracts import subjects
from libs.common.contracts.carried import carried
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import (
    CallOutcome,
    GatewayError,
    Grant,
    PolicyCondition,
    Routed,
    ToolCall,
    UpstreamRequest,
    encode_outcome,
)

__all__ = ["Admission", "Admitted", "Stale", "stale_answer"]

_MODELS: dict[str, type[ToolCall] | type[UpstreamRequest]] = {
    subjects.EXEC_CALL: ToolCall,
    subjects.EXEC_REQUEST: UpstreamRequest,
}
_REMEMBERED = 4096
"""Grants whose MAC was verified, kept with what they were verified for (a caller repeats its grant
on every call until it expires: ~20 µs of parsing and HMAC per call saved)."""
UNSIGNED = "without policy's signature"
FORGED = "with a grant policy did not make"


@dataclass(frozen=True, slots=True)
class Admitted:
    request: Routed | None
    """The request, when admitting it meant parsing it (a granted call); None: parse it to run it."""


@dataclass(frozen=True, slots=True)
class Stale:
    """A genuine grant that no longer holds: nothing runs, the requester is told and asks policy."""

    call_id: str


@dataclass(frozen=True, slots=True)
class _Condition:
    """A grant's per-call policies, compiled."""

    policies: cedarpy.PolicySet
    entities: cedarpy.Entities
    principal: str
    target: tuple[str, tuple[str, ...]]
    """The server and the tool's names."""
    reads: Reads
    """What the policies read of a call's context: each call's context holds only that (`context_reads`)."""
    plan: ConditionPlan | None
    """The policies as Python, where they compare arguments with constants (None: Cedar decides every call)."""

    def allows(self, request: Routed) -> bool:
        if not isinstance(request, ToolCall) or request.arguments_blob is not None:
            return False
        context = call_context(request.arguments, initiator=request.initiator, reads=self.reads)
        if self.plan is not None and (decided := self.plan.allows(context)) is not None:
            return decided
        return condition_allows(self.policies, self.entities, self.principal, self.target, context)


@dataclass(frozen=True, slots=True)
class _Verified:
    decision: tuple[object, ...]
    expires: float
    servers_revision: int
    condition: _Condition | None = None


def stale_answer(call_id: str) -> tuple[bytes, dict[str, str]]:
    """The outcome (and its header, `subjects.GRANT_STALE`) of a call whose grant no longer holds."""
    error = GatewayError(kind=ErrorKind.GATEWAY_UNAVAILABLE, message="policy's grant for this call no longer holds")
    outcome = CallOutcome(id=call_id, error=error, decided_by="executor", execution="not_run")
    return encode_outcome(outcome), {subjects.GRANT_STALE: "1"}


class Admission:
    def __init__(self, signer: WorkSigner, servers_revision: Callable[[], int] = lambda: 0) -> None:
        self._signer = signer
        self._servers_revision = servers_revision
        """The `bastion_servers` revision this executor has applied."""
        self._verified: dict[tuple[str, str], _Verified] = {}
        """(kind, grant header) -> the decision it was verified genuine for."""

    def admit(
        self, subject: str, reply: str | None, headers: dict[str, str] | None, data: bytes, now: float
    ) -> Admitted | Stale | str:
        """Whether to run the work: admitted, stale, or why it is refused (nothing answers)."""
        given = (headers or {}).get(subjects.GRANT)
        if given is None or subjects.REPLY_TO in (headers or {}):  # policy's own forwards name a requester
            return Admitted(None) if self._signer.verify(subject, reply, headers, data) else UNSIGNED
        model = _MODELS.get(subject)
        if model is None:
            return FORGED
        try:
            request = carried(model, data)
        except ValidationError:
            return FORGED
        verified = self._verified.get((subject, given))
        if verified is None or verified.decision != request.decision():
            verified = self._verify(subject, given, request)
            if verified is None:
                return FORGED
        if now >= verified.expires or verified.servers_revision < self._servers_revision():
            return Stale(request.id)
        if verified.condition is not None and not verified.condition.allows(request):
            return Stale(request.id)  # policy decides it: a refusal, an approval, a confirmation
        return Admitted(request)

    def _verify(self, subject: str, given: str, request: Routed) -> _Verified | None:
        try:
            grant = Grant.model_validate_json(given)
        except ValidationError:
            return None
        if not self._signer.genuine(subject, request, grant):
            return None
        condition = None
        if grant.condition is not None:
            condition = _compiled(grant.condition, request.server)
            if condition is None:
                return None
        if len(self._verified) >= _REMEMBERED:
            self._verified.clear()
        revision = grant.revisions.get(subjects.KV_SERVERS, 0)
        verified = _Verified(request.decision(), grant.expires, revision, condition)
        self._verified[(subject, given)] = verified
        return verified


def _compiled(condition: PolicyCondition, server: str) -> _Condition | None:
    """A genuine grant's condition compiled (None: Cedar refuses it, which policy's own never is)."""
    try:
        policies = cedarpy.PolicySet.from_json_str(condition.policies)
        entities = cedarpy.Entities.from_json_str(condition.entities)
    except (ValueError, RuntimeError):
        return None
    target = (server, tuple(condition.names))
    reads = context_reads(condition.policies)
    return _Condition(
        policies,
        entities,
        condition.principal,
        target,
        reads,
        plan(condition.policies, entities, condition.principal, target),
    )
