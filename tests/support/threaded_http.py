"""A standard-library HTTP handler served by a thread of its own on a free port: the plain HTTP test
doubles (documents, a vault, a redirect) run beside the test's event loop without blocking it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["serving_on_a_thread"]


@contextmanager
def serving_on_a_thread(handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1") -> Iterator[str]:
    """`handler` answering on a free port of `host`; yields the base URL, and stops the server after."""
    server = ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, name=handler.__name__, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
