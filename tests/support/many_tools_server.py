"""An MCP server with 1,200 tools (stdio), for the console's catalog on a large gateway: six
families of 200 (`weather_0001`, `invoice_0001`, ...), each with its own description and one
argument, so a search narrows them and paging walks them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "servers"))

from _runner import parse_args, run  # the example servers' shared command line
from mcp.server.mcpserver import MCPServer

FAMILIES = {
    "weather": "Forecast for a city",
    "invoice": "Find an invoice by customer",
    "ticket": "Open a support ticket",
    "deploy": "Deploy a service to an environment",
    "calendar": "Book a meeting room",
    "search": "Search the documentation",
}
PER_FAMILY = 200

mcp = MCPServer("many")


def _tool(name: str) -> object:
    def answer(query: str) -> str:
        return f"{name}: {query}"

    return answer


for family, what in FAMILIES.items():
    for n in range(1, PER_FAMILY + 1):
        name = f"{family}_{n:04d}"
        mcp.add_tool(_tool(name), name=name, description=f"{what} (variant {n}).", structured_output=False)  # type: ignore[arg-type]


if __name__ == "__main__":
    run(mcp, parse_args("1,200 tools"))
