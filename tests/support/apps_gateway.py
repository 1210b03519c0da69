"""A gateway in front of `apps_server.py` (an MCP App and skills, official SDK), shared by a test
module: the module defines an `apps_keys` fixture (the keys it adds to the default ones) and imports
`gateway` from here, which starts the gateway once for the module and waits for the server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import READS_EXAMPLES, SharedGateway, default_config, gateway_on_own_servers

__all__ = ["APPS_SERVER", "apps_gateway", "gateway"]

APPS_SERVER = Path(__file__).parent / "apps_server.py"


def _config(keys: list[dict[str, Any]]) -> dict[str, Any]:
    apps = {"command": sys.executable, "args": [str(APPS_SERVER)], "sandbox": READS_EXAMPLES}
    config = default_config({"apps": apps})
    config["keys"] += keys
    return config


@pytest.fixture(scope="module")
async def apps_gateway(tmp_path_factory, apps_keys):
    workdir = tmp_path_factory.mktemp("apps")
    shared = SharedGateway(lambda: gateway_on_own_servers(workdir, _config(apps_keys)))
    yield shared
    await shared.close()


@pytest.fixture
async def gateway(apps_gateway):
    gw = await apps_gateway.get()
    await gw.wait_for_servers("apps")
    return gw
