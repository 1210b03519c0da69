"""The request path end to end, in one event loop: official MCP client -> ingress -> NATS ->
policy -> executor -> real upstream MCP servers, with audit landing in ClickHouse.

The tests share one gateway: the one that revokes a key revokes a key of its own, and the one that
reads the audit trail calls on keys of its own and reads their rows alone."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from libs.common.bus.nats import connect, kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.keys import key_id
from libs.common.contracts.messages import AuditEvent, AuditQuery, AuditRows, KeyRecord
from tests.support.gateway import (
    ADMIN_KEY,
    NOTHING_KEY,
    READONLY_KEY,
    Gateway,
    default_config,
    example_server_over_http,
    gateway_on_own_servers,
)
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration


REVOCABLE_KEY = "bk_test_revocable_key_00000000"
"""Granted as the readonly key is, for the test that revokes it: the other tests keep theirs."""
AUDITED_ADMIN_KEY = "bk_test_audited_admin_key_0000"
AUDITED_READONLY_KEY = "bk_test_audited_readonly_key_0"
"""Granted as the admin and the readonly key are, for the test that reads their audit rows."""


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    """The default config with a streamable HTTP, an SSE and an unreachable upstream beside echo and notes
    (an embedded audit store is one per process: another gateway could not write its own while this one runs)."""
    async with example_server_over_http("--http") as remote, example_server_over_http("--sse") as legacysse:
        raw = default_config(
            {
                "remote": {"url": remote},
                "legacysse": {"url": legacysse, "type": "sse"},
                "down": {"url": "http://127.0.0.1:9/mcp"},
            }
        )
        readonly = ["notes/list_notes", "echo/echo"]
        raw["keys"] += [
            {"name": "revocable", "key": REVOCABLE_KEY, "tools": readonly},
            {"name": "audited-admin", "key": AUDITED_ADMIN_KEY, "tools": ["*"]},
            {"name": "audited-readonly", "key": AUDITED_READONLY_KEY, "tools": readonly},
        ]
        async with gateway_on_own_servers(tmp_path_factory.mktemp("gateway-path"), raw) as gw:
            yield gw


def _text(result) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_list_and_call_through_the_gateway(gateway, mode):
    async with gateway.client(ADMIN_KEY, mode=mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"echo__echo", "echo__add", "notes__echo", "notes__add_note"} <= names
        assert _text(await client.call_tool("echo__echo", {"text": "hello"})) == "hello"
        assert _text(await client.call_tool("echo__add", {"a": 2, "b": 40})) == "42"
        # the same tool name on two servers reaches two different servers
        assert _text(await client.call_tool("notes__echo", {"text": "x"})) != _text(
            await client.call_tool("echo__echo", {"text": "x"})
        )
        failed = await client.call_tool("echo__fail", {"message": "boom"})
        assert failed.is_error and "boom" in _text(failed)


async def test_a_key_sees_and_calls_only_its_grants(gateway):
    async with gateway.client(READONLY_KEY) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == {"echo__echo", "notes__list_notes"}
        assert _text(await client.call_tool("echo__echo", {"text": "ok"})) == "ok"
        with pytest.raises(MCPError) as denied:
            await client.call_tool("echo__add", {"a": 1, "b": 2})  # exists, but not granted
        assert denied.value.error.code == -32050
        assert "not allowed" in denied.value.error.message
    async with gateway.client(NOTHING_KEY) as client:
        assert (await client.list_tools()).tools == []  # deny by default


async def test_upstream_session_is_reused_across_calls(gateway):
    async with gateway.client(ADMIN_KEY) as client:
        first = await client.call_tool("echo__stats", {})
        for _ in range(5):
            await client.call_tool("echo__echo", {"text": "x"})
        last = await client.call_tool("echo__stats", {})
    assert first.structured_content == last.structured_content  # same pid, same handshake count


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # 2026-07-28 and 2025-11-25 (SEP-1303 applies to both)
async def test_invalid_arguments_are_a_tool_error_listing_every_violation(gateway, mode):
    async with gateway.client(ADMIN_KEY, mode=mode) as client:
        refused = await client.call_tool("echo__add", {"a": None})
        assert refused.is_error
        assert _text(refused) == (
            '2 problems with the arguments:\n- arguments.a: must be of type "integer"\n'
            "- arguments.b: required, but missing"
        )
        # the model reads what to fix and calls again
        assert _text(await client.call_tool("echo__add", {"a": 1, "b": 2})) == "3"


async def test_unknown_tools_are_a_json_rpc_error(gateway):
    async with gateway.client(ADMIN_KEY) as client:
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("echo__nope", {})
        assert unknown.value.error.code == -32602 and "Unknown tool" in unknown.value.error.message
        # the gateway keeps serving
        assert _text(await client.call_tool("echo__echo", {"text": "still here"})) == "still here"


async def test_revoked_key_is_refused_within_a_second(gateway):
    async with gateway.client(REVOCABLE_KEY) as client:
        await client.list_tools()
        nc = await connect(gateway.nats_url, "test")
        kv = await kv_bucket(nc.jetstream(), subjects.KV_KEYS)
        record = KeyRecord.model_validate_json((await kv.get(key_id(REVOCABLE_KEY))).value)
        await kv.put(key_id(REVOCABLE_KEY), record.model_copy(update={"revoked": True}).model_dump_json().encode())
        await nc.close()
        await poll_until(
            lambda: gateway.ingress.keys.authenticate(f"Bearer {REVOCABLE_KEY}").__class__.__name__ == "AuthFailure",
            "revocation to reach ingress",
            within=1.0,
        )
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            gateway.url,
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"Authorization": f"Bearer {REVOCABLE_KEY}"},
        )
    assert response.status_code == 401
    assert response.json()["error"]["data"]["kind"] == "revoked_key"


async def test_upstream_down_is_a_clear_error_and_others_keep_working(gateway):
    async with gateway.client(ADMIN_KEY) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert not any(n.startswith("down__") for n in names)  # an unreachable server lists nothing
        assert _text(await client.call_tool("echo__echo", {"text": "fine"})) == "fine"
    status = gateway.ingress.catalog.server_status("down")
    assert status is not None and status.status == "unavailable" and status.error


async def test_every_call_is_audited_in_clickhouse(gateway):
    async with gateway.client(AUDITED_ADMIN_KEY) as client:
        await client.call_tool("echo__echo", {"text": "audited"})
        await client.call_tool("echo__fail", {"message": "x"})
        with pytest.raises(MCPError):
            await client.call_tool("echo__nope", {})
    async with gateway.client(AUDITED_READONLY_KEY) as client:
        with pytest.raises(MCPError):
            await client.call_tool("echo__add", {"a": 1, "b": 2})
    nc = await connect(gateway.nats_url, "test")
    try:

        async def four_rows() -> list[AuditEvent]:
            rows: list[AuditEvent] = []
            for key_name in ("audited-admin", "audited-readonly"):
                query = AuditQuery(limit=50, key_name=key_name)
                reply = await nc.request(subjects.AUDIT_QUERY, query.model_dump_json().encode(), timeout=5)
                rows += AuditRows.model_validate_json(reply.data).rows
            return rows if len(rows) >= 4 else []

        rows = await poll_until(four_rows, "four audit rows")
    finally:
        await nc.close()
    by_status = {(r.key_name, r.name, r.status) for r in rows}
    assert ("audited-admin", "echo__echo", "ok") in by_status
    assert ("audited-admin", "echo__fail", "tool_error") in by_status
    assert ("audited-admin", "echo__nope", "error") in by_status
    assert ("audited-readonly", "echo__add", "denied") in by_status
    ok = next(r for r in rows if r.status == "ok")
    assert ok.server == "echo" and ok.tool == "echo" and ok.latency_ms > 0 and ok.event_id
    # the secret never reaches the audit trail
    assert all(AUDITED_ADMIN_KEY not in r.model_dump_json() for r in rows)


async def test_an_agent_may_ask_for_a_shorter_timeout(gateway):
    async with gateway.client(ADMIN_KEY, headers={"X-Bastion-Timeout": "0.5"}) as client:
        with pytest.raises(MCPError) as slow:
            await client.call_tool("echo__sleep", {"seconds": 5})
        assert slow.value.error.code in (-32061, -32071)  # upstream or gateway timeout, within 0.5 s
        assert _text(await client.call_tool("echo__echo", {"text": "fast"})) == "fast"


async def test_streamable_http_and_sse_upstreams_through_the_gateway(gateway):
    async with gateway.client(ADMIN_KEY) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"remote__echo", "legacysse__echo", "echo__echo"} <= names
        assert _text(await client.call_tool("remote__add", {"a": 2, "b": 3})) == "5"
        assert _text(await client.call_tool("legacysse__echo", {"text": "over sse"})) == "over sse"
