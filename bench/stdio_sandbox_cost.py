"""What the stdio sandbox costs a server (docs/stdio-sandbox.md#cost): time from spawn to the first
`tools/list` answer, and the server's resident memory then, with the sandbox on and off.

    PYTHONPATH=$PWD .venv/bin/python bench/stdio_sandbox_cost.py [--rounds 10]

The servers: the example echo server (Python) and the reference filesystem server (Node 22, from
`.tools/`, installed on first use). Each round starts the server exactly as the executor does
(`upstreams.stdio.stdio_parameters`, the SDK's stdio client), alternating on and off; medians and
spreads are printed. The launcher (`confine.py`) execs the server, so the pid measured is the
server's own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp import ClientSession
from mcp.client.stdio import stdio_client

from libs.common.contracts.config import ServerConfig
from services.executor.upstreams.mcp.stdio import stdio_parameters
from services.executor.upstreams.mcp.stdio_sandbox import StdioRoot
from tests.support.node_tools import ensure_node, ensure_package

ROOT = Path(__file__).resolve().parents[1]


def _children() -> set[int]:
    found: set[int] = set()
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{task}/children") as fh:
            found |= {int(pid) for pid in fh.read().split()}
    return found


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


async def _once(name: str, config: ServerConfig, root: StdioRoot) -> tuple[float, int]:
    before = _children()
    started = time.perf_counter()
    async with stdio_client(stdio_parameters(name, config, root)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            await session.list_tools()
            elapsed = time.perf_counter() - started
            (pid,) = _children() - before
            return elapsed, _rss_kib(pid)


def _servers(folder: Path) -> dict[str, dict[str, Any]]:
    node = ensure_node()
    package = ensure_package("server-filesystem", "@modelcontextprotocol/server-filesystem", "2026.8.31")
    return {
        "echo (python)": {"command": sys.executable, "args": [str(ROOT / "examples" / "servers" / "echo_server.py")]},
        "filesystem (node)": {
            "command": str(node),
            "args": [str(package / "dist" / "index.js"), str(folder)],
            "sandbox": {"write": [str(folder)]},
        },
    }


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as work:
        root = StdioRoot.of(str(Path(work) / "servers"))
        for label, raw in _servers(Path(work)).items():
            results: dict[str, list[tuple[float, int]]] = {"on": [], "off": []}
            for _ in range(rounds):
                for mode in ("on", "off"):
                    sandbox = {**raw.get("sandbox", {}), "mode": mode}
                    config = ServerConfig.model_validate({**raw, "sandbox": sandbox})
                    results[mode].append(await _once("bench", config, root))
            for mode, runs in results.items():
                times = sorted(ms * 1000 for ms, _ in runs)
                rss = sorted(kib / 1024 for _, kib in runs)
                print(
                    f"{label:18} sandbox {mode:3}: first tools/list {statistics.median(times):6.0f} ms "
                    f"(min {times[0]:.0f}, max {times[-1]:.0f}); RSS {statistics.median(rss):5.1f} MiB "
                    f"(min {rss[0]:.1f}, max {rss[-1]:.1f})"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    asyncio.run(main(parser.parse_args().rounds))
