"""Which calls an upstream's request to an agent can belong to (`services.executor.agents`): those
in flight on its session, from the start of their `running` block to its end, however it ends."""

from __future__ import annotations

import pytest

from services.executor.agents import ActiveCall, AgentLink

pytestmark = pytest.mark.unit


def _call(call_id: str) -> ActiveCall:
    return ActiveCall(call_id, f"stream.{call_id}", frozenset({"roots"}), deadline=0.0)


async def _refusal(link: AgentLink) -> str:
    answer = await link.roots(None)
    return str(answer.message)


async def test_a_call_is_in_flight_for_its_block_alone_however_the_block_ends() -> None:
    link = AgentLink(None, "echo")
    assert "no agent that supports roots" in await _refusal(link)
    with link.running(_call("a")) as first:
        assert first.id == "a"
        with pytest.raises(RuntimeError), link.running(_call("b")):
            assert "2 calls to this server are in flight" in await _refusal(link)
            raise RuntimeError("the call failed")
        with link.running(_call("c")):
            assert "2 calls to this server are in flight" in await _refusal(link)  # b left when it failed
    assert "no agent that supports roots" in await _refusal(link)
