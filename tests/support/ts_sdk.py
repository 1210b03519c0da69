"""The official MCP TypeScript SDK as a test client: `ts_sdk_client.mjs` on the suite's Node 22, the
SDK installed into `.tools/ts-sdk/` on first use (tests/support/node_tools.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.node_tools import ensure_node, ensure_package

__all__ = ["TS_SDK_VERSION", "run_ts_client"]

TS_SDK_VERSION = "1.32.2"
SCRIPT = Path(__file__).with_name("ts_sdk_client.mjs")


async def run_ts_client(url: str, key: str, plan: list[Any]) -> dict[str, Any]:
    """Run the script's agent against `url` with `key` (see the script for `plan` and what it prints)."""
    node = await asyncio.to_thread(ensure_node)
    sdk = await asyncio.to_thread(ensure_package, "ts-sdk", "@modelcontextprotocol/sdk", TS_SDK_VERSION)
    proc = await asyncio.create_subprocess_exec(
        str(node),
        str(SCRIPT),
        str(sdk),
        url,
        key,
        json.dumps(plan),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("the TypeScript SDK client did not finish in 60 s") from None
    assert proc.returncode == 0, f"the TypeScript SDK client failed:\n{err.decode()}"
    run: dict[str, Any] = json.loads(out)
    return run
