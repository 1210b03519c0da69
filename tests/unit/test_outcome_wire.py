"""The bus form of a `CallOutcome` (`encode_outcome` / `decode_outcome`): the result travels after
the envelope as its own JSON and reaches ingress as bytes, which ingress splices into the agent's
answer untouched (`protocol.RawJson`)."""

from __future__ import annotations

import json

import pytest

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CallOutcome, GatewayError, decode_outcome, encode_outcome
from libs.common.contracts.results import encode_result, shape_result
from services.ingress.protocol import RawJson, encode_json, result_object

pytestmark = pytest.mark.unit

RESULT = {"content": [{"type": "text", "text": 'two\nlines and a \\ and a "quote"'}], "isError": False}


def test_the_result_travels_as_its_own_bytes_and_comes_back_equal() -> None:
    outcome = CallOutcome(id="c1", result=RESULT, decided_by="executor", execution="ran", upstream_ms=1.5)
    wire = encode_outcome(outcome)
    envelope = wire.partition(b"\n")[0]
    assert b'"result"' not in envelope  # the envelope carries no copy of it
    back = decode_outcome(wire)
    assert back.result is None and back.raw_result is not None
    assert json.loads(back.raw_result) == RESULT
    assert (back.id, back.execution, back.upstream_ms) == ("c1", "ran", 1.5)
    assert back.result_value() == RESULT


def test_an_outcome_without_a_result_is_its_envelope_alone() -> None:
    error = GatewayError(kind=ErrorKind.FORBIDDEN, message="no\nway")
    outcome = CallOutcome(id="c2", error=error, decided_by="policy", execution="not_run")
    back = decode_outcome(encode_outcome(outcome))
    assert back.raw_result is None and back.result_value() is None
    assert back.error == error


def test_integers_beyond_64_bits_reach_the_agent_exactly() -> None:
    huge = 123456789012345678901234567890
    raw = encode_result({"content": [], "structuredContent": {"n": huge}})
    answer = encode_json({"jsonrpc": "2.0", "id": 1, "result": RawJson(raw)})
    assert json.loads(answer)["result"]["structuredContent"]["n"] == huge
    assert result_object(RawJson(raw))["structuredContent"]["n"] == huge


def test_a_shaped_result_is_what_the_agent_gets_byte_for_byte() -> None:
    shaped = shape_result(RESULT, "2026-07-28")
    raw = encode_result(shaped)
    answer = json.loads(encode_json({"jsonrpc": "2.0", "id": 7, "result": RawJson(raw)}))
    assert answer == {"jsonrpc": "2.0", "id": 7, "result": shaped}
    assert shaped["resultType"] == "complete"
