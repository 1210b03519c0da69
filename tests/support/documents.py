"""JSON documents served over real HTTP on 127.0.0.1, counting the requests they get (client ID
metadata documents, and the fetches the SSRF guard must stop before they are made)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.threaded_http import serving_on_a_thread

__all__ = ["serving_documents"]


@contextmanager
def serving_documents(documents: dict[str, Any], hits: Counter[str] | None = None) -> Iterator[str]:
    """Serve `documents` (path -> JSON value, or bytes as they are) over real HTTP; yields the base URL.
    Every request's path is counted in `hits`."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            if hits is not None:
                hits[self.path] += 1
            body = documents.get(self.path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    with serving_on_a_thread(Handler) as url:
        yield url
