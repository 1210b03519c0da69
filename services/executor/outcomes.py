"""Pure decisions of the executor: how long a call may take, how long to wait before reconnecting,
and which `GatewayError` an exception becomes.

Kept free of I/O so the rules are unit-tested directly; the rest of the service only applies them.
Also the outcome as it leaves for the requester: its result shaped and encoded once (`for_the_wire`),
and the cost header it carries (`charged_usd`).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable

import anyio
import httpx2
from mcp.client.streamable_http import DEFAULT_MAX_SSE_EVENT_SIZE
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED
from pydantic import ValidationError

from libs.common import subjects
from libs.common.errors import ErrorKind
from libs.common.messages import REFUNDED, CallOutcome, Execution, GatewayError, ToolCall, UpstreamRequest
from libs.common.results import encode_result, shape_result

__all__ = [
    "ANSWER_ENVELOPE",
    "AnswerTooLarge",
    "InputUnanswered",
    "UpstreamUnavailable",
    "answer_cutoff",
    "backoff_delay",
    "call_budget",
    "charged_usd",
    "describe_exception",
    "error_from_exception",
    "for_the_wire",
    "outcome_label",
    "refusal",
    "reply_headers",
    "scrub_urls",
    "sse_event_limit",
    "undeliverable",
]

REPLY_MARGIN = 0.1
"""Seconds kept from the caller's timeout so our answer reaches ingress before it gives up."""

_CLOSED_MESSAGE = "Connection closed"
"""What the SDK's dispatcher says when the transport closed under a pending request. The code alone
(-32000) is ambiguous: many servers use it for their own errors."""

_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionError, refused, reset, broken pipe, spawn failures, a lean call's http1.HttpClosed
    EOFError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    httpx2.TransportError,  # connect/read/write failures and HTTP-level timeouts
)


_URL = re.compile(r"(https?://)(?:[^/@\s'\"]*@)?([^\s?#'\"]*)(?:[?#][^\s'\"]*)?")


def scrub_urls(text: str) -> str:
    """Drop userinfo and query strings from URLs: API tokens often ride there."""
    return _URL.sub(r"\1\2", text)


class UpstreamUnavailable(Exception):
    """The server has no live session; the message says why (never contains secrets)."""


ANSWER_ENVELOPE = 64 * 1024
"""Bytes an upstream's answer may hold besides its result (the JSON-RPC envelope, `_meta`)."""


def answer_cutoff(max_result: int) -> int:
    """Bytes of one answer a lean call reads at most, for results of up to `max_result` bytes."""
    return max_result + ANSWER_ENVELOPE


def sse_event_limit(max_result: int | None) -> int:
    """Bytes one server-sent event may hold: as many as a whole JSON answer (`answer_cutoff`); the
    SDK's own default (1 MiB) when no result limit is set."""
    return answer_cutoff(max_result) if max_result is not None else DEFAULT_MAX_SSE_EVENT_SIZE


class AnswerTooLarge(Exception):
    """The server's answer to a call is larger than `BASTION_MAX_RESULT_BYTES` allows
    (`answer_cutoff`): it was not read past that point. The call did run. `size` when the server
    said it (`content-length`)."""

    def __init__(self, limit: int, size: int | None = None) -> None:
        super().__init__(f"the answer is larger than {limit:,} bytes")
        self.limit, self.size = limit, size


class InputUnanswered(Exception):
    """The server asked for input (2026-07-28 `input_required`) that the agent could not give."""


def refusal(
    call: ToolCall | UpstreamRequest, kind: ErrorKind, message: str, execution: Execution = "not_run"
) -> CallOutcome:
    """The executor's answer when it decides a call without asking the upstream (or, with
    `execution="may_have_run"`, when it lost track of a call it had sent)."""
    return CallOutcome(
        id=call.id, error=GatewayError(kind=kind, message=message), decided_by="executor", execution=execution
    )


def call_budget(call_timeout: float, server_timeout: float, elapsed: float = 0.0) -> float:
    """Seconds the upstream may take: the server's own limit, or what is left of the caller's
    timeout minus a small margin, whichever is shorter. `elapsed` is time already spent upstream
    of the executor (clamped: clocks on different hosts may disagree)."""
    elapsed = min(max(elapsed, 0.0), call_timeout)
    margin = min(REPLY_MARGIN, call_timeout * 0.1)
    return max(0.0, min(server_timeout, call_timeout - elapsed - margin))


def backoff_delay(failures: int, cap: float, *, base: float = 0.5, rng: Callable[[], float] = random.random) -> float:
    """Delay before reconnect attempt number `failures` (0 = retry at once after a working session
    dropped). Exponential from `base`, capped at `cap`, with jitter in [50%, 100%] so replicas and
    servers that failed together do not retry in lockstep."""
    if failures <= 0:
        return 0.0
    ceiling = min(cap, base * 2.0 ** min(failures - 1, 32))
    return ceiling * (0.5 + 0.5 * rng())


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def describe_exception(exc: BaseException) -> str:
    """A one-line, secret-free reason for a failed connection, for logs and the catalog.

    Exception groups from anyio task groups are unwrapped to their first real cause. Messages of
    HTTP errors name the URL, never headers, so they are safe to show.
    """
    leaves = [leaf for leaf in _leaves(exc) if not isinstance(leaf, asyncio.CancelledError)]
    leaf = leaves[0] if leaves else exc
    if isinstance(leaf, TimeoutError):
        return str(leaf) or "timed out"
    if isinstance(leaf, FileNotFoundError):
        return f"command not found: {leaf.filename}" if leaf.filename else "command not found"
    if isinstance(leaf, MCPError):
        return f"{leaf.message} (code {leaf.code})"
    text = scrub_urls(str(leaf).strip().splitlines()[0]) if str(leaf).strip() else ""
    name = type(leaf).__name__
    return f"{name}: {text}" if text else name


def error_from_exception(exc: BaseException, *, server: str, timeout: float) -> GatewayError:
    """Map what a `tools/call` raised to the error the agent will see."""
    if isinstance(exc, UpstreamUnavailable):
        return GatewayError(kind=ErrorKind.UPSTREAM_UNAVAILABLE, message=str(exc))
    if isinstance(exc, AnswerTooLarge):
        size = f"{exc.size:,} bytes" if exc.size is not None else f"more than {answer_cutoff(exc.limit):,} bytes"
        return GatewayError(
            kind=ErrorKind.RESULT_TOO_LARGE,
            message=(
                f"the upstream's answer is {size}, over the gateway's limit of {exc.limit:,} bytes "
                "(BASTION_MAX_RESULT_BYTES); the request did run upstream"
            ),
        )
    if isinstance(exc, InputUnanswered):
        return GatewayError(kind=ErrorKind.UPSTREAM_ERROR, message=str(exc))
    if isinstance(exc, TimeoutError):
        return GatewayError(
            kind=ErrorKind.UPSTREAM_TIMEOUT,
            message=f"server {server!r} did not answer within {timeout:.3g} seconds",
        )
    if isinstance(exc, MCPError):
        if exc.code == CONNECTION_CLOSED and exc.message == _CLOSED_MESSAGE:
            return GatewayError(
                kind=ErrorKind.UPSTREAM_UNAVAILABLE,
                message=f"server {server!r} closed the connection during the call",
            )
        return GatewayError(kind=ErrorKind.UPSTREAM_ERROR, message=exc.message, code=exc.code, data=exc.data)
    if isinstance(exc, ValidationError):
        return GatewayError(
            kind=ErrorKind.UPSTREAM_ERROR,
            message=f"server {server!r} sent a tools/call result that does not follow the MCP schema",
        )
    leaves = _leaves(exc)
    if leaves and all(isinstance(leaf, _UNAVAILABLE_ERRORS) for leaf in leaves):
        return GatewayError(
            kind=ErrorKind.UPSTREAM_UNAVAILABLE,
            message=f"server {server!r} is unreachable: {describe_exception(exc)}",
        )
    return GatewayError(kind=ErrorKind.INTERNAL, message=f"unexpected executor failure: {type(exc).__name__}")


def undeliverable(outcome: CallOutcome, kind: ErrorKind, message: str) -> CallOutcome:
    """The answer when the upstream did answer but its result cannot be delivered."""
    return CallOutcome(
        id=outcome.id,
        error=GatewayError(kind=kind, message=message),
        decided_by="executor",
        upstream_ms=outcome.upstream_ms,
        events=outcome.events,
        execution="ran",
    )


def outcome_label(outcome: CallOutcome) -> str:
    """The `outcome` label of a request's metrics: its error kind, `tool_error`, or `ok`."""
    if outcome.error is not None:
        return str(outcome.error.kind)
    if outcome.result is not None and outcome.result.get("isError") is True:
        return "tool_error"
    return "ok"


def charged_usd(headers: dict[str, str] | None, outcome: CallOutcome) -> dict[str, str] | None:
    """A priced call's cost for the requester's audit event: the price policy forwarded it with, or 0
    when the call did not run (its charge is refunded); None (no header) for a call without a price."""
    price = (headers or {}).get(subjects.CHARGED_USD)
    if price is None:
        return None
    refunded = outcome.error is not None and outcome.error.kind in REFUNDED
    return {subjects.CHARGED_USD: "0.0" if refunded else price}


def reply_headers(headers: dict[str, str] | None, outcome: CallOutcome) -> dict[str, str] | None:
    """Headers of the outcome sent to the requester: the call's cost (`charged_usd`), and policy's
    `GRANT` of a call it forwarded, handed back so the requester can reuse the decision."""
    reply = charged_usd(headers, outcome)
    grant = (headers or {}).get(subjects.GRANT)
    if grant is not None and subjects.REPLY_TO in (headers or {}):
        reply = {**(reply or {}), subjects.GRANT: grant}
    return reply


def for_the_wire(outcome: CallOutcome, version: str | None) -> CallOutcome:
    """The outcome with its result shaped for the agent's revision and encoded once, to travel
    after the envelope and reach the agent as it is (`messages.encode_outcome`)."""
    result = outcome.result
    if result is None:
        return outcome
    shaped = shape_result(result, version) if version else result
    try:
        raw = encode_result(shaped)
    except ValueError as exc:
        return undeliverable(outcome, ErrorKind.UPSTREAM_ERROR, f"the upstream's result is not valid JSON: {exc}")
    outcome.result, outcome.raw_result, outcome.is_error = None, raw, shaped.get("isError") is True
    return outcome
