"""A 2026-07-28 upstream asks for user input with `input_required` results, never with requests to
the client. Bastion resolves them through a handshake-era agent (whose callbacks see ordinary
sampling/elicitation/roots requests mid-call) and passes them through to a 2026-07-28 agent, which
resolves them itself. Official SDK on both sides, the upstream negotiated with protocol "auto"."""

from __future__ import annotations

import sys
from typing import Any

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from tests.support.gateway import ADMIN_KEY, READS_EXAMPLES, ROOT, default_config, gateway_on_own_servers

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")]

INTERACTIVE = str(ROOT / "tests" / "support" / "interactive_server.py")


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("input_required")
    config = default_config(
        {
            "interactive": {
                "command": sys.executable,
                "args": [INTERACTIVE],
                "protocol": "auto",
                "sandbox": READS_EXAMPLES,
            }
        }
    )
    async with gateway_on_own_servers(workdir, config) as gw:
        assert gw.ingress.catalog.server_status("interactive").protocol_version == "2026-07-28"
        yield gw


class Agent:
    """Callbacks that record what they were asked and answer like a user and a model would."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def sampling(self, _ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.asked.append(f"sampling: {params.messages[0].content.text}")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="sunny beaches"), model="test-model"
        )

    async def elicitation(self, _ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(f"elicitation: {params.message}")
        answer = "Lisbon" if "Where" in params.message else "calm"
        return types.ElicitResult(action="accept", content={"answer": answer})

    async def roots(self, _ctx: Any) -> types.ListRootsResult:
        self.asked.append("roots")
        return types.ListRootsResult(roots=[types.Root(uri="file:///home/trips")])

    def callbacks(self) -> dict[str, Any]:
        return {
            "sampling_callback": self.sampling,
            "elicitation_callback": self.elicitation,
            "list_roots_callback": self.roots,
        }


def _text(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_agent_answers_what_the_upstream_asks(gateway, mode):
    """Two rounds: the user's answer and the roots together, then the model, whose prompt needs the
    user's answer. Legacy: Bastion asks the agent and retries upstream. Auto: the SDK client does."""
    agent = Agent()
    async with gateway.client(ADMIN_KEY, mode=mode, **agent.callbacks()) as client:
        result = await client.call_tool("interactive__plan_trip", {"question": "Where to?"})
        assert not result.is_error and _text(result) == "Lisbon from file:///home/trips: sunny beaches"
        assert sorted(agent.asked[:2]) == ["elicitation: Where to?", "roots"]
        assert agent.asked[2:] == ["sampling: pitch Lisbon"]

        prompt = await client.get_prompt("interactive__mood")  # a routed request asks the same way
        assert prompt.messages[0].content.text == "Write something calm."
        assert agent.asked[3:] == ["elicitation: How do you feel?"]


async def test_an_agent_that_cannot_answer_fails_the_call_saying_what_was_asked(gateway):
    """A handshake-era agent that declared no capabilities: an input response cannot carry an error,
    so the call fails (as the official client fails when a callback declines)."""
    async with gateway.client(ADMIN_KEY, mode="legacy") as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("interactive__plan_trip", {"question": "Where to?"})
        message = refused.value.error.message
        assert refused.value.error.code == -32062  # upstream_error
        assert "tool 'plan_trip' needs the agent to answer" in message
        assert "did not declare the" in message

        with pytest.raises(MCPError) as prompt:
            await client.get_prompt("interactive__mood")
        assert "elicitation/create" in prompt.value.error.message
        assert "did not declare the elicitation capability" in prompt.value.error.message
