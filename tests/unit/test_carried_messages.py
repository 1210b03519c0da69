"""Bytes that carry the model they were written from (`libs.common.contracts.carried`): a receiver in the
same process gets exactly what parsing them would give, once, and never what the sender changed later."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from libs.common.contracts import carried as carried_module
from libs.common.contracts.carried import Carried, carried, carrying
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import (
    Caller,
    CallOutcome,
    GatewayError,
    InterceptorDecision,
    ToolCall,
    UpstreamRequest,
    decode_outcome,
    encode_outcome,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def in_memory() -> Iterator[None]:
    before = carried_module.handing_over(True)
    yield
    carried_module.handing_over(before)


def _as_parsed(model: BaseModel) -> dict[str, Any]:
    """Everything a receiver could tell two models apart by."""
    return {
        "type": type(model),
        "values": model.__dict__,
        "types": {name: type(value) for name, value in model.__dict__.items()},
        "set": model.__pydantic_fields_set__,
        "extra": model.__pydantic_extra__,
        "json": model.model_dump_json(),
        "unset_json": model.model_dump_json(exclude_unset=True),
    }


def _call(**fields: Any) -> ToolCall:
    caller = Caller(key_id="k1", key_name="bench", user_id="u")
    base: dict[str, Any] = {"caller": caller, "server": "echo", "tool": "echo", "name": "echo__echo", "timeout": 120}
    return ToolCall(**(base | fields))


CALLS = [
    _call(arguments={"text": "hello", "n": [1, 2.5, None, {"x": True}]}),
    _call(arguments={}, meta={"progressToken": 7}, client=["sampling"], version="2025-06-18", stream="s.1"),
    _call(arguments={"big": 2**70}, initiator="app", include_tools=["echo"], trace_id="t"),
]


@pytest.mark.parametrize("call", CALLS, ids=range(len(CALLS)))
def test_a_receiver_in_this_process_gets_what_parsing_the_bytes_gives(in_memory: None, call: ToolCall) -> None:
    data = carrying(call)
    assert type(data) is Carried and data == call.model_dump_json().encode()
    assert _as_parsed(carried(ToolCall, data)) == _as_parsed(ToolCall.model_validate_json(bytes(data)))


def test_the_model_is_taken_once_and_never_what_the_sender_changed_afterwards(in_memory: None) -> None:
    call = _call(arguments={"text": "hello"})
    data = carrying(call)
    call.server = "changed after sending"
    first = carried(ToolCall, data)
    assert first.server == "echo" and first is not call
    first.tool = "changed by the receiver"
    again = carried(ToolCall, data)  # the same bytes sent again: parsed, not the first receiver's model
    assert again is not first and again.tool == "echo"


def test_a_receiver_of_another_type_parses(in_memory: None) -> None:
    request = UpstreamRequest(
        caller=Caller(key_id="k", key_name="n"), server="s", method="prompts/get", target="prompt:p", timeout=5
    )
    data = carrying(request)
    with pytest.raises(ValueError):
        carried(ToolCall, data)  # not a ToolCall: parsed, and refused, as from the socket
    assert carried(UpstreamRequest, data).target == "prompt:p"


OUTCOMES = [
    CallOutcome(id="a", raw_result=b'{"content":[]}', decided_by="executor", upstream_ms=1.5, execution="ran"),
    CallOutcome(id="b", result={"content": [{"type": "text", "text": "hi"}]}, decided_by="policy", events=2),
    CallOutcome(
        id="c",
        error=GatewayError(kind=ErrorKind.INTERNAL, message="m", data={"k": 1}),
        decided_by="executor",
        interceptions=[InterceptorDecision(interceptor="i", rule="r", action="redact", where="result")],
        cost_usd=0.25,
    ),
]


@pytest.mark.parametrize("outcome", OUTCOMES, ids=range(len(OUTCOMES)))
def test_an_outcome_in_this_process_is_what_decoding_its_bytes_gives(in_memory: None, outcome: CallOutcome) -> None:
    data = encode_outcome(outcome)
    assert type(data) is Carried
    assert _as_parsed(decode_outcome(data)) == _as_parsed(decode_outcome(bytes(data)))
    assert decode_outcome(data).raw_result == decode_outcome(bytes(data)).raw_result  # a second decode parses


def test_a_process_that_hands_nothing_over_writes_plain_bytes() -> None:
    assert not carried_module.carries()
    assert type(carrying(CALLS[0])) is bytes
    assert type(encode_outcome(OUTCOMES[0])) is bytes
