"""The CLI's own name as the person at the terminal can type it, for hints that must run as printed.

`./run` starts the CLI from `.venv/bin/bastion`, which is not on PATH unless the virtualenv is
activated, so a hint saying `bastion keys list` would answer "command not found". `./run` exports
`BASTION_CLI` (the path it was invoked by, e.g. `./run`); otherwise the hint names `bastion` when
that is what PATH finds for this very program, else the path it was started by. A stack whose data
lives anywhere but `./.bastion` (the CLI's default) needs `--data-dir` in the hint as well.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["LAUNCHER_VARIABLE", "cli_command", "data_dir_flag"]

LAUNCHER_VARIABLE = "BASTION_CLI"
"""Set by `./run` to the command that runs the CLI (itself); it wins over everything else."""


def cli_command(
    environ: Mapping[str, str] | None = None,
    argv: Sequence[str] | None = None,
    which: Callable[[str], str | None] = shutil.which,
) -> str:
    """The command prefix of a hint: `./run`, `bastion`, `.venv/bin/bastion` or `python -m cli`."""
    environ = os.environ if environ is None else environ
    argv = sys.argv if argv is None else argv
    if launcher := environ.get(LAUNCHER_VARIABLE, "").strip():
        return launcher
    started = argv[0] if argv else ""
    if Path(started).name != "bastion":  # `python -m cli`, or a test harness
        return f"{shlex.quote(sys.executable)} -m cli"
    found = which("bastion")
    if found and Path(found).resolve() == Path(started).resolve():
        return "bastion"
    return shlex.quote(started)


def data_dir_flag(data_dir: Path, cwd: Path | None = None) -> str:
    """` --data-dir DIR` when the CLI, run from `cwd`, would not find the stack in its default `.bastion`."""
    default = (cwd or Path.cwd()) / ".bastion"
    return "" if data_dir.resolve() == default.resolve() else f" --data-dir {shlex.quote(str(data_dir))}"
