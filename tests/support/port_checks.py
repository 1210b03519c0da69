"""Whether a port is someone's: what another process's own server would meet binding it."""

from __future__ import annotations

import errno
import socket

__all__ = ["refused_to_others"]


def refused_to_others(port: int) -> bool:
    """Whether a plain bind of `port` (no SO_REUSEADDR: someone else's server) is refused as in use."""
    with socket.socket() as other:
        try:
            other.bind(("127.0.0.1", port))
        except OSError as taken:
            return taken.errno == errno.EADDRINUSE
        return False
