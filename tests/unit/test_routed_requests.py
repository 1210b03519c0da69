"""What differs between a `tools/call` and the other requests routed to one upstream lives on the two
contracts (`libs.common.contracts.messages.Routed`): each says what it asks, how it is rewritten, sent, charged
and moved through the object store, so no service branches on which one it holds."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common.contracts.messages import Caller, CallOutcome, Routed, ToolCall, UpstreamRequest

pytestmark = pytest.mark.unit

CALLER = Caller(key_id="k1", key_name="ci")


def tool_call() -> ToolCall:
    return ToolCall(caller=CALLER, server="srv", tool="echo", name="srv__echo", arguments={"text": "hi"}, timeout=5)


def read(method: str = "resources/read", **params: Any) -> UpstreamRequest:
    return UpstreamRequest(
        caller=CALLER, server="srv", method=method, params=params, target="resource:x://a", timeout=5
    )


class Session:
    """Records which of its two doors a request took."""

    def __init__(self) -> None:
        self.took: list[str] = []

    async def call_tool(self, call: ToolCall, ctx: Any, /) -> CallOutcome:
        self.took.append(f"call_tool {call.tool}")
        return CallOutcome(id=call.id, result={}, decided_by="executor")

    async def request(self, request: UpstreamRequest, ctx: Any, /) -> CallOutcome:
        self.took.append(f"request {request.method}")
        return CallOutcome(id=request.id, result={}, decided_by="executor")


async def test_each_kind_sends_itself_through_its_own_door() -> None:
    session = Session()
    requests: list[Routed] = [tool_call(), read(uri="x://a")]
    for request in requests:
        await request.send(session, None)
    assert session.took == ["call_tool echo", "request resources/read"]


def test_what_checks_see_and_rewrite_is_the_arguments_or_the_params_without_meta() -> None:
    call = tool_call()
    assert (call.rpc_method, call.asked_for, call.tool_name, call.payload) == (
        "tools/call",
        "echo",
        "echo",
        {"text": "hi"},
    )
    call.replace_payload({"text": "redacted"})
    assert call.arguments == {"text": "redacted"}
    request = read(uri="x://a", _meta={"progressToken": 7})
    assert (request.rpc_method, request.asked_for, request.tool_name) == ("resources/read", "resource:x://a", None)
    assert request.payload == {"uri": "x://a"} and request.agent_meta == {"progressToken": 7}
    request.replace_payload({"uri": "x://b"})
    assert request.params == {"uri": "x://b", "_meta": {"progressToken": 7}}, "the envelope is kept"


def test_only_a_resource_subscription_is_bookkeeping() -> None:
    assert read("resources/subscribe", uri="x://a").subscription == "x://a"
    assert read("resources/unsubscribe", uri="x://a").subscription == "x://a"
    assert read("resources/read", uri="x://a").subscription is None
    assert read("resources/subscribe", uri=["not", "a", "uri"]).subscription is None
    assert tool_call().subscription is None


def test_only_a_tool_calls_arguments_travel_through_the_object_store_and_only_it_is_refunded() -> None:
    call = tool_call()
    assert call.offloadable and call.refunded_when_lost
    moved = call.offloaded("blob-1")
    assert moved.arguments == {} and moved.arguments_blob == "blob-1" and call.arguments == {"text": "hi"}
    request = read(uri="x://a")
    assert not request.offloadable and not request.refunded_when_lost and request.arguments_blob is None
    with pytest.raises(TypeError, match="resources/read params do not travel"):
        request.offloaded("blob-1")


def test_a_request_given_no_deadline_has_one_set_as_if_it_had_been_given() -> None:
    call = ToolCall(caller=CALLER, server="s", tool="t", name="s__t", timeout=5.0, sent_at=100.0)
    parsed = ToolCall.model_validate_json(ToolCall(**call.model_dump(exclude={"deadline"})).model_dump_json())

    for made in (call, parsed):
        assert made.deadline == 105.0
        assert "deadline" in made.model_fields_set  # a dump of the set fields keeps it (`exclude_unset`)
        assert made.model_dump(exclude_unset=True)["deadline"] == 105.0
