"""An MCP server whose tools answer with as many bytes as asked, for the large-payload tests.

`blob(megabytes)` returns one text block of that many megabytes (10^6 bytes); `length(text)` returns
how many characters it was sent. No structured output, so the text travels once. Streamable HTTP
with `--http` (the tests use it: the SDK's stdio client re-joins its line buffer on every 64 KiB
read, so a result of tens of megabytes over stdio costs it seconds to minutes of CPU).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "servers"))

from _runner import parse_args, run  # the example servers' shared command line
from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

SAFE = ToolAnnotations(read_only_hint=True, idempotent_hint=True)

mcp = MCPServer("large")


@mcp.tool(annotations=SAFE, structured_output=False)
def blob(megabytes: float) -> str:
    """`megabytes` MB of text."""
    return "x" * int(megabytes * 1_000_000)


@mcp.tool(annotations=SAFE, structured_output=False)
def length(text: str) -> str:
    """How many characters `text` has."""
    return str(len(text))


if __name__ == "__main__":
    run(mcp, parse_args("large results on request"))
