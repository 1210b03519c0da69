"""The README's first command as a new user meets it, run by the suite itself: `readme_up.py`
(tests/first_hour) clones this tree's committed HEAD into a fresh folder, runs the `./run up` line it
reads from README.md (only `--port` and `--admin-port` added), and checks the banner, every URL it
prints, the README's key, its Python example, its config check and second-terminal lines as typed, that
no service restarted, and Ctrl-C. It runs as a process of its own, in
an environment without the suite's `BASTION_*` and pytest variables, as a user's shell would have."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).resolve().parents[1] / "first_hour" / "readme_up.py"
_NOT_A_USERS = ("BASTION_", "PYTEST", "PYTHONPATH", "VIRTUAL_ENV", "COV_")


@pytest.mark.timeout(1500)  # a clone with no `.venv` installs its packages first (minutes on a busy CI)
def test_the_readmes_first_command_serves_on_a_fresh_clone(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith(_NOT_A_USERS)}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--parent", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1400,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "readme_up: PASS" in output, output[-6000:]
