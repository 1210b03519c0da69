"""Calls ingress sends straight to the executors with policy's grant (`messages.Grant`): policy
decided once that this caller may make such calls with nothing to count, and signed that decision;
the executor runs one only when the grant is policy's, for exactly this caller, target and
narrowing. Anything else is treated as unsigned work: nothing runs and nothing answers."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from bastion_common import subjects
from bastion_common.messages import Grant, ToolCall, UpstreamRequest
from bastion_common.signing import WorkSigner

__all__ = ["Granted", "granted"]

_MODELS: dict[str, type[ToolCall] | type[UpstreamRequest]] = {
    subjects.EXEC_CALL: ToolCall,
    subjects.EXEC_REQUEST: UpstreamRequest,
}


@dataclass(frozen=True, slots=True)
class Granted:
    request: ToolCall | UpstreamRequest
    current: bool
    """False once the grant has expired on this executor's clock: nothing runs, the requester is
    told (`subjects.GRANT_STALE`) and asks policy instead."""


def granted(
    signer: WorkSigner, subject: str, headers: dict[str, str] | None, data: bytes, now: float
) -> Granted | None:
    """The request of a call sent with a genuine grant for it; None when there is none, it is
    malformed, or policy did not make it for this very request."""
    model = _MODELS.get(subject)
    given = (headers or {}).get(subjects.GRANT)
    if model is None or given is None:
        return None
    try:
        grant = Grant.model_validate_json(given)
        request = model.model_validate_json(data)
    except ValidationError:
        return None
    if not signer.genuine(subject, request, grant):
        return None
    return Granted(request, now < grant.expires)
