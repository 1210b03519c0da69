"""An upstream whose MCP App (`io.modelcontextprotocol/ui`) a host renders: for the console's playground.

`show_board` (the model sees it) names the app `ui://board/app.html`; the app speaks the ext-apps
protocol over postMessage (`ui/initialize`, then the tool's result) and has two buttons, each at a
fixed place in its frame so a test clicks it as a person would: **Move** calls `move_card`, a
tool only the app may call (`_meta.ui.visibility: ["app"]`), **Wipe** calls `wipe_board`, which only
the model may call (`["model"]`), so the host must refuse it to the app. The app says what it got back
on its page and as `notifications/message`. It also tries a request its policy does not allow
(`connectDomains` names only https://api.example.com) and reports the browser's refusal the same way.
Written with the official SDK; stdio by default, `--http` for streamable HTTP.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "servers"))
from _runner import parse_args, run

APP_URI = "ui://board/app.html"
APP_MIME = "text/html;profile=mcp-app"
APP_META = {"ui": {"csp": {"connectDomains": ["https://api.example.com"]}, "prefersBorder": True}}
BUTTON = "position:fixed;left:{left}px;top:8px;width:120px;height:40px"
APP_HTML = """<!DOCTYPE html>
<html><body style="margin:0;font-family:sans-serif">
<button id="move" style="{move}">Move</button><button id="wipe" style="{wipe}">Wipe</button>
<div style="margin-top:60px"><p id="state">starting</p><pre id="result"></pre><pre id="out"></pre></div>
<script>
let next = 1;
const pending = new Map();
const send = (message) => window.parent.postMessage({jsonrpc: "2.0", ...message}, "*");
const log = (level, data) => send({method: "notifications/message", params: {level, data}});
function request(method, params) {
  const id = next++;
  send({id, method, params});
  return new Promise((resolve) => pending.set(id, resolve));
}
window.addEventListener("message", (event) => {
  const msg = event.data || {};
  if (msg.id !== undefined && pending.has(msg.id)) { pending.get(msg.id)(msg); pending.delete(msg.id); return; }
  if (msg.method === "ui/notifications/tool-result") {
    document.getElementById("result").textContent = msg.params.content[0].text;
    log("info", "tool-result: " + msg.params.content[0].text);
  }
});
document.addEventListener("securitypolicyviolation", (e) => log("warning", "csp refused " + e.effectiveDirective));
async function call(name) {
  const answer = await request("tools/call", {name, arguments: {}});
  const said = answer.result ? "ok " + answer.result.content[0].text : "refused " + answer.error.message;
  document.getElementById("out").textContent = name + ": " + said;
  log("info", name + ": " + said);
}
document.getElementById("move").addEventListener("click", () => call("move_card"));
document.getElementById("wipe").addEventListener("click", () => call("wipe_board"));
(async () => {
  const init = await request("ui/initialize", {protocolVersion: "2026-01-26",
    appInfo: {name: "board", version: "1"}, appCapabilities: {}});
  document.getElementById("state").textContent = "host " + init.result.hostInfo.name;
  send({method: "ui/notifications/initialized", params: {}});
  fetch("http://127.0.0.1:9/not-allowed").catch(() => {});
})();
</script></body></html>""".replace("{move}", BUTTON.format(left=8)).replace("{wipe}", BUTTON.format(left=140))

mcp = MCPServer(name="board", version="1.0.0")
moves: list[int] = []


@mcp.resource(APP_URI, name="board", description="The board's app", mime_type=APP_MIME, meta=APP_META)
def board_app() -> str:
    return APP_HTML


@mcp.tool(meta={"ui": {"resourceUri": APP_URI}})
def show_board() -> str:
    """Shows the board; a host that renders MCP Apps shows its app."""
    return "the board: 3 cards"


@mcp.tool(meta={"ui": {"resourceUri": APP_URI, "visibility": ["app"]}})
def move_card(card: int = 1) -> str:
    """Moves a card one column right: the app's button calls it, never the model."""
    moves.append(card)
    return f"moved card {card} ({len(moves)} moves)"


@mcp.tool(meta={"ui": {"visibility": ["model"]}})
def wipe_board() -> str:
    """Wipes the board: for the model only, never the app."""
    return "wiped"


if __name__ == "__main__":
    run(mcp, parse_args(__doc__ or ""))
