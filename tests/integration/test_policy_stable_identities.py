"""A Cedar policy keeps its tool after an operator renames it: the rename is made
in the server's configuration (`openapi.operations.<id>.name`), a person approves the quarantined
rename with `tools approve`, and the forbid written against the old name still refuses the tool under
its new one. Through the whole gateway (NATS, the real executor and policy services) and a real REST
API (the FastAPI pet store)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from typer.testing import CliRunner

from cli.main import app
from services.policy.service import PolicyService
from tests.support.gateway import ADMIN_KEY, Gateway, running_gateway
from tests.support.polling import poll_until
from tests.support.rest_sessions import DOCUMENTS, pet_store

pytestmark = pytest.mark.integration

POLICIES = """
@id("no-lookup")
@reason("agents do not look pets up one by one")
forbid (principal, action, resource == Tool::"pets/lookup");

@id("no-listing")
@reason("listing every pet is not for agents")
forbid (principal, action == Action::"tools/call", resource == Tool::"pets/listPets");
"""


def _config(document: Path, base: str, operations: dict[str, Any]) -> dict[str, Any]:
    openapi = {"document": str(document), "base_url": base, "operations": operations}
    return {
        "mcpServers": {"pets": {"openapi": openapi}},
        "keys": [{"name": "admin", "key": ADMIN_KEY, "tools": ["*"]}],
        "policies": POLICIES,
    }


def _served(gateway: Gateway, tool: str) -> bool:
    status = gateway.ingress.catalog.server_status("pets")
    return status is not None and status.status == "ready" and any(t.tool == tool for t in status.tools)


async def _approve(nats_url: str, tool: str) -> None:
    runner = CliRunner()
    args = ["tools", "approve", f"pets/{tool}", "--nats-url", nats_url]
    done = await asyncio.to_thread(runner.invoke, app, args, env={"BASTION_PRINCIPAL": "ana@example.com"})
    assert done.exit_code == 0, done.output


async def _refused_by(gateway: Gateway, tool: str, arguments: dict[str, Any]) -> str:
    async with gateway.client(ADMIN_KEY) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool(f"pets__{tool}", arguments)
    return refused.value.error.message


async def test_a_renamed_tool_stays_under_the_policy_written_against_its_old_name(
    nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    shutil.copytree(DOCUMENTS, tmp_path / "docs")
    document = tmp_path / "docs" / "petstore-3.0.yaml"
    # `getPet` is curated as `lookup` from the start: the policy names the curated name, not the operationId
    first = {"getPet": {"name": "lookup"}}
    with pet_store() as base:
        async with running_gateway(nats_url, redis_url, tmp_path, _config(document, base, first)) as gateway:
            assert "no-lookup" in await _refused_by(gateway, "lookup", {"petId": 1})
            assert "no-listing" in await _refused_by(gateway, "listPets", {})

            # the operator renames both; `listPets` also gets a new description, so pinning sees a new
            # tool rather than a rename, and only its operationId still ties it to the policy
            renamed = {
                "getPet": {"name": "lookup2"},
                "listPets": {"name": "allPets", "description": "Every pet there is."},
            }
            await gateway.apply(_config(document, base, renamed))
            await poll_until(lambda: not _served(gateway, "lookup"), "the old names gone", 60)
            for tool in ("lookup2", "allPets"):
                await _approve(nats_url, tool)
            await poll_until(
                lambda: _served(gateway, "lookup2") and _served(gateway, "allPets"), "the renames served", 60
            )
            # policy reads the same catalog entry on its own watch: wait until it has it too
            gate = next(s for s in gateway.services if isinstance(s, PolicyService)).gate
            await poll_until(
                lambda: "lookup" in gate.aliases("pets", "lookup2") and "listPets" in gate.aliases("pets", "allPets"),
                "the policy service judging the renamed tools under their stable names",
                60,
            )

            assert "no-lookup" in await _refused_by(gateway, "lookup2", {"petId": 1})
            assert "no-listing" in await _refused_by(gateway, "allPets", {})
            async with gateway.client(ADMIN_KEY) as client:  # the policies take no other tool
                assert not (await client.call_tool("pets__getStatus", {"code": 200})).is_error
