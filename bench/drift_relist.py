"""What one scheduled re-listing of a large server costs the executor (`BASTION_DRIFT_INTERVAL`).

    .venv/bin/python bench/drift_relist.py                 # 1,500 tools, 20 re-listings
    .venv/bin/python bench/drift_relist.py --tools 300 --rounds 50

A stdio server on the official SDK lists `--tools` tools (three arguments each, one with a default,
a one-sentence description); the executor's own listing code (`upstreams.mcp_listing.list_everything`,
every page, tools, prompts, resources, templates) lists it again and again, and compares each listing
with the first, as the session keeper does before deciding anything. Reported: the wall time of one
re-listing (the server's time included: it runs on the same machine), the executor process's CPU
for it, the comparison, and `decide` on the listing (what a re-listing that found a change adds).
This is a script, not a test: numbers are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.executor.pinning.decide import decide
from services.executor.upstreams.mcp.mcp_listing import list_everything

MANY_TOOLS = """
def _tool(i: int) -> None:
    def look_up(query: str, region: str, limit: int = 10) -> str:
        return query

    mcp.add_tool(look_up, name=f"tool_{i:04d}", description=f"Tool {i}: looks a record up by query in a region.")


for i in range(int(sys.argv[1])):
    _tool(i)
mcp.run("stdio")
"""
"""The server's tools, `sys.argv[1]` of them, on the `mcp` its head made (`bench/drift_window_sizes.py`'s
head makes one that drifts)."""
SERVER = (
    """
import sys
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("many")

"""
    + MANY_TOOLS
)


def _ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.1f} ms, min {min(values) * 1000:.1f} ms"


async def main(tools: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "server.py"
        script.write_text(SERVER)
        params = StdioServerParameters(command=sys.executable, args=[str(script), str(tools)])
        async with Client(stdio_client(params), cache=None) as client:
            first = await list_everything(client.session, "bench")
            assert len(first.tools) == tools
            wall, cpu, compare = [], [], []
            for _ in range(rounds):
                began, began_cpu = time.perf_counter(), time.process_time()
                again = await list_everything(client.session, "bench")
                listed = time.perf_counter()
                same = again == first
                wall.append(listed - began)
                compare.append(time.perf_counter() - listed)
                cpu.append(time.process_time() - began_cpu)
                assert same
            began = time.perf_counter()
            decide("bench", "tofu", None, [], {"tool": first.tools})
            decided = time.perf_counter() - began
    print(f"{tools} tools, {rounds} re-listings")
    print(f"  re-listing (wall)      {_ms(wall)}")
    print(f"  re-listing (our CPU)   {_ms(cpu)}")
    print(f"  compare with the last  {_ms(compare)}")
    print(f"  decide (a change)      {decided * 1000:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    anyio.run(main, args.tools, args.rounds)
