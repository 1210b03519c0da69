"""Calls ingress sends straight to the executors with policy's grant (`messages.Grant`): policy
decided once that this caller may make such calls with nothing to count, and signed that decision;
the executor runs one only when the grant is policy's, for exactly this caller, target and
narrowing. Anything else is treated as unsigned work: nothing runs and nothing answers.

A genuine grant no longer holds once it has expired, or once this executor has applied a change to
the servers' configuration policy had not when it decided (a tool's price or rate limit lives
there, and ingress does not watch that bucket: keys and policy changes it catches itself). Such a
call is answered unrun as stale, and the requester asks policy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from bastion_common import subjects
from bastion_common.messages import Grant, RoutedHead, ToolCall, UpstreamRequest
from bastion_common.signing import WorkSigner

__all__ = ["GrantChecker", "Granted"]

_MODELS: dict[str, type[ToolCall] | type[UpstreamRequest]] = {
    subjects.EXEC_CALL: ToolCall,
    subjects.EXEC_REQUEST: UpstreamRequest,
}
_REMEMBERED = 4096
"""Grants whose MAC was verified, kept with what they were verified for (a caller repeats its grant
on every call until it expires: ~20 µs of HMAC per call saved)."""


@dataclass(frozen=True, slots=True)
class Granted:
    request: ToolCall | UpstreamRequest
    current: bool
    """False once the grant has expired on this executor's clock, or was decided before a servers
    change this executor has applied: nothing runs, the requester is told (`subjects.GRANT_STALE`)
    and asks policy instead."""


def _decided(head: RoutedHead) -> tuple[object, ...]:
    """Everything of a request a grant's MAC covers besides the grant's own fields."""
    c = head.caller
    return (
        (c.key_id, c.key_name, c.user_id, c.team_id, c.customer_id, c.content_logging),
        head.server,
        head.granted_as,
        tuple(head.include_servers) if head.include_servers is not None else None,
        tuple(head.include_tools) if head.include_tools is not None else None,
    )


class GrantChecker:
    def __init__(self, signer: WorkSigner, servers_revision: Callable[[], int] = lambda: 0) -> None:
        self._signer = signer
        self._servers_revision = servers_revision
        """The `bastion_servers` revision this executor has applied."""
        self._verified: dict[tuple[str, str], tuple[object, ...]] = {}
        """(kind, grant header) -> the request it was verified genuine for."""

    def granted(self, subject: str, headers: dict[str, str] | None, data: bytes, now: float) -> Granted | None:
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
        decided = _decided(request)
        if self._verified.get((subject, given)) != decided:
            if not self._signer.genuine(subject, request, grant):
                return None
            if len(self._verified) >= _REMEMBERED:
                self._verified.clear()
            self._verified[(subject, given)] = decided
        decided_at = grant.revisions.get(subjects.KV_SERVERS, 0)
        return Granted(request, now < grant.expires and decided_at >= self._servers_revision())
