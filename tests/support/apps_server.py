"""An upstream serving an MCP App (`io.modelcontextprotocol/ui`): a `ui://` HTML resource with CSP
and permission metadata, a tool the model sees that renders it (`show_board`), a tool only the app
may call (`refresh_board`, `_meta.ui.visibility: ["app"]`), and a tool whose result names the app
(`board_link`). Written with the official SDK; stdio by default, `--http` for streamable HTTP.

`APP_STATE` names a file holding the app's version, read on every read: a test writes another to
change the app's HTML (and nothing else) while the server runs, without a word to anyone.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "servers"))
from _runner import parse_args, run

APP_URI = "ui://board/view.html"
APP_MIME = "text/html;profile=mcp-app"
APP_META = {
    "ui": {
        "csp": {"connectDomains": ["https://api.example.com"], "resourceDomains": ["https://cdn.example.com"]},
        "permissions": {"clipboardWrite": {}},
        "prefersBorder": True,
    }
}
STATE = os.environ.get("APP_STATE")
APP_HTML = """<!DOCTYPE html>
<html><body><h1 id="title">Board v{version}</h1><button id="refresh">Refresh</button><pre id="out"></pre>
<script>
let next = 1;
const pending = new Map();
window.addEventListener("message", (event) => {
  const msg = event.data || {};
  if (msg.id && pending.has(msg.id)) { pending.get(msg.id)(msg); pending.delete(msg.id); }
});
function request(method, params) {
  const id = next++;
  window.parent.postMessage({jsonrpc: "2.0", id, method, params}, "*");
  return new Promise((resolve) => pending.set(id, resolve));
}
document.getElementById("refresh").addEventListener("click", async () => {
  const answer = await request("tools/call", {name: "apps__refresh_board", arguments: {}});
  document.getElementById("out").textContent = JSON.stringify(answer.result || answer.error);
});
</script></body></html>"""

mcp = MCPServer(name="apps", version="1.0.0")
refreshed: list[int] = []


@mcp.resource(APP_URI, name="board", description="The board's view", mime_type=APP_MIME, meta=APP_META)
def board_view() -> str:
    version = Path(STATE).read_text().strip() if STATE else "1"
    return APP_HTML.replace("{version}", version)


@mcp.tool(meta={"ui": {"resourceUri": APP_URI, "visibility": ["model", "app"]}})
def show_board() -> str:
    """Shows the board (rendered by the board app where the host renders MCP Apps)."""
    return "the board: 3 cards"


@mcp.tool(meta={"ui": {"resourceUri": APP_URI, "visibility": ["app"]}})
def refresh_board() -> str:
    """Refreshes the board's data: the app's button calls it, never the model."""
    refreshed.append(1)
    return f"refreshed {len(refreshed)} times"


@mcp.tool()
def board_link() -> CallToolResult:
    """Names the app in its result's _meta, as the extension lets a result do."""
    return CallToolResult(
        content=[TextContent(type="text", text="see the board")], _meta={"ui": {"resourceUri": APP_URI}}
    )


if __name__ == "__main__":
    run(mcp, parse_args(__doc__ or ""))
