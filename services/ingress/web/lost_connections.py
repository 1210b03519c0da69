"""Telling a request's handler that its agent closed the connection, without a task per request.

An ASGI app learns of a closed connection by awaiting `receive()` until `http.disconnect`; for
that, `/mcp` ran one watching task per routed request (created, parked, cancelled: ~3 task steps
and a reference cycle per call). Ingress's own HTTP protocol (`http_limits`) knows when the
connection is lost, so it puts a set of callbacks in each request's scope (`watch`) and calls
them then, once. An app served elsewhere (a test's ASGI transport) finds no set and watches the
old way.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = ["LOST", "call_lost", "watch"]

LOST = "x-bastion-connection-lost"  # an ASGI scope extension, not a bus subject
"""The scope's `extensions` entry: the set of callbacks to call when the connection is lost."""

Callbacks = set[Callable[[], object]]


def watch(scope: MutableMapping[str, Any]) -> Callbacks | None:
    """The callbacks called once the connection `scope` arrived on is lost, or None if the server does not call them."""
    extensions = scope.get("extensions")
    return extensions.get(LOST) if extensions else None


def call_lost(callbacks: Callbacks) -> None:
    """Call (and forget) every callback: the connection is gone."""
    pending = list(callbacks)
    callbacks.clear()
    for callback in pending:
        callback()
