"""The benchmark's upstream MCP servers: one per schema file, all in one process, over streamable HTTP.

    python bench/code_mode/upstreams.py --schemas tests/data/tool-schemas/code-mode-set.txt --port 0

Each server is the official SDK's low-level `Server`, so `tools/list` answers exactly the dumped
tool definitions (names, descriptions, schemas, annotations, `_meta`), served at
`/<server>/mcp`. Calls run the deterministic handlers of `handlers/` (one module per server) over that server's world.
Two plain-HTTP routes beside them serve the benchmark runner, never an agent:
`POST /_reset` reloads every world from `world/*.json` and empties the call journal,
`GET /_state/<server>` returns one world as JSON so a task's end state can be checked, and
`GET /_calls` lists every call received since the reset (server, tool, argument names), for the
honesty check. Prints `READY <base url>` once it accepts
connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.server.lowlevel.server import Server
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from handlers import HANDLERS, ToolFailure, World, generic_answer, load_world
from tool_dumps import dump_files

from examples.servers._runner import serve_ready

__all__ = ["build_app"]


class Upstream:
    """One server: its dumped tools and its world."""

    def __init__(self, name: str, listing: dict[str, Any], journal: list[dict[str, Any]]) -> None:
        self.name = name
        self.journal = journal
        self.tools = [types.Tool.model_validate(tool) for tool in listing["tools"]]
        self.by_name = {tool.name: tool for tool in self.tools}
        self.world: World = load_world(name)
        self.server = Server(name, version="bench", on_list_tools=self.list_tools, on_call_tool=self.call_tool)

    async def list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.tools)

    async def call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = self.by_name.get(params.name)
        if tool is None:
            return _error(f"Unknown tool: {params.name}")
        handler = HANDLERS.get(self.name, {}).get(params.name)
        arguments = params.arguments or {}
        self.journal.append({"server": self.name, "tool": params.name, "arguments": sorted(arguments)})
        if handler is None:
            return types.CallToolResult(
                content=[types.TextContent(text=generic_answer(self.name, tool.name, arguments))]
            )
        try:
            value = handler(self.world, arguments)
        except ToolFailure as exc:
            return _error(str(exc))
        except (KeyError, TypeError, ValueError) as exc:  # missing or mistyped argument, as a real server says
            return _error(f"Invalid arguments for tool {params.name}: {exc!r}")
        text = value if isinstance(value, str) else json.dumps(value)
        structured = value if tool.output_schema is not None and isinstance(value, dict) else None
        return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=structured)


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


def public_state(world: World) -> dict[str, Any]:
    state = {k: v for k, v in world.items() if not k.startswith("_")}
    if "_db" in world:  # sqlite: the tables as they are now
        db = world["_db"]
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        state["tables"] = {t: [list(row) for row in db.execute(f"SELECT * FROM {t}")] for t in tables}
    return state


def build_app(schemas: Path) -> Starlette:
    journal: list[dict[str, Any]] = []  # every call received since the last reset
    upstreams = {path.stem: Upstream(path.stem, json.loads(path.read_text()), journal) for path in dump_files(schemas)}
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    mounts = [
        Mount(f"/{name}", app=u.server.streamable_http_app(transport_security=security, json_response=True))
        for name, u in upstreams.items()
    ]

    async def reset(request: Request) -> JSONResponse:
        for name, upstream in upstreams.items():
            upstream.world = load_world(name)
        journal.clear()
        return JSONResponse({"reset": sorted(upstreams)})

    async def state(request: Request) -> JSONResponse:
        upstream = upstreams.get(request.path_params["server"])
        if upstream is None:
            return JSONResponse({"error": "no such server"}, status_code=404)
        return JSONResponse(public_state(upstream.world))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for upstream in upstreams.values():
                await stack.enter_async_context(upstream.server.session_manager.run())
            yield

    async def calls(request: Request) -> JSONResponse:
        return JSONResponse(journal)

    routes = [
        Route("/_reset", reset, methods=["POST"]),
        Route("/_state/{server}", state),
        Route("/_calls", calls),
        *mounts,
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def serve(schemas: Path, host: str, port: int) -> None:
    sock = socket.socket(socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    base = f"http://{host}:{sock.getsockname()[1]}"
    await serve_ready(build_app(schemas), sock, base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--schemas",
        type=Path,
        required=True,
        help="folder of tools/list results, one per server, or a .txt list of them",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.schemas, args.host, args.port))


if __name__ == "__main__":
    main()
