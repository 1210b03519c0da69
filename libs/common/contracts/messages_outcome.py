"""A routed request's outcome (`messages`): its result or why there is none, its bus form, and refunds.

On the bus the result travels after the envelope as its own JSON (`encode_outcome`), so ingress
passes it on without parsing it.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import orjson
from pydantic import Field

from libs.common.contracts.carried import Carried, carried, carries, carrying, snapshot
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages_base import BusMessage, Execution, GatewayError, InterceptorDecision

__all__ = [
    "REFUNDED",
    "CallOutcome",
    "Refund",
    "decode_outcome",
    "encode_outcome",
]


class CallOutcome(BusMessage):
    """executor or policy -> ingress: the result of a `ToolCall`, or why there is none.

    On the bus the result travels after the envelope as its own JSON (`encode_outcome`), so the
    receiver can pass it on without parsing it (`raw_result`); `result` is for producers that hold
    it as a dict, and `result_value()` for consumers that need one."""

    id: str
    result: dict[str, Any] | None = None
    """The upstream's result as wire JSON (camelCase), before it is encoded for the bus."""
    raw_result: bytes | None = Field(default=None, exclude=True, repr=False)
    """The result as JSON bytes, as `decode_outcome` found it after the envelope (never in the
    envelope itself): spliced into the agent's answer as it is."""
    is_error: bool = False
    """The result is a tool error (`isError`): the envelope says so, so the audit reads no result."""
    error: GatewayError | None = None
    decided_by: Literal["policy", "executor"]
    upstream_ms: float | None = None
    events: int = 0
    """`StreamEvent`s the executor sent to the call's stream before this outcome: ingress forwards
    that many before the result, so a late notification never follows the answer."""
    execution: Execution | None = None
    """Whether the upstream ran the request, as far as the service answering knows."""
    result_blob: str | None = None
    """Set when the result was too large for one NATS message: the object (`subjects.OBJ_BLOBS`)
    holding it as JSON; `result` is then None (`libs.common.bus.blobs`)."""
    cost_usd: float | None = None
    """What policy charged for the call (USD), read by the requester from policy's `Bastion-Charged-Usd`
    header (`relay.call_outcome`): policy relays the executor's bytes untouched. None: nothing priced."""
    policy_id: str | None = None
    """The Cedar policy that decided the call (its `@id`): the one that refused it, asked for
    approval, or `grants` for a call no policy forbade; None when no policy set applies."""
    approval_id: str | None = None
    """The approval the call waits for, or ran under (`libs.common.cedar.approvals`)."""
    approval_run: Literal["run", "replay"] | None = None
    """Under an approval: `run` when this call ran the approved call, `replay` when it got the kept
    outcome of an earlier run again (nothing ran). The audit row says which (`action`)."""
    ran_arguments: dict[str, Any] | None = None
    """Under an approval: the APPROVED arguments that ran (never those of the call collecting them),
    which the audit row records in place of the collecting call's."""
    interceptions: list[InterceptorDecision] = Field(default=[], max_length=64)
    """What the executor's interceptors decided on the way (refused, redacted, flagged ...): the
    requester copies it into the request's audit row. Empty when none acted. A plain default, not a
    `default_factory`: `model_construct` (the executor's hot path) asks pydantic whether a factory
    takes the validated data, an `inspect.signature` of `list` costing ~160 µs per outcome (measured,
    pydantic 2.14); an empty default is copied for each outcome instead."""

    def result_value(self) -> dict[str, Any] | None:
        """The result as a dict, parsed from `raw_result` when that is how it came."""
        if self.result is None and self.raw_result is not None:
            parsed = orjson.loads(self.raw_result)
            self.result = parsed if isinstance(parsed, dict) else None
        return self.result


REFUNDED: frozenset[ErrorKind] = frozenset(
    {
        ErrorKind.UPSTREAM_UNAVAILABLE,
        ErrorKind.UPSTREAM_TIMEOUT,
        ErrorKind.UPSTREAM_ERROR,
        ErrorKind.INVALID_ARGUMENTS,
        ErrorKind.UNKNOWN_TOOL,
        ErrorKind.GATEWAY_UNAVAILABLE,
        ErrorKind.GATEWAY_TIMEOUT,
        ErrorKind.INTERNAL,
    }
)
"""Outcomes after which a call's charge is refunded: the tool did not run (or the gateway cannot know
it did). A tool result with `isError` is a tool that ran, and stays charged."""


class Refund(BusMessage):
    """executor, ingress, codemode -> policy: give back what the call `id` was charged (at most once)."""

    id: str


def encode_outcome(outcome: CallOutcome) -> bytes:
    """The bus form of an outcome.

    Its envelope (JSON on one line), then, after a newline, the result's JSON (`raw_result`, or `result`
    encoded) when it has one."""
    raw = outcome.raw_result
    if raw is None and outcome.result is not None:
        raw = orjson.dumps(outcome.result)
    envelope = outcome.__pydantic_serializer__.to_json(outcome, exclude=_NOT_IN_ENVELOPE)
    data = envelope if raw is None else envelope + b"\n" + raw
    if not carries():
        return data
    # what `decode_outcome` makes of these bytes, for a receiver in this process (`carried`)
    if raw is None:
        return carrying(outcome, data, snapshot(outcome, _NO_RESULT, _NO_RESULT))
    return carrying(outcome, data, snapshot(outcome, {"result": None, "raw_result": raw}, _NOT_IN_ENVELOPE))


def decode_outcome(data: bytes) -> CallOutcome:
    """An outcome from its bus form (`encode_outcome`); the result stays bytes (`raw_result`).

    Raises `pydantic.ValidationError` when the envelope is not a `CallOutcome`."""
    if type(data) is Carried and type(data.model) is CallOutcome:
        return carried(CallOutcome, data)
    envelope, newline, raw = data.partition(b"\n")  # compact JSON has no raw newline
    outcome = CallOutcome.model_validate_json(envelope)
    if newline:
        outcome.raw_result = raw
    return outcome


_NOT_IN_ENVELOPE: Final = {"result"}
"""What `encode_outcome` leaves out of the envelope (`raw_result` is never dumped)."""
_NO_RESULT: Final = {"result": None, "raw_result": None}
