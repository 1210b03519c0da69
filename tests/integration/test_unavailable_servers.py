"""A configured server that cannot start (its command is not installed), as an agent meets it: a call
of one of its tools says the server is unavailable and why, never "Unknown tool"; `tools/list` and
`/healthz` name it; a key without a grant on it learns nothing (docs/reliability.md)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from services.ingress.sending.down_servers import UNAVAILABLE_META_KEY
from tests.support.gateway import ADMIN_KEY, READONLY_KEY, Gateway, default_config, gateway_on_own_servers
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

MISSING = "bastion-test-no-such-command"
PLAIN_MISSING = "bastion-test-no-such-command-either"


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One gateway for the module: the tests only call and list, none changes what another sees."""
    # servers named down* are not waited for by running_gateway
    config = default_config(
        {
            "down-cmd": {"command": MISSING, "args": ["--stdio"]},
            "downplain": {"command": PLAIN_MISSING, "namespace": False},
        }
    )
    del config["mcpServers"]["notes"]  # echo is the server that stays up; no test calls notes
    async with gateway_on_own_servers(tmp_path_factory.mktemp("unavailable"), config) as gw:
        await poll_until(lambda: set(gw.ingress.catalog.down) == {"down-cmd", "downplain"}, "both servers down")
        yield gw


async def _refusal(gw: Gateway, key: str, name: str) -> MCPError:
    async with gw.client(key) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool(name, {})
    return refused.value


async def test_a_call_of_a_tool_of_a_server_that_cannot_start_says_why(gateway: Gateway) -> None:
    refused = await _refusal(gateway, ADMIN_KEY, "down-cmd__search")
    assert refused.error.code == -32060  # upstream_unavailable, not -32602
    assert refused.error.message.startswith(f"server 'down-cmd' is unavailable: command not found: {MISSING}")
    assert "Unknown tool" not in refused.error.message
    assert isinstance(refused.error.data, dict)
    assert (refused.error.data["kind"], refused.error.data["server"]) == ("upstream_unavailable", "down-cmd")


async def test_a_server_keeping_its_tools_names_is_named_as_a_possible_owner(gateway: Gateway) -> None:
    refused = await _refusal(gateway, ADMIN_KEY, "lookup")
    assert refused.error.message.startswith(f"server 'downplain' is unavailable: command not found: {PLAIN_MISSING}")
    assert "'lookup' may be one of its tools" in refused.error.message


async def test_a_key_without_a_grant_on_the_server_hears_unknown_tool_and_no_reason(gateway: Gateway) -> None:
    refused = await _refusal(gateway, READONLY_KEY, "down-cmd__search")
    assert refused.error.code == -32602
    assert refused.error.message.startswith("Unknown tool: 'down-cmd__search'")
    assert MISSING not in refused.error.message


async def test_tools_list_and_healthz_name_the_servers_that_are_down(gateway: Gateway) -> None:
    async with gateway.client(ADMIN_KEY) as client:
        listed = await client.list_tools()
    assert "echo__echo" in {tool.name for tool in listed.tools}
    assert (listed.meta or {})[UNAVAILABLE_META_KEY] == ["down-cmd", "downplain"]
    narrowed = {"X-Bastion-Include-Servers": "echo,downp*"}
    async with gateway.client(ADMIN_KEY, headers=narrowed) as client:
        assert ((await client.list_tools()).meta or {})[UNAVAILABLE_META_KEY] == ["downplain"]

    async with httpx.AsyncClient(trust_env=False) as http:
        health = await http.get(gateway.url.removesuffix("/mcp") + "/healthz")
    assert health.status_code == 200  # degraded, not dead: the other servers are served
    body = health.json()
    assert (body["status"], body["unavailable"]) == ("degraded", ["down-cmd", "downplain"])
    assert MISSING not in health.text  # the public probe names servers, never their reasons
