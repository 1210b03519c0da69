"""A server killed and started again as `bastion up` does: SIGKILL, then the same command line, so
the same port and the same data directory."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from cli.stack import EmbeddedNats, EmbeddedValkey, kill_with_parent

__all__ = ["restart_on_same_port"]


def _accepts(sock: socket.socket) -> bool:
    return True


def restart_on_same_port(
    server: EmbeddedNats | EmbeddedValkey, answers: Callable[[socket.socket], bool] = _accepts
) -> subprocess.Popen[bytes]:
    """SIGKILL `server` and start it again from its command line; returns the new process once a
    connection to its port `answers` (by default: is accepted)."""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    with server.log_path.open("ab") as log:
        proc = subprocess.Popen(server.command(), stdout=log, stderr=subprocess.STDOUT, preexec_fn=kill_with_parent)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((server.host, server.port), timeout=0.2) as sock:
                if answers(sock):
                    return proc
        except OSError:
            pass
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"{Path(server.command()[0]).name} did not come back on its port")
