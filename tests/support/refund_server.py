"""A stdio MCP server with the tools the approval tests govern: each run leaves a line in $LEDGER_FILE,
so a test sees what really ran upstream and with which arguments, whatever the agent was told.

`refund(order, amount)` is the refund example of docs/policy.md; `delete_order(order)` is marked
destructive (`destructiveHint`), `lookup(order, customer)` reads one customer's row.
"""

from __future__ import annotations

import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

LEDGER = Path(os.environ.get("LEDGER_FILE", "ledger.txt"))

mcp = MCPServer("billing")


def _ran(line: str) -> None:
    with LEDGER.open("a") as fh:
        fh.write(f"{line}\n")


@mcp.tool()
def refund(order: str, amount: float) -> str:
    """Refund `amount` EUR on `order`."""
    _ran(f"refund {order} {amount:g}")
    return f"refunded {amount:g} EUR on {order}"


@mcp.tool(annotations=ToolAnnotations(destructiveHint=True))
def delete_order(order: str) -> str:
    """Delete `order` for good."""
    _ran(f"delete {order}")
    return f"deleted {order}"


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
def lookup(order: str, customer: str) -> str:
    """The row of `order`, which belongs to `customer`."""
    _ran(f"lookup {order} {customer}")
    return f"{order} of {customer}"


if __name__ == "__main__":
    mcp.run("stdio")
