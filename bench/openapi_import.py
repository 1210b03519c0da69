"""Importing GitHub's REST API description (`@octokit/openapi`, ~1,200 operations) as an `openapi` server.

    .venv/bin/python bench/openapi_import.py              # 5 imports, 20 lists
    .venv/bin/python bench/openapi_import.py --imports 10 --lists 50

Two figures: the import (`load_api`: read and parse the 13 MB JSON, normalize, curate, name and define
every tool: what the executor does when it opens the server and on each reload), and `tools/list`
through `bastion up` by the official MCP client for a key allowed every tool (the first list after the
catalog arrived, then steady state; ingress answers from its catalog, so no request reaches GitHub).
The package is installed with npm into `.tools/` on first use. A script, not a test: numbers are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import orjson
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from gateway_stack import KEY, start_gateway  # noqa: E402

from libs.common.contracts.openapi_config import OpenApiSection  # noqa: E402
from services.executor.upstreams.openapi.api import load_api  # noqa: E402
from tests.support.node_tools import ensure_package  # noqa: E402


def document() -> Path:
    return ensure_package("octokit-openapi", "@octokit/openapi", "23.0.2") / "generated" / "api.github.com.json"


def measure_import(path: Path, runs: int) -> None:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        api = load_api(OpenApiSection(document=str(path)))
        times.append(time.perf_counter() - started)
    parse = []
    for _ in range(runs):
        started = time.perf_counter()
        orjson.loads(path.read_bytes())
        parse.append(time.perf_counter() - started)
    size = len(orjson.dumps(api.tools))
    with_output = sum(1 for t in api.tools if "outputSchema" in t)
    print(f"document: {path.stat().st_size / 1e6:.1f} MB, OpenAPI {api.version}, {api.operations} operations")
    print(f"tools: {len(api.tools)} ({with_output} with an output schema), {len(api.refused)} refused")
    print(f"definitions: {size / 1e6:.2f} MB of JSON")
    print(f"import (load_api), {runs} runs: median {statistics.median(times):.2f} s, min {min(times):.2f} s")
    print(f"  of which reading and parsing the JSON: median {statistics.median(parse):.2f} s")


async def measure_list(url: str, runs: int) -> None:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            times = []
            count = 0
            for _ in range(runs):
                started = time.perf_counter()
                count = len((await client.list_tools()).tools)
                times.append(time.perf_counter() - started)
    print(f"tools/list through the gateway ({count} tools), {runs} lists on one session (official client):")
    print(f"  first {times[0] * 1000:.0f} ms, then median {statistics.median(times[1:]) * 1000:.0f} ms")
    await measure_raw(url, runs)


async def measure_raw(url: str, runs: int) -> None:
    """The same lists read as bytes (no client-side parsing of the megabytes): the gateway's own share."""
    headers = {
        "Authorization": f"Bearer {KEY}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        opened = await http.post(url, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
        session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "Mcp-Protocol-Version": "2025-06-18"}
        await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
        times, size = [], 0
        for n in range(runs):
            started = time.perf_counter()
            answer = await http.post(url, json={"jsonrpc": "2.0", "id": n + 1, "method": "tools/list"}, headers=session)
            size = len(answer.content)
            times.append(time.perf_counter() - started)
    print(f"  read as bytes ({size / 1e6:.1f} MB): median {statistics.median(times) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imports", type=int, default=5)
    parser.add_argument("--lists", type=int, default=20)
    args = parser.parse_args()
    path = document()
    measure_import(path, args.imports)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        server = {"openapi": {"document": str(path), "base_url": "http://127.0.0.1:9"}}
        gateway = start_gateway({"github": server}, Path(tmp), tools=1000)
        print(f"bastion up serving the catalog after {time.perf_counter() - started:.1f} s (stack start included)")
        try:
            asyncio.run(measure_list(gateway.url, args.lists))
        finally:
            gateway.stop()


if __name__ == "__main__":
    main()
