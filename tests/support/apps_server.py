"""An upstream serving an MCP App (`io.modelcontextprotocol/ui`): a `ui://` HTML resource with CSP
and permission metadata, a tool the model sees that renders it (`show_board`), a tool only the app
may call (`refresh_board`, `_meta.ui.visibility: ["app"]`), and a tool whose result names the app
(`board_link`). Written with the official SDK; stdio by default, `--http` for streamable HTTP.

It also serves skills (`io.modelcontextprotocol/skills`): `board-howto` (a `SKILL.md` and a
reference file) and `ops/secret-runbook`, each file a `skill://` resource, and lists a third whose
manifest is over the extension's 16 MiB, which the gateway must not serve.

`APP_STATE` names a file holding the app's version, read on every read: a test writes another to
change the app's HTML (and nothing else) while the server runs, without a word to anyone.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, PaginatedRequestParams, RequestParams, Result, TextContent
from pydantic import ConfigDict

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
    return APP_HTML.replace("{version}", _version())


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


SKILL_FILES = {
    "skill://board-howto/SKILL.md": "---\nname: board-howto\ndescription: How to read the board\n---\n"
    "Call show_board, then see references/tips.md.\n",
    "skill://board-howto/references/tips.md": "Cards move left to right.\n",
    "skill://ops/secret-runbook/SKILL.md": "---\nname: secret-runbook\ndescription: Rotate the keys\n---\nStep 1.\n",
}
FRONTMATTER = {
    "skill://board-howto/SKILL.md": {"name": "board-howto", "description": "How to read the board"},
    "skill://ops/secret-runbook/SKILL.md": {"name": "secret-runbook", "description": "Rotate the keys"},
}


def _version() -> str:
    return Path(STATE).read_text().strip() if STATE else "1"


def _text(uri: str) -> str:
    """A skill file's text; with `APP_STATE` past version 1, the tips change too (a changed skill)."""
    version = _version()
    return SKILL_FILES[uri] + (f"v{version}\n" if uri.endswith("tips.md") and version != "1" else "")


def _file(uri: str) -> dict[str, Any]:
    data = _text(uri).encode()
    return {"uri": uri, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


def _entry(uri: str) -> dict[str, Any]:
    root = uri.rsplit("/", 1)[0] + "/"
    files = [_file(u) for u in SKILL_FILES if u.startswith(root)]
    return {"uri": uri, "frontmatter": FRONTMATTER[uri], "resources": files}


HUGE = {  # a manifest over the extension's per-skill 16 MiB: listed here, never by the gateway
    "uri": "skill://huge/SKILL.md",
    "frontmatter": {"name": "huge", "description": "Too big"},
    "resources": [{"uri": "skill://huge/SKILL.md", "digest": "sha256:" + "0" * 64, "size": 17 * 1024 * 1024}],
}


class _Answer(Result):
    model_config = ConfigDict(extra="allow")


class _SkillParams(RequestParams):
    uri: str


def _serve_file(uri: str) -> None:
    mcp.resource(uri, name=uri.rsplit("/", 1)[-1], mime_type="text/markdown")(lambda: _text(uri))


for _uri in SKILL_FILES:
    _serve_file(_uri)


async def list_skills(ctx: Any, params: PaginatedRequestParams) -> _Answer:
    skills = [_entry(uri) for uri in FRONTMATTER] + [HUGE]
    return _Answer(resultType="complete", skills=skills, ttlMs=0, cacheScope="private")


async def get_skill(ctx: Any, params: _SkillParams) -> _Answer:
    if params.uri == HUGE["uri"]:  # answered as listed: the gateway must refuse it itself
        return _Answer(resultType="complete", skill=HUGE, ttlMs=0, cacheScope="private")
    if params.uri not in FRONTMATTER:
        raise ValueError(f"no skill {params.uri}")
    return _Answer(resultType="complete", skill=_entry(params.uri), ttlMs=0, cacheScope="private")


mcp._lowlevel_server.extensions["io.modelcontextprotocol/skills"] = {}
mcp._lowlevel_server.add_request_handler("skills/list", PaginatedRequestParams, list_skills)
mcp._lowlevel_server.add_request_handler("skills/get", _SkillParams, get_skill)


if __name__ == "__main__":
    run(mcp, parse_args(__doc__ or ""))
