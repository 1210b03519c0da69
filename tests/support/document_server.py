"""Files of a folder over HTTP as a web server serves documents: `ETag` (the content's digest) and
`Last-Modified`, a 304 to a conditional GET that still matches. Each request is logged in
`<folder>/requests.log` as `<status> <If-None-Match or -> <path>`, so a test sees what was asked.

Run as `python -m tests.support.document_server <folder>`: prints `READY <base url>`."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from email.utils import formatdate
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.asgi_serve import bind, serve_ready

__all__ = ["document_app"]


def document_app(folder: Path) -> Starlette:
    log = folder / "requests.log"

    async def document(request: Request) -> Response:
        path = folder / request.path_params["name"]
        if not path.is_file() or path.name == log.name:
            return Response(status_code=404)
        data = path.read_bytes()
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        headers = {"ETag": etag, "Last-Modified": formatdate(path.stat().st_mtime, usegmt=True)}
        asked = request.headers.get("if-none-match")
        status = 304 if asked == etag else 200
        with log.open("a") as out:
            out.write(f"{status} {asked or '-'} {path.name}\n")
        if status == 304:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type="application/yaml", headers=headers)

    return Starlette(routes=[Route("/{name}", document)])


if __name__ == "__main__":
    sock, url = bind("127.0.0.1", 0)
    asyncio.run(serve_ready(document_app(Path(sys.argv[1])), sock, url))
