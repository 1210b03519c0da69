"""Calls a `@confirm` policy puts to the agent's own user, on policy's side.

Policy asks, through the agent's response stream (`ToolCall.stream`, the same way an upstream's
elicitation reaches the agent, `services.executor.agents`): an `elicitation/create` request in form
mode showing the tool, its arguments and the policy's reason, with one boolean field `confirm`. The
answer comes back to policy's own inbox (ingress relays it by the signed reply id), never through
the agent's next request, so nothing the agent sends (a `_meta` flag, a made-up id) can stand for
it. On accept with `confirm: true` policy charges the call as any (`service`) and runs the call it
holds, the very bytes it decided on, once; anything else refuses it. The outcome names the policy
(`policy_id`) and what the user said (`approval_id` = `user:<answer>`), which the audit row keeps.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Final

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import ValidationError

from libs.common.bus.relay import AckedRequester, ResponderLost
from libs.common.cedar.cedar_eval import Verdict
from libs.common.contracts import subjects
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import (
    CallOutcome,
    ClientReply,
    GatewayError,
    StreamEvent,
    ToolCall,
    decode_outcome,
    encode_outcome,
)

__all__ = ["CONFIRMED", "UserConfirmation"]

log = logging.getLogger(__name__)

CONFIRMED: Final = "user:confirmed"
"""The `approval_id` of a call its user confirmed; refusals say `user:declined`, `user:cancelled`,
`user:unanswered` or `user:cannot-ask`."""
_RUN_RESERVE = 0.5
"""Seconds of the call's deadline kept for running it once the user has answered."""
_SHOWN_ARGUMENTS = 4000
"""Characters of the arguments the question shows (the rest is elided, and said to be)."""


class UserConfirmation:
    def __init__(self, nc: NATS, executors: AckedRequester) -> None:
        self._nc = nc
        self._executors = executors

    async def ask(self, call: ToolCall, verdict: Verdict) -> bytes | None:
        """None when the call's user confirmed it; else its refusal (an outcome in bus form)."""
        cannot = _cannot_ask(call)
        if cannot is not None:
            return _refused(call, verdict, "cannot-ask", f"it asks the user to confirm the call, but {cannot}")
        answer = await self._ask(call, verdict)
        if answer != "confirmed":
            return _refused(call, verdict, answer, _REFUSALS[answer])
        return None

    async def _ask(self, call: ToolCall, verdict: Verdict) -> str:
        assert call.stream is not None
        event = StreamEvent(method="elicitation/create", params=question(call, verdict))
        within = max(call.deadline - time.time() - _RUN_RESERVE, 0.1)
        try:
            reply = await self._nc.request(call.stream, event.model_dump_json().encode(), timeout=within)
            answer = ClientReply.model_validate_json(reply.data)
        except (NatsTimeout, NoRespondersError):
            return "unanswered"
        except ValidationError:
            return "cancelled"
        result = answer.result or {}
        if answer.error is not None or result.get("action") not in ("accept", "decline"):
            return "cancelled"
        content = result.get("content")
        accepted = result["action"] == "accept" and isinstance(content, dict) and content.get("confirm") is True
        return "confirmed" if accepted else "declined"

    async def run(
        self, call: ToolCall, verdict: Verdict, data: bytes, headers: dict[str, str]
    ) -> tuple[bytes, dict[str, str] | None]:
        """The confirmed call (`data`, the bytes policy decided on) run once.

        Its outcome, marked confirmed, and the executor's reply headers (the call's cost)."""
        within = max(call.deadline - time.time() - 0.05, 0.05)
        answered: dict[str, str] | None = None
        try:
            reply = await self._executors.request(subjects.EXEC_CALL, data, within=within, extra=headers)
            outcome, answered = decode_outcome(reply.data), reply.headers
        except (ResponderLost, NatsTimeout, ValidationError) as exc:
            message = f"the confirmed call was sent but its outcome was lost ({type(exc).__name__})"
            error = GatewayError(kind=ErrorKind.GATEWAY_TIMEOUT, message=message)
            outcome = CallOutcome(id=call.id, error=error, decided_by="policy", execution="may_have_run")
        except NoRespondersError:
            error = GatewayError(
                kind=ErrorKind.GATEWAY_UNAVAILABLE, message="no executor service is running; the call did not run"
            )
            outcome = CallOutcome(id=call.id, error=error, decided_by="policy", execution="not_run")
        outcome.policy_id, outcome.approval_id = verdict.policy, CONFIRMED
        return encode_outcome(outcome), _passed_back(answered)


_REFUSALS: Final = {
    "declined": "the user declined the call",
    "cancelled": "the user cancelled the question (or the client answered it with an error)",
    "unanswered": "the user did not answer before the call's deadline",
}


def _cannot_ask(call: ToolCall) -> str | None:
    if "elicitation" not in call.client:
        return "this client cannot be asked: it did not declare the elicitation capability"
    if call.stream is None:
        return "this client cannot be asked: its request takes no event stream (Accept: text/event-stream)"
    if call.arguments_blob is not None:
        return "the call's arguments are too large to show the user"
    return None


def question(call: ToolCall, verdict: Verdict) -> dict[str, Any]:
    """The `elicitation/create` params: the policy's question, the tool, its arguments, the reason."""
    shown = json.dumps(call.arguments, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    if len(shown) > _SHOWN_ARGUMENTS:
        shown = shown[:_SHOWN_ARGUMENTS] + "\n... (longer arguments elided)"
    why = f"\nWhy: {verdict.reason}" if verdict.reason else ""
    message = (
        f"{verdict.question or 'Run this tool call?'}\n\nTool: {call.name}\nArguments:\n{shown}\n"
        f"Policy: {verdict.policy}{why}"
    )
    schema = {
        "type": "object",
        "properties": {
            "confirm": {"type": "boolean", "title": "Run this call", "description": "Run it once, as shown"}
        },
        "required": ["confirm"],
    }
    return {"message": message, "requestedSchema": schema}


def _passed_back(headers: dict[str, str] | None) -> dict[str, str] | None:
    """The executor's reply headers the requester reads (the call's cost), not the relay's own."""
    if not headers or subjects.CHARGED_USD not in headers:
        return None
    return {subjects.CHARGED_USD: headers[subjects.CHARGED_USD]}


def _refused(call: ToolCall, verdict: Verdict, answer: str, why: str) -> bytes:
    message = f"refused by policy {verdict.policy!r}: {why}; the call did not run"
    data = {"policy": verdict.policy, "confirmation": answer}
    outcome = CallOutcome(
        id=call.id,
        error=GatewayError(kind=ErrorKind.FORBIDDEN, message=message, data=data),
        decided_by="policy",
        execution="not_run",
        policy_id=verdict.policy,
        approval_id=f"user:{answer}",
    )
    return encode_outcome(outcome)
