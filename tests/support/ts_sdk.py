"""The official MCP TypeScript SDK as a test client: `ts_sdk_client.mjs` on the suite's Node 22, the
SDK installed into `.tools/ts-sdk/` on first use (tests/support/node_tools.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.support.node_tools import ensure_node, ensure_package
from tests.support.processes import run_json_client

__all__ = ["TS_SDK_VERSION", "run_ts_apps_host", "run_ts_client", "run_ts_tasks"]

TS_SDK_VERSION = "1.32.2"
SCRIPT = Path(__file__).with_name("ts_sdk_client.mjs")
TASKS_SCRIPT = Path(__file__).with_name("ts_sdk_tasks.mjs")
APPS_HOST_SCRIPT = Path(__file__).with_name("ts_apps_host.mjs")


async def run_ts_client(url: str, key: str, plan: list[Any]) -> dict[str, Any]:
    """Run the script's agent against `url` with `key` (see the script for `plan` and what it prints)."""
    node = await asyncio.to_thread(ensure_node)
    sdk = await asyncio.to_thread(ensure_package, "ts-sdk", "@modelcontextprotocol/sdk", TS_SDK_VERSION)
    argv = [str(node), str(SCRIPT), str(sdk), url, key, json.dumps(plan)]
    return await run_json_client(argv, "the TypeScript SDK client", within=60)


async def run_ts_tasks(url: str, key: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Run the SDK's 2025-11-25 task agent (`ts_sdk_tasks.mjs`, which says what `plan` holds)."""
    node = await asyncio.to_thread(ensure_node)
    sdk = await asyncio.to_thread(ensure_package, "ts-sdk", "@modelcontextprotocol/sdk", TS_SDK_VERSION)
    argv = [str(node), str(TASKS_SCRIPT), str(sdk), url, key, json.dumps(plan)]
    return await run_json_client(argv, "the TypeScript SDK task client", within=60)


async def run_ts_apps_host(url: str, key: str, model_tool: str, app_tool: str) -> dict[str, Any]:
    """Run the SDK as a host of MCP Apps (`ts_apps_host.mjs`, which says what it does and prints)."""
    node = await asyncio.to_thread(ensure_node)
    sdk = await asyncio.to_thread(ensure_package, "ts-sdk", "@modelcontextprotocol/sdk", TS_SDK_VERSION)
    argv = [str(node), str(APPS_HOST_SCRIPT), str(sdk), url, key, model_tool, app_tool]
    return await run_json_client(argv, "the TypeScript SDK apps host", within=60)
