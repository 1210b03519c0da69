"""A small MCP Registry: the published read API (`GET /v0.1/servers`, `/v0.1/servers/{name}/versions`,
`/v0.1/servers/{name}/versions/{version|latest}`, tests/data/mcp_registry/openapi.yaml) over the
`server.json` files of a folder, read again on every request so a test publishes a new version by
writing a file. Publication order is the files' modification order: the newest is `isLatest`.

Run as `python -m tests.support.mcp_registry <folder>`: prints `READY <base url>`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.asgi_serve import bind, serve_ready

__all__ = ["LIVE", "PUBLISHED", "live_document", "publish", "registry_app"]

OFFICIAL = "io.modelcontextprotocol.registry/official"
PUBLISHED = Path(__file__).resolve().parents[1] / "data" / "mcp_registry" / "servers"
"""The registry's own server.json examples (tests/data/mcp_registry/README.md)."""
LIVE = "io.github.user/remote-echo"


def publish(folder: Path, document: dict[str, Any], file: str) -> None:
    """Write `document` into the registry's folder as its newest publication."""
    path = folder / file
    path.write_text(json.dumps(document))
    stamp = max((f.stat().st_mtime_ns for f in folder.glob("*.json")), default=0) + 1_000_000
    os.utime(path, ns=(stamp, stamp))  # publication order is modification order


def live_document(url: str, version: str) -> dict[str, Any]:
    """The registry's with-remote example (a required secret Authorization header, a `{host}` variable),
    named `LIVE`, its remote pointed at a real server at `url`."""
    document: dict[str, Any] = json.loads((PUBLISHED / "with-remote.json").read_text())
    document["name"], document["version"] = LIVE, version
    document["remotes"][0]["url"] = url.replace("127.0.0.1", "{host}")
    document["remotes"][0]["variables"]["host"]["default"] = "127.0.0.1"
    return document


def _published(folder: Path) -> list[dict[str, Any]]:
    """Every document as a `ServerResponse`, oldest first, each marked latest or not."""
    files = sorted(folder.glob("*.json"), key=lambda f: (f.stat().st_mtime_ns, f.name))
    documents = [json.loads(f.read_text()) for f in files]
    newest = {doc["name"]: doc["version"] for doc in documents}  # the last written wins
    stamp = "2025-12-01T10:30:00Z"
    return [
        {
            "server": doc,
            "_meta": {
                OFFICIAL: {
                    "status": "active",
                    "publishedAt": stamp,
                    "updatedAt": stamp,
                    "isLatest": newest[doc["name"]] == doc["version"],
                }
            },
        }
        for doc in documents
    ]


def _page(entries: list[dict[str, Any]], cursor: str | None, limit: int) -> dict[str, Any]:
    start = int(cursor) if cursor and cursor.isdigit() else 0
    page = entries[start : start + limit]
    metadata: dict[str, Any] = {"count": len(page)}
    if start + limit < len(entries):
        metadata["nextCursor"] = str(start + limit)
    return {"servers": page, "metadata": metadata}


def registry_app(folder: Path) -> Starlette:
    async def servers(request: Request) -> JSONResponse:
        entries = _published(folder)
        search, version = request.query_params.get("search"), request.query_params.get("version")
        if search:
            entries = [e for e in entries if search.lower() in e["server"]["name"].lower()]
        if version == "latest":
            entries = [e for e in entries if e["_meta"][OFFICIAL]["isLatest"]]
        elif version:
            entries = [e for e in entries if e["server"]["version"] == version]
        limit = int(request.query_params.get("limit") or 30)
        return JSONResponse(_page(entries, request.query_params.get("cursor"), limit))

    def of(request: Request) -> list[dict[str, Any]]:
        name = unquote(request.path_params["name"])
        return [e for e in _published(folder) if e["server"]["name"] == name]

    async def versions(request: Request) -> JSONResponse:
        found = of(request)
        if not found:
            return JSONResponse({"error": "Server not found"}, status_code=404)
        return JSONResponse({"servers": found[::-1], "metadata": {"count": len(found)}})

    async def one_version(request: Request) -> JSONResponse:
        wanted = unquote(request.path_params["version"])
        key = ("isLatest", True) if wanted == "latest" else ("version", wanted)
        for entry in of(request):
            value = entry["_meta"][OFFICIAL]["isLatest"] if key[0] == "isLatest" else entry["server"]["version"]
            if value == key[1]:
                return JSONResponse(entry)
        return JSONResponse({"error": "Server not found"}, status_code=404)

    return Starlette(
        routes=[
            Route("/v0.1/servers", servers),
            Route("/v0.1/servers/{name:path}/versions", versions),
            Route("/v0.1/servers/{name:path}/versions/{version}", one_version),
        ]
    )


if __name__ == "__main__":
    sock, url = bind("127.0.0.1", 0)
    asyncio.run(serve_ready(registry_app(Path(sys.argv[1])), sock, url))
