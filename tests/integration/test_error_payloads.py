"""Errors never carry payloads to readers without `audit:payloads` : a secret an
agent pasted into the wrong argument, refused by the tool's schema, is named neither in the agent's
answer nor in the audit row's `error` column an analyst queries; an upstream's own error text (which
may echo the arguments) reaches the agent, while the `error` column says only what happened and the
text goes to the payload column `result`. Real gateway (NATS, Valkey, chdb, the admin service) and
real upstreams (the echo example, a hostile stdio server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from tests.support.admin_api import seeded_token
from tests.support.audit_rows import audit_rows_when
from tests.support.gateway import ADMIN_KEY, READS_EXAMPLES, ROOT, SERVERS, Gateway, running_gateway, stdio_server

pytestmark = pytest.mark.integration

SECRET = "sk-proj-" + "Xq7Lm2Nv9Bc4Kd6Hf1Jg0Ps5Ya8EuR3t"
UPSTREAM_WORDS = "deploy key"
"""How the hostile server's `fail` tool words its JSON-RPC error (tests/support/hostile_server.py; the
credentials in it are the guardrails' to redact, which they do by default)."""


@pytest.fixture
async def gateway(nats_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    config = {
        "mcpServers": {
            "echo": stdio_server(SERVERS / "echo_server.py"),
            # the hostile server imports the examples' `_runner`: its sandbox reads that folder too
            "hostile": stdio_server(ROOT / "tests" / "support" / "hostile_server.py", sandbox=READS_EXAMPLES),
        },
        "keys": [{"name": "admin", "key": ADMIN_KEY, "tools": ["*"]}],
    }
    async with running_gateway(nats_url, redis_url, tmp_path, config, admin=True) as gw:
        yield gw


async def _analyst_errors(gateway: Gateway) -> list[Any]:
    token = await seeded_token(gateway.nats_url, "ann@example.com", {"role": "analyst"}, kind="person")
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=gateway.admin_api, headers=headers, timeout=60) as analyst:
        sql = "SELECT tool, error FROM bastion.audit_events WHERE key_name = 'admin' AND error != ''"
        answer = await analyst.post("/analytics/query", json={"sql": sql})
        payloads = await analyst.post("/analytics/query", json={"sql": "SELECT result FROM bastion.audit_events"})
    assert answer.status_code == 200, answer.text
    assert payloads.status_code == 422, "the upstream's words, in `result`, are the auditor's"
    return list(answer.json()["rows"])


async def test_no_error_column_holds_an_argument_or_an_upstreams_words(gateway: Gateway) -> None:
    async with gateway.client(ADMIN_KEY) as client:
        refused = await client.call_tool("echo__add", {"a": SECRET, "b": 2})
        with pytest.raises(MCPError) as failed:
            await client.call_tool("hostile__fail", {"form": "plain"})
    said = refused.content[0].text  # type: ignore[union-attr]
    assert refused.is_error and said == 'arguments.a: must be of type "integer"'
    assert UPSTREAM_WORDS in failed.value.error.message, "the upstream's own answer is the agent's to read"

    def both(rows: list[Any]) -> bool:
        return {r.tool for r in rows if r.error} >= {"add", "fail"}

    rows = {r.tool: r for r in await audit_rows_when(gateway.nats_url, "admin", both)}
    assert rows["add"].error == 'arguments.a: must be of type "integer"'
    assert rows["fail"].error == "server 'hostile' answered with JSON-RPC error -32001"
    assert rows["fail"].result is not None and UPSTREAM_WORDS in rows["fail"].result  # a payload column
    for row in rows.values():
        assert SECRET not in (row.error or "") and UPSTREAM_WORDS not in (row.error or "")

    seen = await _analyst_errors(gateway)
    assert {row[0] for row in seen} >= {"add", "fail"}
    text = repr(seen)
    assert SECRET not in text and UPSTREAM_WORDS not in text
