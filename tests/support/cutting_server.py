"""A streamable-HTTP MCP server whose `tools/call` answers never arrive: each stream (the POST's, and
every GET that resumes it with `Last-Event-ID`) sends one numbered priming event and a `retry:` of
10 ms, then ends. It counts the resumptions it was sent in `<folder>/resumptions` (one line each, the
`Last-Event-ID` it carried), so a test sees that a client gives up, and after how many.

Run as `python -m tests.support.cutting_server <folder>`: prints `READY <url>/mcp`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.asgi_serve import bind, serve_ready

__all__ = ["cutting_app"]

SESSION = "cutting-session-1"
TOOL = {"name": "never", "description": "Its answer never arrives.", "inputSchema": {"type": "object"}}


def _cut(event_id: str) -> Response:
    return Response(f"id: {event_id}\nretry: 10\ndata: \n\n", media_type="text/event-stream")


def cutting_app(folder: Path) -> Starlette:
    log = folder / "resumptions"

    def answer(message: dict[str, Any]) -> Response:
        method, request_id = message.get("method"), message.get("id")
        if request_id is None:
            return Response(status_code=202)
        if method == "initialize":
            result = {
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "cutting", "version": "1.0.0"},
            }
            return JSONResponse(
                {"jsonrpc": "2.0", "id": request_id, "result": result}, headers={"mcp-session-id": SESSION}
            )
        if method == "tools/list":
            return JSONResponse({"jsonrpc": "2.0", "id": request_id, "result": {"tools": [TOOL]}})
        if method == "tools/call":
            return _cut("1")
        if method == "ping":
            return JSONResponse({"jsonrpc": "2.0", "id": request_id, "result": {}})
        error = {"code": -32601, "message": f"method not found: {method}"}
        return JSONResponse({"jsonrpc": "2.0", "id": request_id, "error": error})

    async def mcp(request: Request) -> Response:
        if request.method == "GET":
            resumed = request.headers.get("last-event-id")
            if resumed is None:
                return Response(status_code=405)  # no standalone stream
            with log.open("a") as out:
                out.write(resumed + "\n")
            return _cut(resumed)  # nothing new: the same id again
        if request.method == "DELETE":
            return Response(status_code=200)
        return answer(json.loads(await request.body()))

    return Starlette(routes=[Route("/mcp", mcp, methods=["GET", "POST", "DELETE"])])


if __name__ == "__main__":
    sock, url = bind("127.0.0.1", 0)
    asyncio.run(serve_ready(cutting_app(Path(sys.argv[1])), sock, url + "/mcp"))
