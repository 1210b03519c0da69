"""Governance end to end: tool groups up the hierarchy, header narrowing, budgets, rate limits and
refunds, through the real request path (official client → ingress → policy → executor → upstream)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from tests.support.gateway import SERVERS, Gateway, gateway_on_own_servers, stdio_server

pytestmark = pytest.mark.integration

FINANCE = "bk_test_finance_key_0000000000"
SUPPORT = "bk_test_support_key_0000000000"
METERED = "bk_test_metered_key_0000000000"
LIMITED = "bk_test_limited_key_0000000000"
CAPPED = "bk_test_capped_key_00000000000"
SLEEPER = "bk_test_sleeper_key_0000000000"
RACER = "bk_test_racer_key_000000000000"


def governance_config() -> dict:
    echo = stdio_server(
        SERVERS / "echo_server.py",
        prices={"*": 0.01, "echo": 0.02},
        rate_limits={"sleep": {"requests": 1, "per": "day"}},
    )
    notes = stdio_server(SERVERS / "notes_server.py")
    return {
        "mcpServers": {"echo": echo, "notes": notes},
        "groups": [
            {"id": "readers", "tools": ["notes/list_notes", "notes/search"]},
            {"id": "arith", "tools": ["echo/add"]},
            {"id": "support-tier", "tools": ["notes/*", "echo/echo"]},
        ],
        "customers": [
            {"id": "acme", "name": "Acme", "groups": ["readers"], "budget": {"limit_usd": 0.05, "period": "month"}}
        ],
        "teams": [{"id": "finance", "name": "Finance", "customer_id": "acme", "groups": ["arith"]}],
        "users": [{"id": "ann", "name": "Ann", "team_id": "finance"}],
        "keys": [
            {"name": "finance", "key": FINANCE, "user": "ann"},  # no own grants: everything from groups
            {"name": "support", "key": SUPPORT, "groups": ["support-tier", "support-tier"]},
            {"name": "metered", "key": METERED, "tools": ["echo/*"], "budget": {"limit_usd": 0.05, "period": "day"}},
            # metered's twins: each test that spends or counts has keys of its own on the shared gateway
            {"name": "sleeper", "key": SLEEPER, "tools": ["echo/*"], "budget": {"limit_usd": 0.05, "period": "day"}},
            {"name": "racer", "key": RACER, "tools": ["echo/*"], "budget": {"limit_usd": 0.05, "period": "day"}},
            {"name": "limited", "key": LIMITED, "tools": ["echo/*"], "rate_limit": {"requests": 2, "per": "hour"}},
            {
                "name": "capped",
                "key": CAPPED,
                "tools": ["echo/add"],
                "customer": "acme",
                "budget": {"limit_usd": 1.0, "period": "month"},
            },
        ],
    }


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    """Shared: each test spends and counts on keys (and a customer, a tool) no other test calls."""
    async with gateway_on_own_servers(tmp_path_factory.mktemp("governance"), governance_config()) as gw:
        yield gw


async def _names(gateway, key, **headers) -> set[str]:
    async with gateway.client(key, headers=headers) as client:
        return {t.name for t in (await client.list_tools()).tools}


async def test_groups_bound_anywhere_in_the_hierarchy_union(gateway):
    # finance: user ann → team finance (arith) → customer acme (readers)
    assert await _names(gateway, FINANCE) == {"notes__list_notes", "notes__search", "echo__add"}
    # support: a duplicated group is one group
    names = await _names(gateway, SUPPORT)
    assert "echo__echo" in names and "notes__add_note" in names and "echo__add" not in names


async def test_headers_narrow_listing_and_calls(gateway):
    assert await _names(gateway, SUPPORT, **{"X-Bastion-Include-Servers": "notes"}) == {
        "notes__add_note",
        "notes__list_notes",
        "notes__search",
        "notes__echo",
    }
    assert await _names(gateway, SUPPORT, **{"X-Bastion-Include-Tools": "echo, notes/search"}) == {
        "echo__echo",
        "notes__echo",
        "notes__search",
    }
    # headers can never widen: echo/add is not granted to support whatever the headers say
    assert "echo__add" not in await _names(gateway, SUPPORT, **{"X-Bastion-Include-Tools": "*"})
    async with gateway.client(SUPPORT, headers={"X-Bastion-Include-Servers": "notes"}) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("echo__echo", {"text": "x"})  # granted, but narrowed away by name
    assert refused.value.error.code == -32050 and "X-Bastion-Include" in refused.value.error.message


async def test_budget_refuses_when_spent_and_failed_calls_are_refunded(gateway):
    async with gateway.client(METERED) as client:
        for _ in range(2):
            await client.call_tool("echo__echo", {"text": "x"})  # 0.02 each
        invalid = await client.call_tool("echo__add", {"a": 1})  # refused before it ran: not charged
        assert invalid.is_error and "arguments.b: required, but missing" in invalid.content[0].text
        await client.call_tool("echo__add", {"a": 1, "b": 1})  # 0.01 -> 0.05 spent: exactly the budget
        with pytest.raises(MCPError) as refused:
            await client.call_tool("echo__add", {"a": 1, "b": 1})
    error = refused.value.error
    assert error.code == -32053 and "key:metered" in error.message and "resets at" in error.message
    assert error.data["retry_after"] > 0 and error.data["scope"] == "key:metered"


async def test_the_widest_exhausted_budget_is_named(gateway):
    async with gateway.client(CAPPED) as client:
        for _ in range(5):
            await client.call_tool("echo__add", {"a": 1, "b": 2})  # 5 x 0.01 = the customer's 0.05
        with pytest.raises(MCPError) as refused:
            await client.call_tool("echo__add", {"a": 1, "b": 2})
    assert "customer:acme" in refused.value.error.message


async def test_rate_limits_per_key_and_per_tool_with_retry_after(gateway):
    async with gateway.client(LIMITED) as client:
        await client.call_tool("echo__echo", {"text": "1"})
        await client.call_tool("echo__echo", {"text": "2"})
        with pytest.raises(MCPError) as refused:
            await client.call_tool("echo__echo", {"text": "3"})
    assert refused.value.error.code == -32052 and "key:limited" in refused.value.error.message
    # over plain HTTP the refusal also carries Retry-After
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            gateway.url,
            headers={"Authorization": f"Bearer {LIMITED}"},
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "echo__echo", "arguments": {"text": "4"}},
            },
        )
    assert int(response.headers["retry-after"]) >= 1
    # a per-tool limit configured on the server applies to every caller of that tool
    async with gateway.client(SLEEPER) as client:
        await client.call_tool("echo__sleep", {"seconds": 0})
        with pytest.raises(MCPError) as tool_limit:
            await client.call_tool("echo__sleep", {"seconds": 0})
    assert "tool:echo/sleep" in tool_limit.value.error.message


async def test_two_policy_replicas_never_overspend_under_concurrent_load(gateway):
    from libs.common.settings import PolicySettings
    from services.policy.service import PolicyService

    first = next(s for s in gateway.services if isinstance(s, PolicyService))
    second = PolicyService(PolicySettings(nats_url=gateway.nats_url, redis_url=first.settings.redis_url, instance="-2"))
    await second.start()
    try:
        http = httpx2.AsyncClient(  # closed below, once every answer is in
            headers={"Authorization": f"Bearer {RACER}"}, limits=httpx2.Limits(max_connections=40)
        )
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "echo__add", "arguments": {"a": 1, "b": 1}},
        }  # $0.01 each, budget $0.05

        async def call() -> dict:
            return (await http.post(gateway.url, json=body)).json()

        answers = await asyncio.gather(*(call() for _ in range(40)))
        await http.aclose()
    finally:
        await second.stop()
    allowed = [a for a in answers if "result" in a]
    refused = [a for a in answers if "error" in a]
    assert len(allowed) == 5  # exactly floor($0.05 / $0.01), whichever replica decided
    assert len(refused) == 35 and all(a["error"]["code"] == -32053 for a in refused)
