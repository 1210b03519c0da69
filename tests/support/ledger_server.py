"""A stdio MCP server whose one tool has a side effect a test can check after the fact.

`record` appends its token to $LEDGER_FILE before answering, and is neither read-only nor
idempotent (so the gateway never retries it): a fault test compares the ledger with what each
agent was told, and so catches a call reported failed that actually ran.
"""

from __future__ import annotations

import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer

LEDGER = Path(os.environ.get("LEDGER_FILE", "ledger.txt"))

mcp = MCPServer("ledger")


@mcp.tool()
def record(mark: str) -> str:
    """Append `mark` (the call's own) to the ledger (one line, one write) and return it.

    Named `mark`, not `token`: the default guardrails redact a credential-looking value of an
    argument named like a secret before the upstream sees it."""
    with LEDGER.open("a") as fh:
        fh.write(f"{mark}\n")
    return mark


if __name__ == "__main__":
    mcp.run("stdio")
