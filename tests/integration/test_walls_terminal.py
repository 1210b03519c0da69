"""Nothing Bastion starts can type into the terminal it was started from (TIOCSTI): `bastion up` run
in a terminal, a service confined exactly as that service confines itself, started the way `bastion
up` starts its children (`cli.stack.kill_with_parent`) with the terminal as its stdin, as NATS and
Valkey once were. The service runs in a session of its own, so it has no controlling terminal,
`/dev/tty` opens nothing, and `TIOCSTI` on the terminal it holds is refused (by seccomp in every
box, and by the kernel for a terminal that is not its own); a command it pushed there would run as
the user, in the user's shell, outside every box.
"""

from __future__ import annotations

import json
import os
import pty
import sys
from pathlib import Path

import pytest

from cli.layout import SERVICES
from libs.common.runtime.walls.confine import abi_version

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(abi_version() == 0, reason="this kernel has no Landlock: services run unconfined"),
]

ROOT = Path(__file__).resolve().parents[2]
REFUSED = {"EACCES", "EPERM"}
UP = """
import subprocess, sys
from cli.stack import kill_with_parent
subprocess.run([sys.executable, "-m", "tests.support.wall_probe", sys.argv[1]], preexec_fn=kill_with_parent)
"""
"""`bastion up`'s part: start a service as it does, in the terminal it runs in."""


def _in_a_terminal(argv: list[str], env: dict[str, str]) -> str:
    """Run `argv` as the leader of a new session whose controlling terminal is a pseudo-terminal
    (a user's shell in a terminal window); everything it writes there."""
    pid, master = pty.fork()
    if pid == 0:  # the child: stdin, stdout and stderr are the terminal, and it is its own
        os.chdir(ROOT)
        os.execve(argv[0], argv, env)
    written = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every process holding the terminal's other side is gone
            break
        if not chunk:
            break
        written += chunk
    os.close(master)
    os.waitpid(pid, 0)
    return written.decode(errors="replace")


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_started_from_a_terminal_cannot_type_into_it(service: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BASTION_DATA_DIR": str(tmp_path / "data")}
    plan = json.dumps({"service": service, "terminal": True})
    output = _in_a_terminal([sys.executable, "-c", UP, plan], env)
    lines = [line for line in output.splitlines() if line.startswith("{")]
    assert lines, output[-3000:]
    found = json.loads(lines[-1])
    assert found["landlock_abi"] == abi_version()
    assert found["controlling terminal"] == 0, found  # a session of its own
    assert found["open /dev/tty"] in {"ENXIO", *REFUSED}, found
    assert found["TIOCSTI stdin"] == "EPERM", found
