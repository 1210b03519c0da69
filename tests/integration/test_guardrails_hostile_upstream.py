"""Guardrails fail closed against a hostile upstream (`tests/support/poisoned_server.py`, official
SDK over stdio), through the whole gateway:

- a 9 MiB result, over the default `max_scan_bytes` (8 MiB), is scanned in pieces: an AWS key pair
  across the first window's border and one at its very end both reach the agent redacted;
- definitions that carry a credential (a tool's description, title and `inputSchema` default, a
  prompt's description, a resource's name, a template's description) are quarantined like drift:
  none of it reaches the agent, the executor's log names the server and the field and never the
  secret, the pending pin record holds the redacted copy, a call by name is told which approval it
  waits for, and an owner's approval serves that version. The server's `instructions` never reach
  the agent (the gateway answers with its own).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from typer.testing import CliRunner

from cli.main import app
from libs.common.bus.nats import connect, kv_bucket
from libs.common.contracts import subjects
from libs.common.supply_chain.pin_store import find, read_records
from libs.common.supply_chain.pin_store import pending as pending_records
from tests.support.gateway import ADMIN_KEY, READS_EXAMPLES, ROOT, default_config, running_gateway, stdio_server
from tests.support.polling import poll_until
from tests.support.server_values import server_values

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")]

POISONED = ROOT / "tests" / "support" / "poisoned_server.py"


VALUES = server_values(POISONED, "poisoned_values")
SECRETS: tuple[str, str] = VALUES.SECRETS


def _config() -> dict[str, Any]:
    config = default_config()
    config["mcpServers"] = {"poison": stdio_server(POISONED, sandbox=READS_EXAMPLES)}
    return config


def _clean(text: str) -> bool:
    return not any(secret in text for secret in SECRETS)


async def test_a_result_over_the_scan_limit_is_scanned_to_its_end(nats_url, redis_url, tmp_path):
    async with running_gateway(nats_url, redis_url, tmp_path, _config()) as gateway:
        async with gateway.client(ADMIN_KEY) as client:
            result = await client.call_tool("poison__big", {})
    text = result.content[0].text
    assert len(text) > VALUES.BORDER  # the result arrived, over the limit
    assert _clean(text), "a credential in a 9 MiB result reached the agent"
    assert text.count("[REDACTED:aws_access_key_id]") == 2
    assert text.count("[REDACTED:aws_secret_access_key]") == 2
    assert text.rstrip().endswith("[REDACTED:aws_secret_access_key]")


async def _everything_listed(client: Any) -> dict[str, list[dict[str, Any]]]:
    return {
        "tools": [t.model_dump(mode="json") for t in (await client.list_tools()).tools],
        "prompts": [p.model_dump(mode="json") for p in (await client.list_prompts()).prompts],
        "resources": [r.model_dump(mode="json") for r in (await client.list_resources()).resources],
        "templates": [t.model_dump(mode="json") for t in (await client.list_resource_templates()).resource_templates],
    }


async def _pins(nats_url: str) -> Any:
    nc = await connect(nats_url, "test-pins")
    try:
        kv = await kv_bucket(nc.jetstream(), subjects.KV_PINS)
        return await read_records(kv), await find(kv, "poison", "lookup")
    finally:
        await nc.close()


async def test_definitions_carrying_a_credential_are_quarantined(nats_url, redis_url, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="services.executor")
    async with running_gateway(nats_url, redis_url, tmp_path, _config()) as gateway:
        async with gateway.client(ADMIN_KEY) as client:
            listed = await _everything_listed(client)
            instructions = client.instructions or ""
            with pytest.raises(MCPError) as held:
                await client.call_tool("poison__lookup", {"customer": "c"})
        seen = json.dumps(listed)
        assert _clean(seen), "a credential in a definition reached the agent"
        assert _clean(instructions)
        assert {t["name"] for t in listed["tools"]} == {"poison__echo", "poison__big"}
        assert listed["prompts"] == [] and listed["templates"] == []
        assert [r["name"] for r in listed["resources"]] == ["about"]
        assert "carries a credential" in held.value.error.message
        assert "`bastion tools approve poison/lookup`" in held.value.error.message

        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert _clean(logged)
        for field in (
            "'lookup' carries a credential (secrets: aws_access_key_id at /description)",
            "'sync' carries a credential (secrets: aws_access_key_id at /title)",
            "at /inputSchema/properties/credentials/default",
            "prompt 'review' carries a credential (secrets: aws_access_key_id at /description)",
            "resource 'poison://readme' carries a credential (secrets: aws_access_key_id at /name)",
        ):
            assert field in logged, field
        assert "server poison: definition_secrets" in logged

        records, held_lookup = await _pins(nats_url)
        waiting = {(r.kind, r.name, r.pending_reason) for r in pending_records(records.values())}
        assert waiting == {
            ("tool", "lookup", "credential"),
            ("tool", "sync", "credential"),
            ("tool", "deploy", "credential"),
            ("prompt", "review", "credential"),
            ("resource_template", "poison://notes/{day}", "credential"),
        }
        assert _clean(json.dumps([h.record.model_dump(mode="json") for h in records.values()]))
        assert "[REDACTED:aws_access_key_id]" in held_lookup.record.pending.definition["description"]

        # an owner who decides the key is fine to show approves that exact version: it is served
        sha = held_lookup.record.pending.sha256[:12]
        runner = CliRunner()
        args = ["tools", "approve", "poison/lookup", "--sha", sha, "--nats-url", nats_url]
        approved = await asyncio.to_thread(runner.invoke, app, args, env={"BASTION_PRINCIPAL": "owner@example.com"})
        assert approved.exit_code == 0, approved.output

        async def lookup_listed() -> bool:
            async with gateway.client(ADMIN_KEY) as client:
                return "poison__lookup" in {t.name for t in (await client.list_tools()).tools}

        await poll_until(lookup_listed, "the approved version served")
