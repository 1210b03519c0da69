"""The README's layout under the OS wall: the data dir `.bastion/` inside the checkout, so the checkout
root holds a folder every box refuses, and no box may list the root itself.

A service still knows its own version (its package metadata lies in the checkout root), and the
executor, once confined, still computes the box of a stdio server whose script lies beside the data
dir from the listing it made before its box closed; a folder it never listed is an error naming it,
never a box that grants nothing. Each check runs in a child process: a confinement cannot be undone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from libs.common.runtime.package_version import bastion_version
from libs.common.runtime.walls.confine import Confinement, abi_version
from libs.common.runtime.walls.profiles import DEVICES, everything_but

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(abi_version() == 0, reason="this kernel has no Landlock"),
]

ROOT = Path(__file__).resolve().parents[2]


def _child(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


@pytest.fixture
def data_dir_in_checkout():
    """A data dir in the checkout root, as `./run up` makes it (removed after)."""
    folder = ROOT / f".bastion-test-{uuid.uuid4().hex[:8]}"
    folder.mkdir(mode=0o700)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_service_boxed_with_the_data_dir_in_its_checkout_knows_its_version(data_dir_in_checkout):
    found = _child(
        """
        import json
        from cli.layout import SETTINGS
        from libs.common.runtime.walls.boxes import confine_service
        confine_service({"admin": SETTINGS["admin"]()})
        from services.admin.app import VERSION  # imported once confined, as the admin service does
        print(json.dumps({"version": VERSION}))
        """,
        env={"BASTION_DATA_DIR": str(data_dir_in_checkout), "BASTION_CONFINE": "true"},
    )
    assert found["version"] == bastion_version() != "0+unknown"


def test_a_confined_executor_boxes_a_stdio_server_whose_script_lies_beside_the_data_dir(tmp_path):
    checkout, elsewhere = tmp_path / "checkout", tmp_path / "elsewhere"
    for folder in (checkout / ".bastion", elsewhere / ".bastion", tmp_path / "stdio"):
        folder.mkdir(parents=True)
    (checkout / "server.py").write_text("open(__file__).read()\nprint('served')\n")  # reads itself too
    # the executor's box (`boxes._executor_reads`): every path but the data dirs, computed here so
    # that the child has listed neither folder before its box closes
    box = Confinement(
        read=everything_but([str(checkout / ".bastion"), str(elsewhere / ".bastion")]),
        execute=everything_but([str(checkout / ".bastion"), str(elsewhere / ".bastion")]),
        write=[str(tmp_path / "stdio")],
        devices=list(DEVICES),
    )
    # in a file, not on the command line: every path but two lists each sibling up to `/`, past the
    # 128 KiB one argument may hold when /tmp is crowded
    box_file = tmp_path / "box.json"
    box_file.write_text(box.to_json())
    found = _child(
        """
        import json, os, subprocess, sys
        from pathlib import Path
        from libs.common.contracts.config import ServerConfig
        from libs.common.runtime.walls.confine import Confinement, confine
        from libs.common.runtime.walls.profiles import UnlistableFolder, everything_but
        from services.executor.upstreams.mcp.stdio_sandbox import StdioRoot, launch
        tmp = Path(sys.argv[2])
        checkout, elsewhere = tmp / "checkout", tmp / "elsewhere"
        everything_but([str(checkout / ".bastion")])  # what the executor computes before confining itself
        confine(Confinement.from_json(Path(sys.argv[1]).read_text()))
        results = {}
        try:
            results["listed"] = sorted(os.listdir(checkout))
        except OSError as exc:
            results["listed"] = exc.strerror
        root = StdioRoot.of(str(tmp / "stdio"), str(checkout / ".bastion"))
        server = ServerConfig(command=sys.executable, args=["server.py"], cwd=str(checkout))
        started = launch("beside", server, root, {"PATH": "/usr/bin:/bin"})
        ran = subprocess.run([started.command, *started.args], cwd=started.cwd, capture_output=True, text=True)
        results["server"] = ran.stdout.strip() or ran.stderr.strip()[-500:]
        try:
            results["unlisted"] = everything_but([str(elsewhere / ".bastion")], str(elsewhere))
        except UnlistableFolder as exc:
            results["unlisted"] = str(exc)
        print(json.dumps(results))
        """,
        str(box_file),
        str(tmp_path),
    )
    assert found["listed"] == "Permission denied"  # the executor may not list the folder itself
    assert found["server"] == "served"
    assert isinstance(found["unlisted"], str) and f"cannot list {elsewhere}" in found["unlisted"]
