"""What of a routed request's `params` goes upstream besides its target: `_meta` without the
2026-07-28 envelope (`forwarded_meta`), and a `tools/call`'s other fields (`call_extra`); and the
bytes the request goes out as (`carried.carrying`, which the request path encodes with)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic_core import PydanticSerializationError

from libs.common.contracts.carried import carrying
from libs.common.contracts.messages import Caller, ToolCall, UpstreamRequest
from services.ingress.sending.routed_sender import call_extra, forwarded_meta

pytestmark = pytest.mark.unit

ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "agent", "version": "1"},
}


@pytest.mark.parametrize(
    ("meta", "forwarded"),
    [
        (ENVELOPE, None),
        ({}, None),
        ({"io.modelcontextprotocol/protocolVersion": "2026-07-28"}, None),
        (ENVELOPE | {"progressToken": 7}, {"progressToken": 7}),
        ({"progressToken": 7, "traceparent": "00-x"}, {"progressToken": 7, "traceparent": "00-x"}),
        ("not an object", None),
    ],
)
def test_meta_goes_upstream_without_the_envelope(meta: Any, forwarded: Any) -> None:
    assert forwarded_meta({"name": "t", "_meta": meta}) == forwarded
    assert forwarded_meta({"name": "t"}) is None


@pytest.mark.parametrize(
    ("params", "extra"),
    [
        ({"name": "t", "arguments": {}, "_meta": ENVELOPE}, None),
        ({"name": "t"}, None),
        ({"name": "t", "inputResponses": {"a": 1}}, {"inputResponses": {"a": 1}}),
        ({"name": "t", "arguments": {}, "requestState": "s", "x": None}, {"requestState": "s", "x": None}),
    ],
)
def test_a_calls_other_fields_go_upstream_as_they_are(params: dict[str, Any], extra: Any) -> None:
    assert call_extra(params) == extra


_CALLER = Caller(key_id="k1", key_name="ci", user_id="u", content_logging=False)


@pytest.mark.parametrize(
    "message",
    [
        ToolCall(caller=_CALLER, server="echo", tool="echo", name="echo__echo", timeout=5),
        ToolCall(
            caller=_CALLER,
            server="s",
            tool="t",
            name="s__t",
            arguments={"text": "é ✓ \U0001f600", "n": 2**64 + 1, "f": 0.1, "deep": [[{"x": None}]]},
            meta={"progressToken": 7},
            extra={"requestState": "r"},
            include_servers=["s"],
            timeout=2.5,
            client=["input_required"],
            version="2026-07-28",
            stream="_INBOX.x.1",
        ),
        UpstreamRequest(
            caller=_CALLER, server="s", method="prompts/get", params={"name": "p"}, target="prompt:p", timeout=5
        ),
    ],
)
def test_a_routed_request_goes_out_as_its_model_dumps_it(message: ToolCall | UpstreamRequest) -> None:
    assert carrying(message) == message.model_dump_json().encode()


def test_a_request_that_cannot_be_encoded_fails_as_its_dump_does() -> None:
    nested: Any = 1
    for _ in range(1000):
        nested = [nested]
    call = ToolCall(caller=_CALLER, server="s", tool="t", name="s__t", arguments={"x": nested}, timeout=5)
    with pytest.raises(PydanticSerializationError) as dumped:
        call.model_dump_json()
    with pytest.raises(PydanticSerializationError) as ours:
        carrying(call)
    assert str(ours.value) == str(dumped.value)
