"""A gateway in front of `apps_server.py` (an MCP App and skills, official SDK), shared by a test
module: the module defines an `apps_keys` fixture (the keys it adds to the default ones) and imports
`gateway` from here, which starts the gateway once for the module and waits for the server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.gateway import (
    ADMIN_HEADERS,
    READS_EXAMPLES,
    Gateway,
    SharedGateway,
    default_config,
    gateway_on_own_servers,
    legacy_initialize,
)

__all__ = ["APPS_SERVER", "apps_gateway", "gateway", "rpc"]

APPS_SERVER = Path(__file__).parent / "apps_server.py"


def _config(keys: list[dict[str, Any]]) -> dict[str, Any]:
    apps = {"command": sys.executable, "args": [str(APPS_SERVER)], "sandbox": READS_EXAMPLES}
    config = default_config({"apps": apps})
    config["keys"] += keys
    return config


OWN_FILE_MAX = 4096
"""`skill_file_max_bytes` of the gateway: the `big` skill's file is over it."""


def own_skills(folder: Path) -> Path:
    """The gateway's own skills folder: `runbook` (served), and three it must refuse: `big` (a file
    over `OWN_FILE_MAX`), `Bad_Name` (not a skill name), `leaky` (a link to a file outside)."""
    (folder / "runbook" / "notes").mkdir(parents=True)
    (folder / "runbook" / "SKILL.md").write_text("---\nname: runbook\ndescription: Our on-call runbook\n---\nPage.\n")
    (folder / "runbook" / "notes" / "steps.md").write_text("1. Breathe.\n")
    (folder / "big").mkdir()
    (folder / "big" / "SKILL.md").write_text("---\nname: big\ndescription: Too big\n---\n" + "x" * OWN_FILE_MAX)
    (folder / "Bad_Name").mkdir()
    (folder / "Bad_Name" / "SKILL.md").write_text("---\nname: Bad_Name\ndescription: d\n---\n")
    (folder / "leaky").mkdir()
    (folder / "leaky" / "SKILL.md").write_text("---\nname: leaky\ndescription: d\n---\n")
    (folder.parent / "secret.txt").write_text("not for agents")
    (folder / "leaky" / "secret.txt").symlink_to(folder.parent / "secret.txt")
    return folder


@pytest.fixture(scope="module")
async def apps_gateway(tmp_path_factory, apps_keys):
    workdir = tmp_path_factory.mktemp("apps")
    skills = own_skills(workdir / "skills")
    options = {"skills_dir": skills, "skill_file_max_bytes": OWN_FILE_MAX}
    shared = SharedGateway(lambda: gateway_on_own_servers(workdir, _config(apps_keys), **options))
    yield shared
    await shared.close()


@pytest.fixture
async def gateway(apps_gateway):
    gw = await apps_gateway.get()
    await gw.wait_for_servers("apps")
    return gw


async def rpc(gateway: Gateway, key: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """One request on a fresh handshake-era session of `key`, as raw JSON-RPC (for methods the
    official SDK has no typed call for, such as `skills/get`)."""
    headers = {**ADMIN_HEADERS, "Authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(timeout=30) as http:
        init = await http.post(gateway.url, headers=headers, json=legacy_initialize())
        session = {**headers, "mcp-session-id": init.headers["mcp-session-id"]}
        body = {"jsonrpc": "2.0", "id": 2, "method": method, "params": params}
        return (await http.post(gateway.url, headers=session, json=body)).json()
