"""`python -m tests.support.wall_probe '<JSON>'`: a process configured as one Bastion service (its
environment exactly as `bastion up` gives it), confined by the same call the service makes at start
(`libs.common.runtime.walls.boxes.confine_service`), that then tries what a compromised service would.

It prints one JSON object: for each attempt, "ok" or the error it met (`EACCES`, `EPERM`, ...).
The JSON argument names the service and what to try: `read` (files), `write` (files to create),
`environ` (pids whose `/proc/<pid>/environ` to read), `signal` (pids to signal 0), `connect` and
`bind` (TCP ports on 127.0.0.1), `sql` (queries the embedded ClickHouse engine runs in this process,
as a query past the analytics allow-list would: "ok", or the engine's error), `terminal` (true: its
controlling terminal, `/dev/tty`, and typing into the terminal on its stdin, `TIOCSTI`).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from cli.layout import SETTINGS
from libs.common.runtime.walls.boxes import confine_service


def _attempt(action: Callable[[], object]) -> str:
    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "ok"


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read(16)


def _write(path: str) -> None:
    with open(path, "w") as file:
        file.write("written by a confined service\n")


def _connect(port: int) -> None:
    socket.create_connection(("127.0.0.1", port), timeout=2).close()


def _bind(port: int) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))


def _ptrace(pid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ptrace(16, pid, 0, 0) != 0:  # PTRACE_ATTACH
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    libc.ptrace(17, pid, 0, 0)  # PTRACE_DETACH


_TIOCSTI = 0x5412


def _terminal() -> dict[str, object]:
    """What it can do to the terminal it may have been started in: its controlling terminal's
    device number (0: none), opening `/dev/tty`, and pushing `id` into the input of the terminal
    on its stdin, which the shell reading that terminal would run as the user, outside every box."""
    import fcntl

    fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
    found: dict[str, object] = {"controlling terminal": int(fields[4])}  # tty_nr, after state ppid pgrp session
    found["open /dev/tty"] = _attempt(lambda: os.close(os.open("/dev/tty", os.O_RDWR)))
    found["TIOCSTI stdin"] = _attempt(lambda: [fcntl.ioctl(0, _TIOCSTI, bytes([c])) for c in b"id\n"])
    return found


def _sql(queries: list[str]) -> dict[str, str]:
    import tempfile

    from chdb import session  # after confinement, like the audit service's own engine

    engine = session.Session(tempfile.mkdtemp())  # in the box's own temporary folder
    results = {}
    for query in queries:
        try:
            engine.query(query, "CSV")
            results[f"sql {query}"] = "ok"
        except Exception as exc:
            results[f"sql {query}"] = f"refused: {exc}"[:300]
    return results


def main() -> None:
    plan = json.loads(sys.argv[1])
    service = plan["service"]
    outcome = confine_service({service: SETTINGS[service]()})
    results: dict[str, object] = {"landlock_abi": outcome.landlock_abi if outcome else 0}
    for path in plan.get("read", []):
        results[f"read {path}"] = _attempt(lambda path=path: _read(path))
    for path in plan.get("write", []):
        results[f"write {path}"] = _attempt(lambda path=path: _write(path))
    for pid in plan.get("environ", []):
        results[f"environ {pid}"] = _attempt(lambda pid=pid: _read(f"/proc/{pid}/environ"))
        results[f"ptrace {pid}"] = _attempt(lambda pid=pid: _ptrace(pid))
    for pid in plan.get("signal", []):
        results[f"signal {pid}"] = _attempt(lambda pid=pid: os.kill(pid, 0))
    for port in plan.get("connect", []):
        results[f"connect {port}"] = _attempt(lambda port=port: _connect(port))
    for port in plan.get("bind", []):
        results[f"bind {port}"] = _attempt(lambda port=port: _bind(port))
    results.update(_sql(plan.get("sql", [])))
    if plan.get("terminal"):
        results.update(_terminal())
    print(json.dumps(results))


if __name__ == "__main__":
    main()
