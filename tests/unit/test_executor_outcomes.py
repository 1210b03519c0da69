"""The executor's pure rules: call budgets, reconnect backoff, exception -> GatewayError, and the answered outcome."""

from __future__ import annotations

import anyio
import httpx2
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED
from pydantic import BaseModel, ValidationError

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CallOutcome, InterceptorDecision, encode_outcome
from services.executor.budgets import call_budget
from services.executor.error_mapping import UpstreamUnavailable, describe_exception, error_from_exception, scrub_urls
from services.executor.replies import ran
from services.executor.upstreams.reconnect import backoff_delay

pytestmark = pytest.mark.unit


# ---------------------------------------------------------------- budget


def test_budget_is_the_server_limit_when_the_caller_is_patient() -> None:
    assert call_budget(call_timeout=120, server_timeout=60) == 60


def test_budget_keeps_a_margin_from_the_callers_timeout() -> None:
    budget = call_budget(call_timeout=10, server_timeout=60)
    assert 9.8 <= budget < 10


def test_budget_margin_scales_down_for_tiny_timeouts() -> None:
    assert 0 < call_budget(call_timeout=0.2, server_timeout=60) < 0.2


def test_budget_subtracts_time_already_spent() -> None:
    assert call_budget(call_timeout=10, server_timeout=60, elapsed=4) == pytest.approx(5.9)


def test_budget_ignores_clock_skew() -> None:
    assert call_budget(10, 60, elapsed=-30) == call_budget(10, 60, elapsed=0)
    assert call_budget(10, 60, elapsed=1e9) == 0


# ---------------------------------------------------------------- backoff


def test_backoff_retries_at_once_after_a_working_session() -> None:
    assert backoff_delay(0, cap=30) == 0


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    top = [backoff_delay(n, cap=30, rng=lambda: 1.0) for n in range(1, 10)]
    assert top[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert top[6:] == [30.0, 30.0, 30.0]
    assert backoff_delay(10_000, cap=30, rng=lambda: 1.0) == 30.0


def test_backoff_jitter_stays_between_half_and_full() -> None:
    assert backoff_delay(3, cap=30, rng=lambda: 0.0) == 1.0
    assert backoff_delay(3, cap=30, rng=lambda: 1.0) == 2.0
    delays = {backoff_delay(5, cap=30) for _ in range(50)}
    assert len(delays) > 1 and all(4.0 <= d <= 8.0 for d in delays)


# ---------------------------------------------------------------- error mapping


def _kind(exc: BaseException) -> ErrorKind:
    return error_from_exception(exc, server="srv", timeout=2.5).kind


def test_upstream_jsonrpc_error_keeps_its_code() -> None:
    error = error_from_exception(MCPError(-32602, "bad city", {"field": "city"}), server="srv", timeout=1)
    assert error.kind is ErrorKind.UPSTREAM_ERROR
    assert (error.code, error.message, error.data) == (-32602, "bad city", {"field": "city"})


def test_a_servers_own_32000_error_is_not_mistaken_for_a_closed_connection() -> None:
    error = error_from_exception(MCPError(CONNECTION_CLOSED, "quota exceeded"), server="srv", timeout=1)
    assert error.kind is ErrorKind.UPSTREAM_ERROR and error.code == CONNECTION_CLOSED


def test_closed_connection_is_unavailable() -> None:
    assert _kind(MCPError(CONNECTION_CLOSED, "Connection closed")) is ErrorKind.UPSTREAM_UNAVAILABLE


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "refused"),
        BrokenPipeError(),
        anyio.ClosedResourceError(),
        anyio.BrokenResourceError(),
        httpx2.ConnectError("All connection attempts failed"),
        ExceptionGroup("transport", [httpx2.ReadError("reset"), anyio.BrokenResourceError()]),
        UpstreamUnavailable("server 'srv' is unavailable: refused"),
    ],
)
def test_connection_failures_are_unavailable(exc: BaseException) -> None:
    assert _kind(exc) is ErrorKind.UPSTREAM_UNAVAILABLE


def test_timeout_says_after_how_long() -> None:
    error = error_from_exception(TimeoutError(), server="srv", timeout=2.5)
    assert error.kind is ErrorKind.UPSTREAM_TIMEOUT
    assert "2.5 seconds" in error.message and "'srv'" in error.message


def test_a_result_that_breaks_the_schema_is_an_upstream_error() -> None:
    class Strict(BaseModel):
        x: int

    with pytest.raises(ValidationError) as caught:
        Strict.model_validate({"x": "nope"})
    assert _kind(caught.value) is ErrorKind.UPSTREAM_ERROR


def test_anything_else_is_internal_and_reveals_no_details() -> None:
    error = error_from_exception(KeyError("secret-value"), server="srv", timeout=1)
    assert error.kind is ErrorKind.INTERNAL
    assert "secret-value" not in error.message


# ---------------------------------------------------------------- descriptions


def test_description_unwraps_task_group_errors() -> None:
    refused = httpx2.ConnectError("All connection attempts failed")
    group = BaseExceptionGroup("unhandled", [ExceptionGroup("inner", [refused])])
    assert describe_exception(group) == "ConnectError: All connection attempts failed"


def test_description_of_a_missing_command() -> None:
    exc = FileNotFoundError(2, "No such file or directory", "npx-nope")
    assert describe_exception(exc) == "command not found: npx-nope"


def test_description_hides_url_credentials_and_queries() -> None:
    exc = httpx2.ConnectError("failed for url 'https://bob:hunter2@mcp.example.com/sse?api_key=abc123#frag'")
    text = describe_exception(exc)
    assert "hunter2" not in text and "abc123" not in text and "bob" not in text
    assert "https://mcp.example.com/sse" in text


def test_scrub_keeps_plain_urls() -> None:
    assert scrub_urls("see http://127.0.0.1:8000/mcp now") == "see http://127.0.0.1:8000/mcp now"


# ---------------------------------------------------------------- an answered request's outcome


def test_an_answered_outcome_is_what_model_construct_built_and_shares_nothing() -> None:
    result = {"content": [{"type": "text", "text": "hi"}], "isError": False}
    first, second = ran("c1", result, 1.5), ran("c2", result, 2.0)
    built = CallOutcome.model_construct(id="c1", result=result, decided_by="executor", upstream_ms=1.5, execution="ran")
    assert first.model_dump() == built.model_dump()
    assert encode_outcome(first) == encode_outcome(built)  # the same bytes on the bus
    assert (second.id, second.upstream_ms, second.result) == ("c2", 2.0, result)
    first.interceptions.append(InterceptorDecision(interceptor="guardrails", rule="r", action="redact", where="result"))
    assert second.interceptions == [] and ran("c3", result, 0.1).interceptions == []


def test_an_answered_outcome_holds_in_every_slot_what_model_copy_would_have_put_there() -> None:
    """`ran` fills a model's slots itself: a pydantic that keeps an instance's state otherwise (a new
    slot, a fields-set no longer a set) must fail here, not make outcomes that dump differently."""
    result = {"content": [{"type": "text", "text": "hi"}]}
    ours = ran("c1", result, 1.5)
    theirs = CallOutcome.model_construct(id="", decided_by="executor", execution="ran").model_copy(
        update={"id": "c1", "result": result, "upstream_ms": 1.5, "interceptions": []}
    )
    assert BaseModel.__slots__ == ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
    for slot in BaseModel.__slots__:
        assert getattr(ours, slot) == getattr(theirs, slot), slot
        assert type(getattr(ours, slot)) is type(getattr(theirs, slot)), slot
    assert list(ours.__dict__) == list(theirs.__dict__)  # the field order the envelope is dumped in
    ours.is_error = True  # assignment still goes through pydantic's own bookkeeping
    assert "is_error" in ours.model_fields_set and ours.is_error
    assert ours.model_copy().model_dump() == {**theirs.model_dump(), "is_error": True}


def test_an_answered_outcome_drops_the_upstreams_own_stamp_and_keeps_the_rest_of_its_meta() -> None:
    """The upstream's `serverInfo` stamp never travels (Bastion answers the agent): dropped where the
    result arrives, so no check on the way reads it, while the upstream's other `_meta` stays."""
    stamp = {"io.modelcontextprotocol/serverInfo": {"name": "echo", "version": "1.0.0"}}
    stamped = {"content": [{"type": "text", "text": "hi"}], "_meta": {**stamp, "progressToken": 7}}
    outcome = ran("c1", stamped, 1.0)
    assert outcome.result == {"content": [{"type": "text", "text": "hi"}], "_meta": {"progressToken": 7}}
    assert stamped["_meta"] == {**stamp, "progressToken": 7}  # the upstream's dict untouched
    only = ran("c2", {"content": [], "_meta": dict(stamp)}, 1.0)
    assert only.result == {"content": []}  # no `_meta` left empty behind
    plain = {"content": [], "_meta": {"progressToken": 7}}
    assert ran("c3", plain, 1.0).result is plain  # nothing to drop: not copied
    odd = {"content": [], "_meta": "not an object"}
    assert ran("c4", odd, 1.0).result is odd
