"""A service's private temporary folder (`profiles.private_tmp`): its own per process, and what a dead
process left is swept by the next start, with or without a data dir, since a boxed process cannot remove
its own folder. Each call runs in a child: it changes the process's default temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _private_tmp(service: str, data_dir: str, system_tmp: Path) -> Path:
    code = (
        "import os, tempfile, sys\n"
        "from libs.common.runtime.walls.profiles import private_tmp\n"
        "folder = private_tmp(sys.argv[1], sys.argv[2])\n"
        "assert tempfile.gettempdir() == folder == os.environ['TMPDIR'], folder\n"
        "print(folder)"
    )
    env = {**os.environ, "TMPDIR": str(system_tmp)}
    done = subprocess.run(
        [sys.executable, "-c", code, service, data_dir], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("with_data_dir", [True, False])
def test_a_dead_process_leftovers_are_swept_by_the_next_start(tmp_path: Path, with_data_dir: bool) -> None:
    data_dir = tmp_path / "data" if with_data_dir else None
    root = data_dir / "tmp" if data_dir else tmp_path / f"bastion-{os.getuid()}"
    root.mkdir(parents=True, mode=0o700)
    dead = root / f"audit-{_dead_pid()}"
    alive = root / f"audit-{os.getpid()}"  # this test's process: a replica still running
    other = root / f"executor-{_dead_pid()}"  # another service's: swept when that service starts
    for folder in (dead, alive, other):
        folder.mkdir()
        (folder / "left.native").write_text("x")

    first = _private_tmp("audit", str(data_dir or ""), tmp_path)

    assert first.parent == root and first.name.startswith("audit-") and first.is_dir()
    assert (first.stat().st_mode & 0o777) == 0o700
    assert not dead.exists()
    assert (alive / "left.native").exists() and (other / "left.native").exists()
    second = _private_tmp("audit", str(data_dir or ""), tmp_path)
    assert second != first and not first.exists()  # the first child has ended: its folder went too


def test_a_root_others_may_write_is_not_used(tmp_path: Path) -> None:
    root = tmp_path / f"bastion-{os.getuid()}"
    root.mkdir(mode=0o700)
    root.chmod(0o777)  # as one made by someone else in a shared /tmp would be: left alone
    folder = _private_tmp("policy", "", tmp_path)
    assert folder.parent == tmp_path and folder.name.startswith("bastion-policy-")
    assert list(root.iterdir()) == []
