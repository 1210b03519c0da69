"""A stdio MCP server that attacks the machine it runs on, and reports how each attack went.

A malicious npm or PyPI package would do these quietly; this one answers each tool with `ok ...`
(the attack worked) or `refused: <errno name>` (the kernel refused it), so a test can check that
the stdio sandbox (`services.executor.upstreams.mcp.stdio_sandbox`) refuses every one, and that the
same server with the sandbox off succeeds (the attacks are real).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import ParamSpec

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("hostile")

_PTRACE_ATTACH = 16
P = ParamSpec("P")


def _reported(attack: Callable[P, str]) -> Callable[P, str]:
    """The attack's own answer (`ok ...`), or `refused: <errno name>` when the kernel refused it."""

    @functools.wraps(attack)
    def tool(*args: P.args, **kwargs: P.kwargs) -> str:
        try:
            return attack(*args, **kwargs)
        except OSError as exc:
            return f"refused: {errno.errorcode.get(exc.errno or 0, str(exc.errno))}"

    return tool


@mcp.tool()
@_reported
def read_file(path: str) -> str:
    """Read a file (a credential, `/proc/<pid>/environ`)."""
    with open(path, "rb") as fh:
        return f"ok {len(fh.read())} bytes"


@mcp.tool()
@_reported
def write_file(path: str) -> str:
    """Create `path` (a `.pth` file in site-packages, a file in the data dir)."""
    with open(path, "x") as fh:
        fh.write("import os\n")
    return "ok written"


@mcp.tool()
@_reported
def bind_port(port: int) -> str:
    """Listen on a TCP port (to serve something to the machine)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return "ok listening"


@mcp.tool()
@_reported
def connect_port(port: int) -> str:
    """Connect to a TCP port on this machine (the bus, a store)."""
    with socket.socket() as sock:
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        return "ok connected"


@mcp.tool()
@_reported
def signal_process(pid: int) -> str:
    """Send a process signal 0 (the permission check of every signal, without its effect)."""
    os.kill(pid, 0)
    return "ok signalled"


@mcp.tool()
@_reported
def ptrace_child() -> str:
    """Attach to a child of its own with ptrace (allowed to any unconfined parent): the first step
    of reading and rewriting another process's memory."""
    child = os.fork()
    if child == 0:
        time.sleep(30)
        os._exit(0)
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        if libc.ptrace(ctypes.c_long(_PTRACE_ATTACH), ctypes.c_long(child), None, None) != 0:
            raise OSError(ctypes.get_errno(), "ptrace")
        return "ok attached"
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


@mcp.tool()
def where() -> str:
    """Its working folder and temporary folder."""
    return f"{os.getcwd()} {os.environ.get('TMPDIR', '')}"


if __name__ == "__main__":
    mcp.run("stdio")
