"""Discovery mode through a real gateway, driven by real clients (the official MCP Python SDK in
both its eras, its 1.x releases of the three older protocol revisions, and the official TypeScript
SDK as a desktop agent uses it): `tools/list` offers the pinned tools and `find_tools`, found tools
are answered with their definitions, called by name, and listed for the rest of the session (the
session is told `notifications/tools/list_changed`); a key never finds what it may not call, nor a
definition the catalog no longer serves."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError

from libs.common.bus.kvwatch import decode_value
from libs.common.bus.nats import connect, kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.messages import ServerCatalog
from libs.common.settings import CodeModeSettings, IngressSettings
from services.codemode.service import CodeModeService
from services.ingress.service import IngressService
from tests.support.codemode_gateway import codemode_ready, shared_codemode_fixture
from tests.support.gateway import ADMIN_KEY, Gateway, SharedGateway, default_config, running_gateway
from tests.support.legacy_sdk import run_legacy_client
from tests.support.polling import poll_until
from tests.support.ts_sdk import run_ts_client

pytestmark = pytest.mark.integration

FINDER_KEY = "bk_test_discovery_finder_0000"
NARROW_KEY = "bk_test_discovery_narrow_0000"


def discovery_config() -> dict:
    config = default_config()
    config["keys"] += [
        {
            "name": "finder",
            "key": FINDER_KEY,
            "tools": ["echo/*", "notes/*"],
            "discovery": True,
            "discovery_pinned": ["notes__list_notes"],
        },
        {"name": "narrow", "key": NARROW_KEY, "tools": ["echo/echo", "notes/*"], "discovery": True},
    ]
    return config


SETTINGS = CodeModeSettings(sandbox_workers=1)


shared = shared_codemode_fixture(discovery_config, SETTINGS, {"echo", "notes"})


@pytest.fixture
async def gateway(shared: SharedGateway) -> Gateway:
    """The module's gateway, for the tests that leave no found tools behind for a key's sessionless
    agents (sessions keep their own) and change no catalog."""
    return await shared.get()


@pytest.fixture
async def alone(shared: SharedGateway) -> None:
    """For a test that starts a gateway of its own: the module's is stopped first (`SharedGateway`)."""
    await shared.close()


@pytest.fixture
async def fresh(gateway: Gateway) -> AsyncIterator[Gateway]:
    """The module's gateway behind an ingress replica of the test's own: a replica remembers what a
    key's sessionless agents found, so a test that finds without a session starts on one that has not."""
    replica = IngressService(IngressSettings(nats_url=gateway.nats_url, port=0, instance="-fresh"))
    await replica.start()
    try:
        own = dataclasses.replace(gateway, url=replica.url, ingress=replica)
        await own.wait_for_servers("echo", "notes")
        yield own
    finally:
        await replica.stop()


@pytest.fixture
async def own_gateway(nats_url: str, redis_url: str, tmp_path: Path, alone: None) -> AsyncIterator[Gateway]:
    """A gateway of the test's own, for a test that changes what the catalog serves."""
    running = running_gateway(nats_url, redis_url, tmp_path, discovery_config(), codemode=SETTINGS)
    async with codemode_ready(running, {"echo", "notes"}) as gw:
        yield gw


def _text(result) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def _names(client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # 2026-07-28 without sessions, 2025-11-25 with
async def test_found_tools_are_answered_callable_and_listed_for_the_session(fresh, mode):
    async with fresh.client(FINDER_KEY, mode=mode) as client:
        assert await _names(client) == {"notes__list_notes", "find_tools"}
        found = await client.call_tool("find_tools", {"query": "sum of two integers", "limit": 3})
        assert not found.is_error, _text(found)
        lines = _text(found).splitlines()
        assert lines[0].endswith("found; call them by name"), lines
        first = json.loads(lines[1])
        assert first["name"] == "echo__add" and set(first["inputSchema"]["properties"]) == {"a", "b"}
        assert found.structured_content["tools"][0]["name"] == "echo__add"
        added = await client.call_tool("echo__add", {"a": 2, "b": 3})
        assert _text(added) == "5"
        listed = await _names(client)
        assert listed == {"notes__list_notes", "find_tools", *(json.loads(line)["name"] for line in lines[1:])}
    if mode == "legacy":  # what a session found is that session's
        async with fresh.client(FINDER_KEY, mode=mode) as client:
            assert await _names(client) == {"notes__list_notes", "find_tools"}
    async with fresh.client(NARROW_KEY, mode=mode) as client:  # another key's list is its own
        assert await _names(client) == {"find_tools"}


@pytest.mark.parametrize("era", ["2024-11-05", "2025-03-26", "2025-06-18"])  # mcp 1.8.1, 1.9.4, 1.23.0
async def test_older_sdk_clients_find_a_tool_and_call_it_by_name(gateway, era):
    plan = [["find_tools", {"query": "sum of two integers", "limit": 3}], ["echo__add", {"a": 2, "b": 3}]]
    run = await run_legacy_client(era, gateway.url, FINDER_KEY, plan)
    assert run["protocolVersion"] == era
    assert set(run["tools"]) == {"notes__list_notes", "find_tools"}
    found, added = run["calls"]
    lines = found["content"][0]["text"].splitlines()
    assert lines[0].endswith("found; call them by name") and json.loads(lines[1])["name"] == "echo__add", lines
    assert added["content"][0]["text"] == "5"


async def test_a_typescript_sdk_agent_is_told_its_list_changed_and_calls_what_it_found(gateway):
    """A desktop agent offers its model only the tools of its own copy of the list, refreshed on
    `notifications/tools/list_changed`: without the notification a found tool is never callable."""
    plan = [["find_tools", {"query": "sum of two integers", "limit": 3}], ["echo__add", {"a": 2, "b": 3}]]
    run = await run_ts_client(gateway.url, FINDER_KEY, plan)
    assert run["protocolVersion"] == "2025-11-25"
    assert run["tools"] == ["find_tools", "notes__list_notes"]
    found, added = run["calls"]
    lines = found["content"][0]["text"].splitlines()
    assert lines[0].endswith("found; call them by name") and json.loads(lines[1])["name"] == "echo__add", lines
    assert added["content"][0]["text"] == "5" and not added.get("isError")
    assert run["refreshes"] >= 1
    assert {"echo__add", "find_tools", "notes__list_notes"} <= set(run["toolsAtEnd"])


async def test_a_search_that_finds_nothing_new_does_not_tell_the_session_again(gateway):
    plan = [["find_tools", {"query": "sum of two integers", "limit": 1}]] * 2 + [["echo__add", {"a": 1, "b": 1}]]
    run = await run_ts_client(gateway.url, FINDER_KEY, plan)
    assert [call["content"][0]["text"] for call in run["calls"][2:]] == ["2"]
    assert run["refreshes"] == 1, run


async def test_sessionless_agents_listening_for_their_key_are_told_what_another_found(fresh):
    """2026-07-28 has no sessions: what one agent of a key finds, the key's other sessionless agents
    list too, and those listening (`subscriptions/listen`) are told their list changed."""
    async with fresh.client(FINDER_KEY, mode="auto") as listening, fresh.client(FINDER_KEY) as finder:
        assert listening.protocol_version == "2026-07-28"
        async with listening.listen(tools_list_changed=True) as sub:
            assert sub.honored.tools_list_changed is True
            events = aiter(sub)
            found = await finder.call_tool("find_tools", {"query": "sum of two integers", "limit": 3})
            assert not found.is_error, _text(found)
            async with asyncio.timeout(15):
                changed = await anext(events)
            assert type(changed).__name__ == "ToolsListChanged"
            assert "echo__add" in await _names(listening)


async def test_the_header_switches_discovery_for_one_request(gateway):
    listed = await gateway.tool_names(FINDER_KEY, {"X-Bastion-Discovery": "off"})
    assert {"echo__add", "echo__echo", "notes__list_notes"} <= listed
    assert await gateway.tool_names(ADMIN_KEY, {"X-Bastion-Discovery": "on"}) == {"find_tools"}
    refused = await gateway.refused_listing(FINDER_KEY, {"X-Bastion-Discovery": "sometimes"})
    assert "X-Bastion-Discovery must be 'on' or 'off'" in refused


async def test_a_key_never_finds_or_lists_a_tool_it_may_not_call(fresh):
    async with fresh.client(NARROW_KEY) as client:
        for query in ("sum of two integers", "echo__add", "add"):
            found = await client.call_tool("find_tools", {"query": query, "limit": 20})
            names = {tool["name"] for tool in found.structured_content["tools"]}
            assert names <= {"echo__echo", "notes__list_notes", "notes__add_note", "notes__search", "notes__echo"}
        assert "echo__add" not in await _names(client)
        with pytest.raises(MCPError) as refused:
            await client.call_tool("echo__add", {"a": 1, "b": 2})
        assert "not allowed to call tool 'add'" in refused.value.error.message


async def test_bad_find_tools_arguments_are_clear(gateway):
    async with gateway.client(FINDER_KEY) as client:
        bad = await client.call_tool("find_tools", {"query": "x", "limit": 500})
        assert bad.is_error and "limit" in _text(bad)


async def test_a_definition_the_catalog_stops_serving_is_never_found(own_gateway):
    """The executor publishes only the definitions it serves (pinning withholds a quarantined or
    unapproved one the same way): search follows the catalog at once, though the withdrawn
    definition's vector stays in the codemode service's cache."""

    async def found(client, query: str) -> set[str]:
        answer = await client.call_tool("find_tools", {"query": query, "limit": 20})
        return {tool["name"] for tool in answer.structured_content["tools"]}

    async with own_gateway.client(FINDER_KEY) as client:
        assert "notes__add_note" in await found(client, "write down a new note")
    nc = await connect(own_gateway.nats_url, "test-catalog")
    try:
        catalog = await kv_bucket(nc.jetstream(), subjects.KV_CATALOG)
        served = decode_value(ServerCatalog, (await catalog.get("notes")).value, "notes")
        assert served is not None
        served.tools = [tool for tool in served.tools if tool.tool != "add_note"]
        await catalog.put("notes", served.model_dump_json().encode())
    finally:
        await nc.close()
    codemode = next(s for s in own_gateway.services if isinstance(s, CodeModeService))
    await poll_until(lambda: ("notes", "add_note") not in codemode.catalog.pairs, "add_note out of the catalog")
    async with own_gateway.client(FINDER_KEY) as client:
        for query in ("write down a new note", "notes__add_note", "add note"):
            assert "notes__add_note" not in await found(client, query), query
        assert "notes__add_note" not in await _names(client)
