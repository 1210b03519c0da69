"""The outcome as it leaves the executor.

The executor's own answers (`refusal`, `undeliverable`), the result shaped and encoded once
(`for_the_wire`), the headers it carries (the call's cost, policy's grant) and its metrics label."""

from __future__ import annotations

from typing import Any

from libs.common.contracts import subjects
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import REFUNDED, CallOutcome, Execution, GatewayError, Routed
from libs.common.contracts.results import encode_result, shape_result, unstamped

__all__ = [
    "charged_usd",
    "for_the_wire",
    "outcome_label",
    "ran",
    "refunded",
    "refusal",
    "reply_headers",
    "undeliverable",
]

_RAN = CallOutcome.model_construct(id="", decided_by="executor", execution="ran")
_RAN_VALUES = dict(_RAN.__dict__)
_RAN_SET = frozenset(_RAN.model_fields_set | {"id", "result", "upstream_ms", "interceptions"})
_new_outcome = CallOutcome.__new__
_set = object.__setattr__


def ran(request_id: str, result: dict[str, Any], upstream_ms: float) -> CallOutcome:
    """The outcome of a request the upstream answered with `result`, unvalidated, without the upstream's stamp.

    (The result was checked on the way in; its `serverInfo` stamp is dropped here, `results.unstamped`,
    before any check reads it.) What `_RAN.model_copy(update={"id", "result", "upstream_ms",
    "interceptions": []})` makes, made directly. `model_construct` asks every field for its default (~5.4
    µs, pydantic 2.14), `model_copy` copies three containers and merges the update (~2.2); this sets the
    four slots a model has (~0.8). tests/unit/test_executor_outcomes.py compares every slot with
    `model_copy`'s, so a pydantic that keeps its state otherwise fails there."""
    outcome = _new_outcome(CallOutcome)
    values = _RAN_VALUES.copy()
    values["id"], values["result"], values["upstream_ms"], values["interceptions"] = (
        request_id,
        unstamped(result),
        upstream_ms,
        [],
    )
    _set(outcome, "__dict__", values)
    _set(outcome, "__pydantic_fields_set__", set(_RAN_SET))
    _set(outcome, "__pydantic_extra__", None)
    _set(outcome, "__pydantic_private__", None)
    return outcome


def refusal(
    call: Routed,
    kind: ErrorKind,
    message: str,
    execution: Execution = "not_run",
    code: int | None = None,
    upstream_ms: float | None = None,
    logged: str | None = None,
) -> CallOutcome:
    """The executor's answer when it decides a call without asking the upstream.

    (Or, with `execution="may_have_run"`, when it lost track of a call it had sent); `code` a JSON-RPC
    error code the answer must carry, `upstream_ms` how long the upstream had the request, if it did,
    `logged` what the audit row says instead of `message` (`GatewayError.logged`)."""
    error = GatewayError(kind=kind, message=message, code=code, logged=logged)
    return CallOutcome(id=call.id, error=error, decided_by="executor", execution=execution, upstream_ms=upstream_ms)


def undeliverable(outcome: CallOutcome, kind: ErrorKind, message: str) -> CallOutcome:
    """The answer when the upstream did answer but its result cannot be delivered."""
    return CallOutcome(
        id=outcome.id,
        error=GatewayError(kind=kind, message=message),
        decided_by="executor",
        upstream_ms=outcome.upstream_ms,
        events=outcome.events,
        execution="ran",
        interceptions=outcome.interceptions,
    )


def outcome_label(outcome: CallOutcome) -> str:
    """The `outcome` label of a request's metrics: its error kind, `tool_error`, or `ok`."""
    if outcome.error is not None:
        return str(outcome.error.kind)
    if outcome.result is not None and outcome.result.get("isError") is True:
        return "tool_error"
    return "ok"


def refunded(outcome: CallOutcome) -> bool:
    """Whether the call's charge is given back.

    It did not run (or the gateway cannot know it did, `messages.REFUNDED`), or an interceptor refused it
    before the upstream was called."""
    error = outcome.error
    if error is None:
        return False
    if error.kind in REFUNDED:
        return True
    return outcome.execution == "not_run" and any(
        d.action == "block" and d.where == "arguments" for d in outcome.interceptions
    )


def charged_usd(headers: dict[str, str] | None, outcome: CallOutcome) -> dict[str, str] | None:
    """A priced call's cost for the requester's audit event.

    The price policy forwarded it with, or 0 when the call did not run (its charge is refunded); None (no
    header) for a call without a price."""
    price = (headers or {}).get(subjects.CHARGED_USD)
    if price is None:
        return None
    return {subjects.CHARGED_USD: "0.0" if refunded(outcome) else price}


def reply_headers(headers: dict[str, str] | None, outcome: CallOutcome) -> dict[str, str] | None:
    """Headers of the outcome sent to the requester.

    The call's cost (`charged_usd`), and policy's `GRANT` of a call it forwarded, handed back so the
    requester can reuse the decision."""
    if not headers:
        return None
    reply = charged_usd(headers, outcome) if subjects.CHARGED_USD in headers else None  # most calls: no price
    grant = headers.get(subjects.GRANT)
    if grant is not None and subjects.REPLY_TO in headers:
        reply = {**(reply or {}), subjects.GRANT: grant}
    return reply


def for_the_wire(outcome: CallOutcome, version: str | None) -> CallOutcome:
    """The outcome with its result shaped for the agent's revision and encoded once.

    To travel after the envelope and reach the agent as it is (`messages.encode_outcome`)."""
    result = outcome.result
    if result is None:
        return outcome
    shaped = shape_result(result, version) if version else result
    try:
        raw = encode_result(shaped)
    except ValueError as exc:
        return undeliverable(outcome, ErrorKind.UPSTREAM_ERROR, f"the upstream's result is not valid JSON: {exc}")
    outcome.result, outcome.raw_result = None, raw
    if (is_error := shaped.get("isError") is True) != outcome.is_error:  # mostly both False: no assignment
        outcome.is_error = is_error
    return outcome
