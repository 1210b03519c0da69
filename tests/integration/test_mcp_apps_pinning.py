"""A changed MCP App is drift: the upstream (`tests/support/apps_server.py`, official SDK) changes
its app's HTML without a word; the next read of it is withheld, the server is listed again, the app
is quarantined (not listed, reads refused naming the approval) and released by `bastion tools
approve`, as a changed tool is."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from typer.testing import CliRunner

from cli.main import app
from libs.common.contracts.pins import DefinitionKind
from services.executor.interceptors import PinningInterceptor
from services.executor.service import ExecutorService
from tests.support.apps_gateway import rpc
from tests.support.gateway import ADMIN_KEY, READS_EXAMPLES, Gateway, default_config, running_gateway
from tests.support.polling import poll_until

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")]

APPS_SERVER = Path(__file__).parents[1] / "support" / "apps_server.py"
APP = "ui://apps/board/view.html"
UPSTREAM_APP = "ui://board/view.html"
SKILL = "skill://board-howto/SKILL.md"


def _config(state: Path) -> dict[str, Any]:
    sandbox = {**READS_EXAMPLES, "read": [*READS_EXAMPLES.get("read", []), str(state.parent)]}
    apps = {"command": sys.executable, "args": [str(APPS_SERVER)], "env": {"APP_STATE": str(state)}}
    config = default_config({"apps": {**apps, "sandbox": sandbox}})
    for name in ("echo", "notes"):  # each stdio server costs a process importing the SDK
        del config["mcpServers"][name]
    return config


def _verdict(gateway: Gateway, kind: DefinitionKind = "app", name: str = UPSTREAM_APP) -> str | None:
    executor = next(s for s in gateway.services if isinstance(s, ExecutorService))
    pinning = next(i for i in executor.interceptors.interceptors if isinstance(i, PinningInterceptor))
    outcome = pinning.outcomes.get("apps")
    decision = outcome.decision(kind, name) if outcome is not None else None
    return decision.verdict if decision is not None else None


async def _read_text(gateway: Gateway) -> str:
    async with gateway.client(ADMIN_KEY) as client:
        return (await client.read_resource(APP)).contents[0].text


async def test_a_changed_app_is_withheld_quarantined_and_released_by_approval(nats_url, redis_url, tmp_path):
    state = tmp_path / "state" / "version"
    state.parent.mkdir()
    state.write_text("1")
    options = {"drift_interval": 0.0}  # nothing re-lists on a schedule: the read finds the change
    async with running_gateway(nats_url, redis_url, tmp_path, _config(state), executor_options=options) as gateway:
        await gateway.wait_for_servers("apps")
        assert _verdict(gateway) == "served"
        assert "Board v1" in await _read_text(gateway)

        state.write_text("2")  # the app changes in place
        async with gateway.client(ADMIN_KEY) as client:
            with pytest.raises(MCPError) as withheld:
                await client.read_resource(APP)
        assert "changed since its server was listed" in withheld.value.error.message
        await poll_until(lambda: _verdict(gateway) == "quarantined", "the changed app quarantined")
        async with gateway.client(ADMIN_KEY) as client:
            await poll_until(lambda: APP not in gateway.ingress.catalog.resource_by_uri, "the app unlisted")
            assert APP not in {str(r.uri) for r in (await client.list_resources()).resources}
            with pytest.raises(MCPError) as held:
                await client.read_resource(APP)
        assert f"bastion tools approve apps/{UPSTREAM_APP}" in held.value.error.message

        runner = CliRunner()
        env = {"BASTION_PRINCIPAL": "ana@example.com"}
        args = ["tools", "approve", f"apps/{UPSTREAM_APP}", "--nats-url", nats_url]
        approved = await asyncio.to_thread(runner.invoke, app, args, env=env)
        assert approved.exit_code == 0, approved.output
        await poll_until(lambda: _verdict(gateway) == "served", "the app released")
        await poll_until(lambda: APP in gateway.ingress.catalog.resource_by_uri, "the app listed again")
        assert "Board v2" in await _read_text(gateway)


async def test_a_changed_skill_file_is_drift_of_its_manifest(nats_url, redis_url, tmp_path):
    state = tmp_path / "state" / "version"
    state.parent.mkdir()
    state.write_text("1")
    options = {"drift_interval": 0.5}  # the schedule lists the server again and finds the new manifest
    async with running_gateway(nats_url, redis_url, tmp_path, _config(state), executor_options=options) as gateway:
        await gateway.wait_for_servers("apps")
        assert _verdict(gateway, "skill", SKILL) == "served"
        assert "skill://apps/board-howto/SKILL.md" in gateway.ingress.catalog.skill_by_uri

        state.write_text("2")  # a file of the skill changes: its digest in the manifest does
        await poll_until(lambda: _verdict(gateway, "skill", SKILL) == "quarantined", "the changed skill quarantined")
        await poll_until(
            lambda: "skill://apps/board-howto/SKILL.md" not in gateway.ingress.catalog.skill_by_uri, "it unlisted"
        )
        held = await rpc(gateway, ADMIN_KEY, "skills/get", {"uri": "skill://apps/board-howto/SKILL.md"})
        assert f"bastion tools approve apps/{SKILL}" in held["error"]["message"], held
